"""The worked example of models/README.md: a family defined here alone, with a metric and a
sampling option of its own, is validated, scored, gated and sampled by the pipeline unchanged."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest
import torch
from pydantic import Field
from torch import nn

import models
from data_prep.config import DataConfig
from data_prep.prepare import prepare
from models.base import GenerativeModel, ModelConfig
from models.weights import load_model, save_model
from pipelines.config import ConfigError, EvaluateConfig, validate_config
from pipelines.evaluate.scorers import image_scorer
from pipelines.registry.gate import decide


class PixelGaussianConfig(ModelConfig):
    image_shape: tuple[int, int, int] = Field(description="from the data")
    num_classes: int = 0


class Density(nn.Module):
    def __init__(self, shape: tuple[int, int, int]):
        super().__init__()
        self.mean = nn.Parameter(torch.zeros(shape))
        self.log_std = nn.Parameter(torch.zeros(shape))


class PixelGaussian(GenerativeModel):
    """Every pixel an independent Gaussian: the simplest image model there is."""

    config: PixelGaussianConfig
    family = "pixel-gaussian"
    config_class = PixelGaussianConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {"tiny": {}}
    default_gate = ("eval/pixel_nll", "min")

    def __init__(self, config: PixelGaussianConfig):
        super().__init__(config)
        self.density = Density(config.image_shape)

    def networks(self) -> dict[str, nn.Module]:
        return {"density": self.density}

    def nll(self, images: torch.Tensor) -> torch.Tensor:
        z = (images - self.density.mean) / self.density.log_std.exp()
        return (0.5 * z**2 + self.density.log_std).flatten(1).sum(1).mean()

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.nll(batch["image"])

    @classmethod
    def metric_names(cls) -> tuple[str, ...]:
        return (*super().metric_names(), "eval/pixel_nll")

    @torch.no_grad()
    def evaluation_metrics(
        self, images: torch.Tensor, iw_samples: int, generator: torch.Generator, labels: torch.Tensor | None = None
    ) -> dict[str, float]:
        return {"eval/pixel_nll": float(self.nll(images))}

    def sample_options(self, n: int, temperature: float | None = None, **other: Any) -> dict[str, Any]:
        self.refuse_options(other)
        return {} if temperature is None else {"temperature": float(temperature)}

    @torch.no_grad()
    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0) -> torch.Tensor:
        noise = torch.randn((n, *self.config.image_shape), generator=generator)
        return (self.density.mean + temperature * self.density.log_std.exp() * noise).clamp(-1, 1)


@pytest.fixture
def zoo_with_the_new_family(monkeypatch):
    monkeypatch.setitem(models.zoo.FAMILIES, PixelGaussian.family, PixelGaussian)  # the one registry line


def config(**sections: Any) -> dict[str, Any]:
    return {"name": "new-family", "model": {"family": "pixel-gaussian"}, "register": {"model_name": "pg"}, **sections}


def test_the_config_layer_knows_the_family_from_its_class(zoo_with_the_new_family):
    assert validate_config(config()).register.gate.metric == "eval/pixel_nll"  # its own default gate
    space = {"train.learning_rate": {"choice": [0.01, 0.1]}}
    assert validate_config(config(tune={"space": space, "metric": "eval/pixel_nll"})).tune is not None
    with pytest.raises(ConfigError, match="not reported by pixel-gaussian trials"):
        validate_config(config(tune={"space": space, "metric": "eval/elbo"}))
    with pytest.raises(ConfigError, match="activation_checkpointing"):
        validate_config(config(train={"activation_checkpointing": True}))


def test_the_evaluator_scores_it_and_the_gate_uses_its_metric(zoo_with_the_new_family, ray_session, tmp_path):
    manifest, _ = prepare(DataConfig(), str(tmp_path / "store"))
    model_config = models.resolve_config("pixel-gaussian", "tiny", {}, {"image_shape": manifest.images})
    model = models.build_model("pixel-gaussian", model_config)
    score, _ = image_scorer(manifest, EvaluateConfig(num_samples=64, grid_size=16, classifier_epochs=1))
    artifacts = tmp_path / "evaluation"
    artifacts.mkdir()
    metrics = score(model, artifacts)
    assert {"eval/classifier_fid", "eval/class_coverage", "eval/pixel_nll"} <= set(metrics)
    assert (artifacts / "samples.png").exists()
    gate = validate_config(config()).register.gate
    assert decide(gate, metrics, {**metrics, "eval/pixel_nll": metrics["eval/pixel_nll"] + 1}, 1).promote


def test_its_own_sampling_option_and_its_weights(zoo_with_the_new_family, tmp_path):
    model = models.build_model("pixel-gaussian", {"image_shape": (1, 8, 8)})
    calm = model.sample(4, **model.sample_options(4, temperature=0.0))
    assert torch.equal(calm, model.density.mean.expand(4, 1, 8, 8))
    with pytest.raises(ValueError, match="^label: "):
        model.sample_options(4, label="3")
    loaded = load_model(save_model(model, tmp_path / "model"))
    assert loaded.family == "pixel-gaussian" and torch.equal(loaded.density.mean, model.density.mean)
