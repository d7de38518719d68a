"""The zoo's contract, over every family and every preset: what the pipeline relies on from a
`GenerativeModel` without asking which family it is.

Presets small enough for 2 CPU cores are checked numerically: the loss is finite and reaches
every trainable parameter, samples have the declared shape and range, the safetensors weights and
the training state round-trip. The GPU presets (hundreds of millions of parameters) are checked
on PyTorch's meta device: shapes and autograd flow through the whole network without memory or
compute, so a preset that cannot build or run fails here, not on a cluster.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

import models
from models.base import SAMPLE_METRICS, GenerativeModel, parameter_count
from models.weights import load_model, save_model

NUMERIC_LIMIT = 10_000_000  # parameters: above it a preset is checked on the meta device
IMAGE_SHAPE = (1, 16, 16)
CLASSES = [str(digit) for digit in range(10)]
CONTEXT = 12  # a series' window: 12 values of context
CLIP = 32  # an audio clip's samples
FRAMES, CONTEXT_FRAMES = 6, 3  # a video clip's frames, and those given before the prediction
DATA = {
    "image_shape": IMAGE_SHAPE,
    "num_classes": len(CLASSES),
    "class_names": CLASSES,
    "vocab_size": 300,
    "context_len": CONTEXT,
    "criterion_lags": {"aic": 3, "bic": 2},
    "clip_samples": CLIP,
    "frame_shape": IMAGE_SHAPE,
    "clip_frames": FRAMES,
    "context_frames": CONTEXT_FRAMES,
}
# What each modality's families must report, at least.
REPORTED = {
    "text": {"eval/val_loss"},
    "series": {"eval/rmse"},
    "image": set(SAMPLE_METRICS),
    "audio": {"eval/audio_fid"},
    "video": {"eval/frame_mse", "eval/frame_ssim", "eval/frame_fid"},
}
CASES = [(family, preset) for family, cls in models.FAMILIES.items() for preset in cls.presets]


def registered_parts(cls: type[GenerativeModel]) -> dict[str, Any]:
    """A family's parts that would come from the registry, made here: a tiny VAE's spec."""
    params: dict[str, Any] = {}
    for field in cls.registered_parts.values():
        vae = models.build_model("vae", models.resolve_config("vae", "tiny", {}, DATA))
        params[field] = "models:/contract-vae/1"
        params[f"{field}_spec"] = {"family": vae.family, "config": vae.config.model_dump(mode="json")}
    return params


def build(family: str, preset: str, device: str = "cpu") -> GenerativeModel:
    cls = models.family_class(family)
    # A text model's context is the data's (seq_len), not the preset's: a short one keeps the
    # token-by-token sampling of every numeric preset within seconds.
    context = {"block_size": 16} if "block_size" in cls.config_class.model_fields else {}
    with torch.device(device):
        config = models.resolve_config(family, preset, {**registered_parts(cls), **context}, DATA)
        return models.build_model(family, config)


def batch(model: GenerativeModel, size: int = 4, device: str = "cpu") -> dict[str, torch.Tensor]:
    if model.modality == "text":
        return {"tokens": torch.randint(0, DATA["vocab_size"], (size, 17), device=device)}
    if model.modality == "series":
        return {"window": torch.randn(size, CONTEXT + 1, device=device)}
    if model.modality == "audio":
        clips = torch.rand(size, 1, CLIP, device=device) * 2 - 1
        return {"audio": clips, "label": torch.arange(size, device=device) % len(CLASSES)}
    if model.modality == "video":
        video = torch.rand(size, FRAMES, *IMAGE_SHAPE, device=device) * 2 - 1
        return {"video": video, "label": torch.arange(size, device=device) % len(CLASSES)}
    images = torch.rand(size, *IMAGE_SHAPE, device=device) * 2 - 1
    rows = torch.arange(size, device=device)
    # Every family reads the columns it needs: `domain` is a translation dataset's (both domains here).
    return {"image": images, "label": rows % len(CLASSES), "domain": rows % 2}


def quick_sample(model: GenerativeModel, n: int) -> torch.Tensor:
    """`n` samples, with the fewest sampler steps the family takes (diffusion: 2 DDIM steps)."""
    needed = model.example_options(n)  # an image-to-image model's inputs
    try:
        options = model.sample_options(n, sampler="ddim", steps=2, **needed)
    except ValueError:
        options = model.sample_options(n, **needed)
    return model.sample(n, generator=torch.Generator().manual_seed(0), **options)


def is_numeric(family: str, preset: str) -> bool:
    return parameter_count(build(family, preset, "meta").parameters()) <= NUMERIC_LIMIT


@pytest.mark.parametrize("family, preset", CASES)
def test_every_preset_builds_and_runs_on_the_meta_device(family, preset):
    model = build(family, preset, "meta").train()
    assert model.family == family and model.networks(), "a family declares its networks"
    assert set(model.metric_names()) >= REPORTED[model.modality]
    metric, mode = model.default_gate
    assert metric in model.metric_names() and mode in ("min", "max")
    for name in model.networks():
        loss = model.loss(name, batch(model, 2, "meta"))
        assert loss.shape == () and loss.requires_grad, f"{name}: a scalar that back-propagates"


@pytest.mark.parametrize("family, preset", [case for case in CASES if is_numeric(*case)])
def test_small_presets_train_sample_and_round_trip(family, preset, tmp_path):
    torch.manual_seed(0)
    model = build(family, preset).train()
    for name, network in model.networks().items():
        network.zero_grad()
        model.start_step(1)
        loss = model.loss(name, batch(model))
        assert torch.isfinite(loss), f"{name}: loss {loss}"
        loss.backward()
        reached = [p.grad is not None and bool(p.grad.abs().sum() > 0) for p in network.parameters() if p.requires_grad]
        assert any(reached), f"{name}: no gradient reached its parameters"

    model.eval()
    samples = quick_sample(model, 3)
    if model.modality == "text":
        assert samples.shape[0] == 3 and samples.dtype == torch.long
        assert int(samples.min()) >= 0 and int(samples.max()) < DATA["vocab_size"]
    elif model.modality == "series":  # forecast paths, in the data's units
        assert samples.shape == (3, model.config.horizon) and torch.isfinite(samples).all()
    elif model.modality == "audio":  # clips in [-1, 1]
        assert samples.shape == (3, 1, CLIP) and samples.min() >= -1 and samples.max() <= 1
    elif model.modality == "video":  # the frames after the (blank) context, in [-1, 1]
        assert samples.shape == (3, FRAMES - CONTEXT_FRAMES, *IMAGE_SHAPE)
        assert samples.min() >= -1 and samples.max() <= 1
    else:
        assert samples.shape == (3, *IMAGE_SHAPE)
        assert torch.isfinite(samples).all() and samples.min() >= -1 and samples.max() <= 1

    for name in model.networks():
        model.after_update(name)  # a diffusion model's EMA takes its first average
    loaded = load_model(save_model(model, tmp_path / "model"))
    assert loaded.family == family and loaded.config == model.config
    original, restored = model.state_dict(), loaded.state_dict()
    assert original.keys() == restored.keys()
    assert all(torch.equal(original[key], restored[key]) for key in original)

    state = model.checkpoint_state()
    fresh = build(family, preset)
    fresh.load_checkpoint_state(state)
    assert fresh.checkpoint_state().keys() == state.keys()
    assert all(torch.equal(fresh.checkpoint_state()[key].cpu(), state[key].cpu()) for key in state)
