"""The body of every Ray Train worker: build the model and its engines, resume from the latest
checkpoint (weights and data cursor), step through its slice of each global batch of the train
split (pipelines/train/feed.py), log from rank 0, report checkpoints to Ray Train.

Ray Train V2 sends a worker's print() both to stdout and to its logger (each line twice on the
console); a logger line appears once.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from typing import Any

import torch

from data_prep.manifest import load_verified
from data_prep.modalities.registry import modality_of
from models.base import parameter_count
from pipelines.registry.environment import apply_mlflow_defaults
from pipelines.train.checkpoints import STRATEGY_FILE, WrittenBy, regrouped, restore, write_checkpoint, written_with
from pipelines.train.engines import build_engines
from pipelines.train.feed import open_feed
from pipelines.train.handoff import TrainHandOff
from pipelines.train.hardware import peak_flops
from pipelines.train.live import LiveRun
from pipelines.train.loop import Fit, LossWindow
from pipelines.train.model_setup import built_model
from pipelines.train.ops import use_environment_extension_cache
from pipelines.train.registered import load_registered_weights
from pipelines.train.settings import LoopSettings, data_lanes, loop_settings, set_up_process
from pipelines.train.startup import StartupClock
from pipelines.train.strategy import strategy_for, worker_memory
from pipelines.train.throughput import Throughput

log = logging.getLogger("genpipe.train")


def _all_reduce(values: list[float], device: torch.device, op: str = "SUM") -> list[float]:
    """`values` reduced over every rank (summed, or `op`: MIN, MAX)."""
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64 if device.type == "cpu" else torch.float32, device=device)
    dist.all_reduce(tensor, op=getattr(dist.ReduceOp, op))
    return tensor.tolist()


def _written_by(checkpoint: Any) -> WrittenBy | None:
    """How the group that wrote the checkpoint shared the model and the data; one file read, not
    the checkpoint's download. None: no checkpoint, or one written before this was recorded."""
    if checkpoint is None:
        return None
    try:
        with checkpoint.filesystem.open_input_stream(f"{checkpoint.path}/{STRATEGY_FILE}") as handle:
            return written_with(handle.read())
    except FileNotFoundError:
        return None


def _report_checkpoint(
    fit: Fit, step: int, metrics: dict[str, float], final: bool, extra_files: dict[str, str]
) -> None:
    """Every network's DeepSpeed checkpoint (the final one with the consolidated model) to Ray Train."""
    import ray.train

    with tempfile.TemporaryDirectory() as folder:
        write_checkpoint(folder, fit, step, with_model=final, extra_files=extra_files)
        ray.train.report({**metrics, "step": step}, checkpoint=ray.train.Checkpoint.from_directory(folder))


def quiet_worker_logs() -> None:
    """Keep the console to genpipe's own progress lines: Ray Train's per-checkpoint INFO lines
    and DeepSpeed's deprecation chatter are still in the Ray session logs."""
    logging.getLogger("ray.train").setLevel(logging.WARNING)
    warnings.filterwarnings("ignore", category=FutureWarning, module="torch.distributed")
    if not torch.cuda.is_available():
        os.environ.setdefault("DS_ACCELERATOR", "cpu")  # skips the "could not detect" warning
        use_environment_extension_cache()  # for the ops DeepSpeed builds on first use (pipelines/train/ops.py)


def _log_placement(model, live: LiveRun, zero_stage: int) -> None:
    """Which node each rank runs on and what share of the parameters it holds (under ZeRO-3 each
    rank keeps only its partition): tags and metrics on the workflow's run, sent by rank 0 in the
    background (no rank waits on MLflow before its first step)."""
    import ray
    import torch.distributed as dist

    params = list(model.parameters())
    full = parameter_count(params)
    # Frozen parts (a latent model's VAE) are not DeepSpeed's: every rank holds them whole.
    held = sum(getattr(p, "ds_tensor", p).numel() for p in params) if zero_stage == 3 else full
    mine = {"node": ray.get_runtime_context().get_node_id(), "held": held, "full": full}
    everyone: list[dict[str, Any]] = [{}] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    live.tags({f"genpipe.train.rank{r}.node": info["node"] for r, info in enumerate(everyone)})
    live.log({f"train/rank{r}_param_fraction": info["held"] / info["full"] for r, info in enumerate(everyone)})


def train_loop(loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch

    handoff = TrainHandOff.from_loop_config(loop_config)
    clock = StartupClock(handoff.fit_called_at)
    apply_mlflow_defaults()

    quiet_worker_logs()
    config = handoff.config
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    device = ray.train.torch.get_device()
    set_up_process(config.train, rank, config.train.cpus_per_worker, device)

    model = built_model(config.model.family, handoff.model_config)
    if handoff.warm_start:
        load_registered_weights(model, handoff.warm_start, handoff.tracking_uri)
        log.info("[train] warm start from %s", handoff.warm_start)
    for part, part_uri in handoff.pretrained.items():
        load_registered_weights(getattr(model, part), part_uri, handoff.tracking_uri)
    model.set_activation_checkpointing(config.train.activation_checkpointing)
    model = model.to(device)
    manifest = load_verified(handoff.manifest_uri)
    checkpoint = ray.train.get_checkpoint()
    written = _written_by(checkpoint)
    lanes = data_lanes(config.train, world, written.lanes if written else (1 if checkpoint else None))
    feed = open_feed(manifest, "train", config.train, device, lanes, world, announce=rank == 0)
    (memory,) = _all_reduce([worker_memory(device, context.get_local_world_size())], device, op="MIN")
    written_by = written.world if written else None
    strategy = written.strategy if written else strategy_for(config.train, model, world, memory, device.type == "cuda")
    regroup = regrouped(strategy, written_by, world)
    settings = loop_settings(config.train, strategy, rank, world, device, manifest.splits["train"].rows)
    train, total_steps = settings.train, settings.total_steps
    tokens = modality_of(manifest).tokens_per_row(manifest)
    throughput = Throughput(model, tokens, world, peak_flops(device, train.peak_tflops))  # before ZeRO-3 shards it
    clock.mark("setup")
    engines = build_engines(model, train, strategy.zero_stage, total_steps, settings.on_gpu, universal=regroup)
    fit = Fit(model, engines, feed, settings)
    clock.mark("engines")

    start_step = 0
    if checkpoint:
        with checkpoint.as_directory() as folder:
            start_step = restore(fit, folder, regroup=regroup)

    uri, run_id = handoff.tracking_uri, handoff.run_id
    ranks = (rank, context.get_local_rank(), context.get_node_rank())
    live = LiveRun(config, manifest, uri, run_id, ranks, handoff.report)
    _log_placement(model, live, strategy.zero_stage)
    live.note(f"strategy {strategy.name} (ZeRO stage {strategy.zero_stage}): {strategy.reason}")
    live.tags({"genpipe.train.strategy": strategy.name, "genpipe.train.strategy_reason": strategy.reason})
    live.log({"train/workers": float(world)}, start_step)  # an elastic run's size, per (re)start
    if checkpoint:
        if rank == 0:
            log.info("[train] resumed from the checkpoint at step %d", start_step)
        live.note(f"resumed from the checkpoint at step {start_step}")
        live.log({"train/resumed_from_step": start_step}, start_step)
    if regroup:
        live.note(
            f"{written_by} workers wrote the checkpoint, {world} resume it under {strategy.name}, through "
            "DeepSpeed's universal checkpoint: weights, Adam's moments, LR schedule and data position carried over"
        )
        live.log({"train/regrouped_from_workers": float(written_by or 0)}, start_step)
    try:
        _fit(fit, live, throughput, settings, start_step, handoff.model_files, clock)
    finally:
        live.close()


def _fit(
    fit: Fit,
    live: LiveRun,
    throughput: Throughput,
    settings: LoopSettings,
    start_step: int,
    files: dict[str, str],
    clock: StartupClock,
) -> None:
    """The steps from `start_step` on, with what the run shows and its checkpoints."""
    train, total_steps, world = settings.train, settings.total_steps, settings.world_size
    window = LossWindow(list(fit.engines))
    throughput.restart()
    last_metrics: dict[str, float] = {}
    for step in fit.steps(start_step, total_steps, window):
        if step == start_step + 1:
            clock.mark("first_step")
            started = clock.metrics()
            live.log(started, step)
            live.note(clock.summary(started))
        throughput.samples += train.batch_size * train.grad_accum_steps
        last = step == total_steps
        if step % train.log_every == 0 or last:
            totals = _all_reduce(window.totals(), settings.device)
            metrics = {
                f"train/{name}_loss": total / (world * window.steps)
                for name, total in zip(window.names, totals, strict=True)
            }
            metrics.update(throughput.metrics())
            metrics["train/lr"] = next(iter(fit.engines.values())).get_lr()[0]
            metrics["train/epoch"] = fit.cursor.epoch
            live.metrics(step, total_steps, metrics)
            window.reset()
            throughput.restart()
            last_metrics = metrics
        live.samples(step, total_steps, fit.model)
        if step % train.checkpoint_every == 0 or last:
            _report_checkpoint(fit, step, last_metrics, final=last, extra_files=files)
            throughput.restart()  # a checkpoint's (or a sample grid's) time is not training throughput
