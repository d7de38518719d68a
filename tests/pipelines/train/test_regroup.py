"""A ZeRO-2 or ZeRO-3 checkpoint resumes on another number of workers with everything it holds:
two workers' checkpoint on one and one worker's on two, mid-epoch, through DeepSpeed's universal
checkpoint (pipelines/train/checkpoints.py). Real gloo groups in processes of their own, the
engines, checkpoints and restore of the training loop; every Adam moment, the weights, the LR
schedule and the data cursor are compared with the group that wrote them, and the regrouped run
trains on with finite losses."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as multiprocessing

STAGES = (2, 3)
ROWS = 48
DATA = {"image_shape": (1, 8, 8), "num_classes": 10, "class_names": [str(d) for d in range(10)]}


def _group(rank: int, world: int, port: int) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world), LOCAL_WORLD_SIZE=str(world))
    torch.distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)


def _fit(stage: int, rank: int, world: int, universal: bool):
    import models
    from pipelines.config import TrainConfig
    from pipelines.train.engines import build_engines
    from pipelines.train.feed import CachedFeed
    from pipelines.train.loop import Fit
    from pipelines.train.settings import loop_settings
    from pipelines.train.strategy import Strategy

    torch.manual_seed(0)
    model = models.build_model("vae", models.resolve_config("vae", "tiny", {}, DATA).model_dump(mode="json"))
    train = TrainConfig(batch_size=4, max_steps=40, learning_rate=1e-2, seed=5, shuffle_window=8)
    settings = loop_settings(train, Strategy(f"zero{stage}", "set"), rank, world, torch.device("cpu"), ROWS)
    generator = torch.Generator().manual_seed(1)
    shard = {"image": torch.rand(ROWS, 1, 8, 8, generator=generator) * 2 - 1, "label": torch.arange(ROWS) % 10}
    feed = CachedFeed(shard, (20, 28), settings.train, torch.device("cpu"), lanes=4)
    engines = build_engines(model, settings.train, stage, settings.total_steps, False, universal=universal)
    return Fit(model, engines, feed, settings)


def _phase(rank: int, world: int, port: int, folder: str, read_from: str | None, write_to: str) -> None:
    """Resume each stage's checkpoint in `read_from` (None: start afresh) and write it again at
    once (`resumed/`), as this group holds it; then train 3 steps and write the next checkpoint."""
    from pipelines.train.checkpoints import restore, write_checkpoint
    from pipelines.train.loop import LossWindow
    from pipelines.train.worker import quiet_worker_logs

    quiet_worker_logs()
    _group(rank, world, port)
    for stage in STAGES:
        fit = _fit(stage, rank, world, universal=read_from is not None)
        target, step = Path(folder, write_to, str(stage)), 0
        if read_from is not None:
            step = restore(fit, str(Path(folder, read_from, str(stage))), regroup=True)
            write_checkpoint(str(target / "resumed"), fit, step, with_model=False)
            _note(rank, target / "resumed", fit, step, [])
        window = LossWindow(list(fit.engines))
        losses = [window.totals()[0] for _ in fit.steps(step, step + 3, window)]
        write_checkpoint(str(target), fit, step + 3, with_model=False)
        _note(rank, target, fit, step + 3, losses)
    torch.distributed.destroy_process_group()


def _note(rank: int, folder: Path, fit, step: int, losses: list[float]) -> None:
    if rank == 0:
        lr = next(iter(fit.engines.values())).get_lr()[0]
        note = {"step": step, "cursor": [fit.cursor.epoch, fit.cursor.position], "lr": lr, "losses": losses}
        (folder / "note.json").write_text(json.dumps(note))


def _whole(checkpoint: Path) -> dict[str, torch.Tensor]:
    """Every parameter's weights and Adam moments in a checkpoint, whole whatever group wrote it
    (DeepSpeed's universal form of it)."""
    from pipelines.train.checkpoints import _universal

    out = {}
    for latest in checkpoint.glob("*/latest"):  # each network's DeepSpeed checkpoint
        with _universal(str(latest.parent)) as (folder, tag):
            for path in Path(folder, tag, "zero").glob("*/*.pt"):
                if path.stem in ("fp32", "exp_avg", "exp_avg_sq"):
                    key = f"{latest.parent.name}/{path.parent.name}/{path.stem}"
                    loaded = torch.load(path, weights_only=True)  # {"param": tensor}, or the tensor (stage 3)
                    out[key] = loaded["param"] if isinstance(loaded, dict) else loaded
    return out


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _run(world: int, folder: Path, read_from: str | None, write_to: str) -> None:
    multiprocessing.spawn(_phase, args=(world, _free_port(), str(folder), read_from, write_to), nprocs=world)


@pytest.mark.slow
def test_zero2_and_zero3_checkpoints_resume_on_one_worker_and_on_two(tmp_path):
    """2 workers -> 1 -> 2: each resume holds every weight and Adam moment the checkpoint held,
    the LR schedule's place and the data cursor, and trains on."""
    _run(2, tmp_path, None, "two")
    for read_from, write_to, world in (("two", "one", 1), ("one", "two-again", 2)):
        _run(world, tmp_path, read_from, write_to)
        for stage in STAGES:
            written, resumed = tmp_path / read_from / str(stage), tmp_path / write_to / str(stage) / "resumed"
            before, after = _whole(written), _whole(resumed)
            assert len(before) == 3 * len(list(_fit_parameters())) and before.keys() == after.keys()
            changed = [key for key in before if not torch.allclose(before[key], after[key], atol=1e-7)]
            assert changed == [], f"zero{stage}, {read_from} -> {write_to}: {changed[:5]}"
            then, now = (json.loads((folder / "note.json").read_text()) for folder in (written, resumed))
            assert (now["step"], now["cursor"]) == (then["step"], then["cursor"]) and now["lr"] == pytest.approx(
                then["lr"]
            )
            assert now["cursor"][1] not in (0, ROWS)  # mid-epoch
            trained = json.loads((resumed.parent / "note.json").read_text())["losses"]
            assert len(trained) == 3 and all(loss == loss and abs(loss) < 1e6 for loss in trained)


def _fit_parameters():
    import models

    data = {"image_shape": (1, 8, 8), "num_classes": 10, "class_names": [str(d) for d in range(10)]}
    return models.build_model(
        "vae", models.resolve_config("vae", "tiny", {}, data).model_dump(mode="json")
    ).parameters()
