"""The one interface every model family implements.

The training loop, the evaluator and the registry only ever talk to a `GenerativeModel`, so adding
a family means writing one module, not touching the pipeline. A family may own several networks
(a GAN's generator and discriminator): the loop gives each its own DeepSpeed engine and optimizer
and steps them in the order `networks()` lists them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable
from typing import Any, ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from typed_errors import FieldError, OptionError


def parameter_count(parameters: Iterable[torch.Tensor]) -> int:
    """Elements in `parameters` at full size: under ZeRO-3 a parameter's tensor is an empty shard
    and DeepSpeed keeps its size in `ds_numel`."""
    return sum(getattr(p, "ds_numel", p.numel()) for p in parameters)


# What every image family is scored on: classifier-FID, class coverage, and the improved
# precision (fidelity) and recall (diversity) of its samples.
SAMPLE_METRICS = ("eval/classifier_fid", "eval/class_coverage", "eval/precision", "eval/recall")


# Metrics where more is better, by the last part of their name (so eval/a2b_precision counts): a
# gate or a sweep that names one without a mode maximises it.
HIGHER_IS_BETTER = (
    "class_coverage",
    "class_accuracy",
    "precision",
    "recall",
    "elbo",
    "elbo_per_pixel",
    "ssim",
    "frames_per_second",
)


def metric_mode(metric: str) -> str:
    """The direction to optimise `metric` in: max where more is better, else min (losses, FID)."""
    name = metric.rsplit("/", 1)[-1]
    return "max" if any(name == good or name.endswith(f"_{good}") for good in HIGHER_IS_BETTER) else "min"


def interpolate(
    decode: Callable[[torch.Tensor], torch.Tensor], start: torch.Tensor, end: torch.Tensor, steps: int
) -> torch.Tensor:
    """Decoded points on straight lines from each row of `start` to the same row of `end`,
    `steps` per line, line after line."""
    weights = torch.linspace(0, 1, steps, device=start.device)[None, :, None]
    return decode((start[:, None] + weights * (end - start)[:, None]).flatten(0, 1))


class ModelConfig(BaseModel):
    """Hyper-parameters of one family; each family subclasses it with its own fields."""

    model_config = ConfigDict(extra="forbid")

    def data_modality(self) -> str | None:
        """The modality the model learns when its config, not its family, says it (a language model
        of music); None: its family's own."""
        return None


class TokenConfig(ModelConfig):
    """A model of token ids: the vocabulary and what the ids encode, both from the dataset."""

    vocab_size: int = Field(gt=1, description="from the dataset's tokenizer")
    modality: Literal["text", "music"] = Field("text", description="from the dataset: what its ids encode")

    def data_modality(self) -> str | None:
        return self.modality


class GenerativeModel(nn.Module, ABC):
    """A generative model: networks to train, a loss per network, and a sampler.

    After DeepSpeed wraps a network, the loop calls `use_network(name, engine)` so the model's
    forward passes go through the engine (ZeRO-3 gathers parameters there).
    """

    family: ClassVar[str]
    config_class: ClassVar[type[ModelConfig]]
    presets: ClassVar[dict[str, dict[str, Any]]]
    # What the family reads and writes: a modality of data_prep's registry ("image", "text",
    # "series", "music"). What only some families can do is in models/capabilities.py.
    modality: ClassVar[str] = "image"
    # Other modalities whose data takes the same form (music's event ids are blocks of tokens, as
    # text's are); the model's config says which one it learns (`ModelConfig.data_modality`).
    also_learns: ClassVar[tuple[str, ...]] = ()
    # On GPU under `precision: auto`: "bf16" weights, or fp32 weights under "bf16-autocast".
    gpu_precision: ClassVar[str] = "bf16"
    # The metric (and its direction) a new version must beat the champion on, unless the config
    # names another: one every model of the family reports.
    default_gate: ClassVar[tuple[str, str]] = ("eval/classifier_fid", "min")
    supports_activation_checkpointing: ClassVar[bool] = False
    # Parts that come from the registry: {submodule: config field holding its models:/ URI}. The
    # train step pins each URI to a version, stores the part's spec in `<field>_spec` and loads its
    # weights into the submodule (a latent diffusion model's VAE).
    registered_parts: ClassVar[dict[str, str]] = {}
    # Image-to-image families translate between the two domains of a translation dataset (data
    # source kind `domains`): batches carry `domain`, and `sample` takes the images to translate.
    translates: ClassVar[bool] = False

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        """Every metric the evaluator (and each sweep trial) reports for a model of this family."""
        return SAMPLE_METRICS

    @classmethod
    def learns(cls, modality: str) -> bool:
        return modality == cls.modality or modality in cls.also_learns

    @classmethod
    def metrics_on(cls, modality: str) -> tuple[str, ...]:
        """The metrics a model of this family reports when it learns `modality`."""
        return cls.metric_names()

    @property
    def data_modality(self) -> str:
        """The modality this model learned: its family's, unless its config names another."""
        return self.config.data_modality() or self.modality

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self._wrapped: dict[str, nn.Module] = {}
        self.global_step = 0

    @abstractmethod
    def networks(self) -> dict[str, nn.Module]:
        """The trainable networks, in the order the loop steps them."""

    def use_network(self, name: str, wrapped: nn.Module) -> None:
        """Route calls to network `name` through `wrapped` (a DeepSpeed engine)."""
        if name not in self.networks():
            raise KeyError(f"{self.family} has no network named {name!r}")
        self._wrapped[name] = wrapped

    def net(self, name: str) -> nn.Module:
        """The callable for network `name`: its engine when wrapped, else the bare module."""
        wrapped = self._wrapped.get(name)  # not `or`: a compiled module refuses truth testing
        return wrapped if wrapped is not None else self.networks()[name]

    def updates_per_step(self, network: str) -> int:
        """Optimizer updates of `network` per training step (a WGAN critic takes several)."""
        return 1

    def start_step(self, step: int) -> None:
        """Told the optimizer step about to run, for losses that change with it (KL warm-up)."""
        self.global_step = step

    def after_update(self, network: str) -> None:
        """Told each time `network`'s optimizer has stepped (a diffusion model updates its EMA)."""

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """Training state outside the networks and their optimizers (an EMA), for checkpoints."""
        return {}

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        """Take back what `checkpoint_state` returned, when a run resumes."""

    def exported_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The weights to save as the trained model, from the full `state` dict (a diffusion
        model swaps in its EMA)."""
        return state

    def requested_labels(self, n: int, device: torch.device) -> torch.Tensor | None:
        """The classes `sample(n)` asks a conditional model for; None when it is unconditional."""
        return None

    def run_network(self, name: str, *inputs: torch.Tensor | int, bare: bool = False) -> torch.Tensor:
        """Network `name` on `inputs` cast to its parameters' dtype (bf16 under DeepSpeed bf16);
        the output comes back in fp32 for the loss. `bare` skips the network's engine: for a
        forward pass whose backward belongs to another network's engine (DeepSpeed hooks every
        engine's outputs and takes any backward through them for its own)."""
        net = self.networks()[name] if bare else self.net(name)
        dtype = next(net.parameters()).dtype
        output = net(*(x.to(dtype) if isinstance(x, torch.Tensor) and x.is_floating_point() else x for x in inputs))
        return output.float()

    def set_activation_checkpointing(self, enabled: bool) -> None:
        """Recompute activations in the backward pass; families with deep stacks offer it
        (`supports_activation_checkpointing`) and override this."""
        if enabled:
            raise FieldError("activation_checkpointing", f"the {self.family} family does not support it")

    def sample_options(self, n: int, **asked: Any) -> dict[str, Any]:
        """Keyword arguments for `sample(n, ...)` from what a user asked for (a prompt, a label, the
        guidance, the sampler, its steps, or options of the family's own); an OptionError names the
        option that does not fit. A family that takes none refuses every one."""
        self.refuse_options(asked)
        return {}

    def example_options(self, n: int) -> dict[str, Any]:
        """Sampling options (as `sample_options` takes them, JSON-able) that a request for `n`
        samples cannot do without, made up when the caller has none: an image-to-image family's
        `input` images, for live sample grids and the served model's example request. None by
        default."""
        return {}

    def refuse_options(self, asked: dict[str, Any]) -> None:
        """An OptionError naming the first of `asked` that was given (not None)."""
        given = [name for name, value in asked.items() if value is not None]
        if given:
            raise OptionError(given[0], f"a {self.family} model takes no {given[0]}")

    @torch.no_grad()
    def evaluation_metrics(
        self, images: torch.Tensor, iw_samples: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, float]:
        """Scores beyond the samples' own, on val `images` and their `labels` (an autoencoder's
        reconstruction error, a VAE's ELBO, JEM's accuracy); names as in `metric_names`."""
        return {}

    @torch.no_grad()
    def evaluation_pictures(
        self, images: torch.Tensor, generator: torch.Generator, rows: int = 8, steps: int = 10
    ) -> dict[str, tuple[torch.Tensor, int]]:
        """Pictures beyond the sample grid: {file name: (images in [-1, 1], columns)}, e.g. latent
        interpolations; the evaluator draws them."""
        return {}

    @abstractmethod
    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The scalar loss whose gradient steps network `network` on this batch."""

    @abstractmethod
    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """`n` new samples (images in [-1, 1], shape (n, C, H, W) for image families)."""
