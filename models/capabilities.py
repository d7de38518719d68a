"""What only some families can do, each a protocol of its own, so that `GenerativeModel` holds
only what every family does. A caller that needs one asks for it by name (`language_model(model)`)
and gets a clear error, not an inherited method that raises.

- `LanguageModel`: the families of token ids (GPT, LSTM, GRU; `LanguageFamily` holds what they
  declare) extend token ids and count their FLOPs.
- `Forecaster`: series families predict the next value of a context, in normalised units.
Image-to-image translation is declared on the class (`GenerativeModel.translates`): the config
layer checks it before any model exists.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from models.base import GenerativeModel

# What a language model reports, by what its ids encode (pipelines/evaluate: text_metrics, music_metrics).
TEXT_METRICS = ("eval/val_loss", "eval/perplexity", "eval/bits_per_byte")
MUSIC_METRICS = (
    "eval/val_loss",
    "eval/bits_per_token",
    "eval/bits_per_note",
    "eval/pitch_class_distance",
    "eval/interval_distance",
    "eval/note_density_distance",
    "eval/in_key_share",
)
LANGUAGE_METRICS = {"text": TEXT_METRICS, "music": MUSIC_METRICS}


class LanguageFamily(GenerativeModel):
    """What the families of token ids (GPT, LSTM, GRU) declare alike: they learn text, and music,
    whose event ids come in the same blocks; gated on the val loss, which both report."""

    modality = "text"
    also_learns = ("music",)
    default_gate = ("eval/val_loss", "min")

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return TEXT_METRICS

    @classmethod
    def metrics_on(cls, modality: str) -> tuple[str, ...]:
        return LANGUAGE_METRICS.get(modality, TEXT_METRICS)


@runtime_checkable
class LanguageModel(Protocol):
    """A model of token sequences."""

    @property
    def context_size(self) -> int | None:
        """The most tokens the model reads at once; None when it has no limit (a recurrent net)."""

    def generate(
        self,
        ids: torch.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        use_cache: bool = True,
    ) -> torch.Tensor:
        """Extend token ids (B, T) by sampling `max_new_tokens` more, reusing what earlier tokens
        computed (`use_cache`) where the family can."""

    def flops_per_token(self, seq_len: int) -> float:
        """Training FLOPs per token (forward and backward), for MFU."""


@runtime_checkable
class Forecaster(Protocol):
    """A model of one series: a Gaussian over the next value of each context."""

    def predict(self, context: torch.Tensor, bare: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, log-variance) of the next normalised value after each context row (B, L)."""

    def to_data_units(self, mean: torch.Tensor, log_variance: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, standard deviation) in the data's units from a prediction in normalised ones."""


def counts_flops(cls: type[GenerativeModel]) -> bool:
    """Whether models of `cls` report their training FLOPs per token (a FLOPs budget needs it)."""
    return callable(getattr(cls, "flops_per_token", None))


def language_model(model: GenerativeModel) -> LanguageModel:
    """`model` as a language model; a TypeError naming the family when it is not one."""
    if not isinstance(model, LanguageModel):
        raise TypeError(f"the {model.family} family does not generate text")
    return model


def forecaster(model: GenerativeModel) -> Forecaster:
    """`model` as a forecaster; a TypeError naming the family when it is not one."""
    if not isinstance(model, Forecaster):
        raise TypeError(f"the {model.family} family does not forecast a series")
    return model
