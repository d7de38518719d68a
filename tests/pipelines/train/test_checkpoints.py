"""The training checkpoint round-trips for every family in the zoo: each network's DeepSpeed
engine (weights, optimizer, LR schedule), the model's own state (an EMA) and the consolidated
safetensors model, written by `write_checkpoint` and read back by `restore` into fresh engines,
as a resumed run or a restored sweep trial does."""

from __future__ import annotations

import json
import os

import pytest
import torch

import models
from models.weights import load_model
from pipelines.config import TrainConfig
from pipelines.train.checkpoints import MODEL_DIR, CheckpointRefused, restore, write_checkpoint, written_with
from pipelines.train.engines import build_engines
from pipelines.train.feed import CachedFeed
from pipelines.train.loop import Fit, LossWindow
from pipelines.train.settings import data_lanes, loop_settings
from pipelines.train.strategy import Strategy

ROWS = 16
DATA = {
    "image_shape": (1, 8, 8),
    "num_classes": 10,
    "class_names": [str(d) for d in range(10)],
    "vocab_size": 257,
    "context_len": 8,
    "clip_samples": 16,
    "frame_shape": (1, 8, 8),
    "clip_frames": 4,
    "context_frames": 2,
}


ONE_WORKER = Strategy("ddp", "one worker")


def fit_for(family: str, model_config: dict, shard: dict[str, torch.Tensor]) -> Fit:
    model = models.build_model(family, model_config)
    settings = loop_settings(TrainConfig(batch_size=4, max_steps=3), ONE_WORKER, 0, 1, torch.device("cpu"), ROWS)
    feed = CachedFeed(shard, (ROWS,), settings.train, torch.device("cpu"))
    return Fit(model, build_engines(model, settings.train, 0, settings.total_steps, False), feed, settings)


def shard_for(model: models.GenerativeModel) -> dict[str, torch.Tensor]:
    if model.modality == "text":
        return {"tokens": torch.randint(0, 257, (ROWS, 9))}
    if model.modality == "series":
        return {"window": torch.randn(ROWS, 9)}
    if model.modality == "audio":
        return {"audio": torch.rand(ROWS, 1, 16) * 2 - 1, "label": torch.arange(ROWS) % 10}
    if model.modality == "video":
        return {"video": torch.rand(ROWS, 4, 1, 8, 8) * 2 - 1, "label": torch.arange(ROWS) % 10}
    rows = torch.arange(ROWS)  # `domain`: a translation family's column (others ignore it)
    return {"image": torch.rand(ROWS, 1, 8, 8) * 2 - 1, "label": rows % 10, "domain": rows % 2}


def tiny_config(family: str) -> dict:
    params = {}
    for field in models.family_class(family).registered_parts.values():  # a registered VAE, made here
        vae = models.build_model("vae", models.resolve_config("vae", "tiny", {}, DATA))
        params.update({field: "models:/v/1", f"{field}_spec": {"family": "vae", "config": vae.config.model_dump()}})
    overrides = {"block_size": 8} if "block_size" in models.family_class(family).config_class.model_fields else {}
    return models.resolve_config(family, "tiny", {**params, **overrides}, DATA).model_dump(mode="json")


@pytest.mark.slow
@pytest.mark.parametrize("family", list(models.FAMILIES))
def test_a_checkpoint_restores_every_network_and_the_model_state(family, process_group, tmp_path):
    torch.manual_seed(0)
    config = tiny_config(family)
    shard = shard_for(models.build_model(family, config))
    trained = fit_for(family, config, shard)
    for _ in trained.steps(0, 2, LossWindow(list(trained.engines))):
        pass
    write_checkpoint(str(tmp_path), trained, 2, with_model=True)

    torch.manual_seed(1)  # fresh weights: everything must come from the checkpoint
    resumed = fit_for(family, config, shard)
    assert restore(resumed, str(tmp_path)) == 2
    for name, engine in trained.engines.items():
        before, after = engine.module.state_dict(), resumed.engines[name].module.state_dict()
        assert all(torch.equal(before[key], after[key]) for key in before), f"{name}: weights differ"
        assert resumed.engines[name].get_lr() == engine.get_lr(), f"{name}: LR schedule not restored"
    expected = trained.model.checkpoint_state()
    assert all(torch.equal(resumed.model.checkpoint_state()[key], expected[key]) for key in expected)

    exported = load_model(tmp_path / MODEL_DIR)
    want = trained.model.exported_state(trained.model.state_dict())
    assert all(torch.allclose(exported.state_dict()[key].float(), want[key].float()) for key in want)


SHARDS = (7, 5, 4)  # three shards of the split, unequal, as prepare may write them


def resumable_fit(family: str, config: dict, shard: dict[str, torch.Tensor], steps: int) -> Fit:
    model = models.build_model(family, config)
    train = TrainConfig(batch_size=3, max_steps=steps, shuffle_window=5, seed=3)
    settings = loop_settings(train, ONE_WORKER, 0, 1, torch.device("cpu"), sum(SHARDS))
    feed = CachedFeed(shard, SHARDS, settings.train, torch.device("cpu"))
    return Fit(model, build_engines(model, settings.train, 0, settings.total_steps, False), feed, settings)


def step_losses(fit: Fit, start: int, stop: int) -> list[list[float]]:
    window, losses = LossWindow(list(fit.engines)), []
    for _ in fit.steps(start, stop, window):
        losses.append(window.totals())
        window.reset()
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("family", ["ddpm", "wgan-gp", "gpt"])
def test_a_run_killed_at_any_step_and_resumed_has_the_uninterrupted_loss_curve(family, process_group, tmp_path):
    """Data order, noise and a critic's extra batches alike: 16 rows in batches of 3 make 5 steps
    an epoch; the runs stop mid-epoch, on an epoch's last step and in the second epoch."""
    config = tiny_config(family)
    if family == "wgan-gp":
        config = {**config, "n_critic": 2}
    torch.manual_seed(0)
    shard = shard_for(models.build_model(family, config))
    name = family
    torch.manual_seed(5)
    uninterrupted = step_losses(resumable_fit(name, config, shard, 12), 0, 12)
    for stop_at in (2, 5, 8):
        torch.manual_seed(5)  # the same initial weights as the uninterrupted run
        killed = resumable_fit(name, config, shard, 12)
        before = step_losses(killed, 0, stop_at)
        folder = tmp_path / f"at{stop_at}"
        write_checkpoint(str(folder), killed, stop_at, with_model=False)
        del killed  # everything the resumed run knows comes from the checkpoint
        torch.manual_seed(99)
        resumed = resumable_fit(name, config, shard, 12)
        start = restore(resumed, str(folder))
        assert before + step_losses(resumed, start, 12) == uninterrupted, f"stopped at step {stop_at}"


class Payload:
    """What a bucket's intruder would plant: unpickling it runs a command."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_tampered_checkpoint_is_refused_and_runs_nothing(process_group, tmp_path):
    config = tiny_config("ddpm")
    shard = shard_for(models.build_model("ddpm", config))
    trained = fit_for("ddpm", config, shard)
    write_checkpoint(str(tmp_path / "ckpt"), trained, 1, with_model=False)
    assert restore(fit_for("ddpm", config, shard), str(tmp_path / "ckpt")) == 1  # genpipe's own: loads
    states = next((tmp_path / "ckpt").rglob("mp_rank_00_model_states.pt"))
    marker = tmp_path / "pwned"
    torch.save({"module": Payload(str(marker))}, states)
    with pytest.raises(CheckpointRefused, match=r"mp_rank_00_model_states.pt: refused: .*posix.system"):
        restore(fit_for("ddpm", config, shard), str(tmp_path / "ckpt"))
    assert not marker.exists()


def test_a_resumed_run_keeps_the_lanes_its_checkpoint_was_written_with():
    before_lanes = written_with(json.dumps({"name": "ddp", "reason": "set", "world": 2}).encode())
    assert before_lanes.lanes == 1  # written before lanes: the order of that code version
    assert data_lanes(TrainConfig(lanes=32), 4, before_lanes.lanes) == 1
    assert data_lanes(TrainConfig(lanes=32), 4, None) == 32
    assert data_lanes(TrainConfig(), 4, None) == 32  # 8 per worker of the first group
    assert data_lanes(TrainConfig(num_workers=[1, 4]), 1, None) == 32  # of the largest an elastic run may have
