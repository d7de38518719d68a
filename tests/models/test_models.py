"""The DDPM family on its own: shapes, schedules, a loss that falls, safetensors round trip."""

from __future__ import annotations

import json

import pytest
import torch

import models
from models.schedules import NoiseSchedule
from models.weights import CONFIG_FILE, WEIGHTS_FILE, load_model, save_model


def tiny_ddpm(**params) -> models.GenerativeModel:
    config = models.resolve_config("ddpm", "tiny", {"timesteps": 20, **params}, {"image_shape": (1, 8, 8)})
    return models.build_model("ddpm", config)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_schedule_is_a_valid_diffusion(schedule):
    s = NoiseSchedule(schedule, 100)
    alpha_bar = s.sqrt_alpha_bar**2
    assert torch.all(alpha_bar[1:] < alpha_bar[:-1]), "signal must decay monotonically"
    assert alpha_bar[0] > 0.98 and alpha_bar[-1] < 0.05
    assert torch.all((s.betas > 0) & (s.betas <= 0.999))


@pytest.mark.parametrize("shape, mults", [((1, 8, 8), (1, 2)), ((3, 16, 16), (1, 2, 2))])
def test_unet_keeps_the_shape(shape, mults):
    config = models.resolve_config("ddpm", "tiny", {"channel_mults": mults}, {"image_shape": shape})
    model = models.build_model("ddpm", config)
    x = torch.randn(3, *shape)
    assert model.unet(x, torch.tensor([0, 5, 19])).shape == x.shape


def test_time_embedding_changes_the_prediction():
    model = tiny_ddpm()
    x = torch.randn(2, 1, 8, 8)
    assert not torch.allclose(model.unet(x, torch.tensor([0, 0])), model.unet(x, torch.tensor([15, 15])))


def test_non_square_or_odd_sizes_are_refused():
    with pytest.raises(ValueError, match="square"):
        models.build_model("ddpm", models.resolve_config("ddpm", "tiny", {}, {"image_shape": (1, 8, 6)}))
    with pytest.raises(ValueError, match="channel_mults"):
        models.build_model(
            "ddpm", models.resolve_config("ddpm", "tiny", {"channel_mults": (1, 2, 2, 2)}, {"image_shape": (1, 12, 12)})
        )


def test_a_few_steps_lower_the_loss():
    torch.manual_seed(0)
    model = tiny_ddpm()
    data = {"image": torch.rand(64, 1, 8, 8) * 2 - 1}
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(40):
        loss = model.loss("unet", data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.6 * sum(losses[:5]) / 5


def test_sampling_gives_images_in_range():
    model = tiny_ddpm()
    samples = model.sample(5, generator=torch.Generator().manual_seed(0))
    assert samples.shape == (5, 1, 8, 8)
    assert samples.min() >= -1 and samples.max() <= 1


def test_safetensors_round_trip_without_pickle(tmp_path):
    model = tiny_ddpm()
    save_model(model, tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([CONFIG_FILE, WEIGHTS_FILE])
    spec = json.loads((tmp_path / CONFIG_FILE).read_text())
    assert spec["family"] == "ddpm" and spec["config"]["timesteps"] == 20
    loaded = load_model(tmp_path)
    x, t = torch.randn(2, 1, 8, 8), torch.tensor([1, 7])
    assert torch.equal(model.unet(x, t), loaded.unet(x, t))
