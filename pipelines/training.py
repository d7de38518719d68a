"""train: a Ray Train TorchTrainer whose workers step each network through its DeepSpeed engine.

Fault tolerance is Ray Train's: a checkpoint (the DeepSpeed checkpoint of every network, every
rank's shard merged into one folder) is reported every `train.checkpoint_every` steps; a restarted
worker group, or the same workflow re-run after a crash (same run name and storage path), starts
from the latest one.
"""

from __future__ import annotations

import logging
import math
import os
import tempfile
import time
import warnings
from typing import Any

import torch

from data_prep.manifest import Manifest
from data_prep.text_tokenizer import TOKENIZER_FILE
from models import build_model
from models.base import parameter_count
from pipelines import tracking
from pipelines.config import PipelineConfig, TrainConfig
from pipelines.deepspeed_setup import for_world_size
from pipelines.fitting import MODEL_DIR, Fit, LossWindow, build_engines, restore, write_checkpoint
from pipelines.hardware import peak_flops
from pipelines.storage import join, ray_storage, storage_uri
from pipelines.warmup import use_environment_extension_cache

# Ray Train V2 sends a worker's print() both to stdout and to its logger (each line twice on the
# console); a logger line appears once.
log = logging.getLogger("genpipe.train")


def _all_reduce(values: list[float], device: torch.device, op: str) -> list[float]:
    import torch.distributed as dist

    tensor = torch.tensor(values, dtype=torch.float64 if device.type == "cpu" else torch.float32,
                          device=device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN if op == "min" else dist.ReduceOp.SUM)
    return tensor.tolist()


def _load_shard(device: torch.device) -> dict[str, torch.Tensor]:
    """This worker's share of the train split, read once through Ray Data and kept in memory.

    The datasets of these families are small next to a worker's memory (the whole standard
    library is ~26 MB of tokens); re-streaming them every epoch would cost more in Ray Data
    start-up than the epoch itself.
    """
    import ray.train

    columns: dict[str, list[torch.Tensor]] = {}
    for batch in ray.train.get_dataset_shard("train").iter_batches(batch_size=1024, batch_format="numpy"):
        for name, values in batch.items():
            columns.setdefault(name, []).append(torch.from_numpy(values.copy()))  # Arrow buffers are read-only
    return {name: torch.cat(parts).to(device) for name, parts in columns.items()}


def _load_registered_weights(module: torch.nn.Module, model_uri: str, tracking_uri: str) -> None:
    """A registered model's weights into `module`: the whole model (warm start) or a part of it
    (a latent diffusion model's VAE)."""
    from safetensors.torch import load_file

    from models.weights import WEIGHTS_FILE
    from pipelines.registry import download

    with tempfile.TemporaryDirectory() as folder:
        module.load_state_dict(load_file(os.path.join(download(model_uri, tracking_uri, folder), WEIGHTS_FILE)))


def _plan(config: TrainConfig, local_rows: int, device: torch.device) -> tuple[int, int]:
    """(steps per epoch, total steps), equal on every rank so no collective waits forever."""
    fewest_rows = int(_all_reduce([float(local_rows)], device, "min")[0])
    rows_per_step = config.batch_size * config.grad_accum_steps
    steps_per_epoch = fewest_rows // rows_per_step
    if steps_per_epoch == 0:
        raise ValueError(f"train.batch_size: {config.batch_size} x train.grad_accum_steps {config.grad_accum_steps} "
                         f"is more than a worker's {fewest_rows} rows")
    total = steps_per_epoch * config.epochs
    return steps_per_epoch, min(total, config.max_steps or total)


def _report_checkpoint(fit: Fit, step: int, metrics: dict[str, float], final: bool,
                       extra_files: dict[str, str]) -> None:
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
        use_environment_extension_cache()  # the op `make` pre-built (pipelines/warmup.py)


class Throughput:
    """Samples/s and, for language models, tokens/s and MFU over a logging window."""

    def __init__(self, model, shard: dict[str, torch.Tensor], world: int, peak: float | None):
        self.world, self.peak = world, peak
        self.tokens_per_sample = shard["tokens"].shape[1] - 1 if "tokens" in shard else None
        self.flops_per_token = model.flops_per_token(self.tokens_per_sample) if self.tokens_per_sample else None
        self.restart()

    def restart(self) -> None:
        self.started, self.samples = time.perf_counter(), 0

    def metrics(self) -> dict[str, float]:
        samples_per_s = self.samples * self.world / (time.perf_counter() - self.started)
        result = {"train/samples_per_s": samples_per_s}
        if self.tokens_per_sample:
            tokens_per_s = samples_per_s * self.tokens_per_sample
            result["train/tokens_per_s"] = tokens_per_s
            if self.peak:
                result["train/mfu"] = self.flops_per_token * tokens_per_s / (self.world * self.peak)
        return result


def _log_placement(model, uri: str, run_id: str, zero_stage: int) -> None:
    """Which node each rank runs on and what share of the parameters it holds (under ZeRO-3 each
    rank keeps only its partition): tags and metrics on the workflow's run, from rank 0."""
    import ray
    import torch.distributed as dist

    params = list(model.parameters())
    full = parameter_count(params)
    # Frozen parts (a latent model's VAE) are not DeepSpeed's: every rank holds them whole.
    held = sum(getattr(p, "ds_tensor", p).numel() for p in params) if zero_stage == 3 else full
    mine = {"node": ray.get_runtime_context().get_node_id(), "held": held, "full": full}
    everyone: list[dict[str, Any]] = [{}] * dist.get_world_size()
    dist.all_gather_object(everyone, mine)
    if dist.get_rank() == 0:
        tracking.set_tags(uri, run_id, {f"genpipe.train.rank{r}.node": info["node"] for r, info in enumerate(everyone)})
        tracking.log_metrics(uri, run_id, {f"train/rank{r}_param_fraction": info["held"] / info["full"]
                                           for r, info in enumerate(everyone)})


def train_loop(loop_config: dict[str, Any]) -> None:
    """Runs on every Ray Train worker."""
    import ray.train
    import ray.train.torch

    quiet_worker_logs()
    config = PipelineConfig.model_validate(loop_config["pipeline"])
    context = ray.train.get_context()
    rank, world = context.get_world_rank(), context.get_world_size()
    train = for_world_size(config.train, world)
    torch.set_num_threads(max(1, math.floor(train.cpus_per_worker)))
    torch.manual_seed(train.seed * 1000 + rank)
    device = ray.train.torch.get_device()
    on_gpu = device.type == "cuda"
    if on_gpu:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True

    model = build_model(config.model.family, loop_config["model_config"])
    if loop_config.get("warm_start"):
        _load_registered_weights(model, loop_config["warm_start"], loop_config["tracking_uri"])
        log.info("[train] warm start from %s", loop_config["warm_start"])
    for part, part_uri in loop_config.get("pretrained", {}).items():
        _load_registered_weights(getattr(model, part), part_uri, loop_config["tracking_uri"])
    model.set_activation_checkpointing(train.activation_checkpointing)
    model = model.to(device)
    shard = _load_shard(device)
    rows_in_shard = len(next(iter(shard.values())))
    steps_per_epoch, total_steps = _plan(train, rows_in_shard, device)
    throughput = Throughput(model, shard, world, peak_flops(device, train.peak_tflops))  # before ZeRO-3 shards it
    fit = Fit(model, build_engines(model, train, total_steps, on_gpu), shard, train, rank, steps_per_epoch)

    start_step = 0
    checkpoint = ray.train.get_checkpoint()
    if checkpoint:
        with checkpoint.as_directory() as folder:
            start_step = restore(fit, folder)

    uri, run_id = loop_config["tracking_uri"], loop_config["run_id"]
    _log_placement(model, uri, run_id, train.zero_stage)
    if checkpoint and rank == 0:
        log.info("[train] resumed from the checkpoint at step %d", start_step)
        tracking.log_metrics(uri, run_id, {"train/resumed_from_step": start_step}, start_step)
    window = LossWindow(list(fit.engines))
    throughput.restart()
    last_metrics: dict[str, float] = {}
    for step in fit.steps(start_step, total_steps, window):
        throughput.samples += train.batch_size * train.grad_accum_steps
        last = step == total_steps
        if step % train.log_every == 0 or last:
            totals = _all_reduce(window.totals(), device, "sum")
            metrics = {f"train/{name}_loss": total / (world * window.steps)
                       for name, total in zip(window.names, totals, strict=True)}
            metrics.update(throughput.metrics())
            metrics["train/lr"] = next(iter(fit.engines.values())).get_lr()[0]
            metrics["train/epoch"] = (step - 1) // steps_per_epoch
            if rank == 0:
                tracking.log_metrics(uri, run_id, metrics, step)
                shown = ", ".join(f"{k.removeprefix('train/')}={v:.4g}" for k, v in metrics.items())
                log.info("[train] step %d/%d %s", step, total_steps, shown)
            window.reset()
            throughput.restart()
            last_metrics = metrics
        if step % train.checkpoint_every == 0 or last:
            _report_checkpoint(fit, step, last_metrics, final=last, extra_files=loop_config.get("model_files", {}))
            throughput.restart()  # a checkpoint's time is not training throughput


def run_training(config: PipelineConfig, manifest: Manifest, model_config: dict[str, Any],
                 workflow_id: str, tracking_uri: str, run_id: str, warm_start: str | None = None,
                 pretrained: dict[str, str] | None = None) -> dict[str, Any]:
    """Fit the model on the prepared dataset; returns where the final checkpoint and weights are."""
    import ray
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer

    from data_prep.readers import ray_dataset

    train = config.train
    use_gpu = ray.cluster_resources().get("GPU", 0) > 0 if train.use_gpu == "auto" else train.use_gpu
    resources = {"CPU": train.cpus_per_worker, **({"GPU": 1} if use_gpu else {})}
    storage_path, storage_fs = ray_storage(join(config.storage, "checkpoints"))
    trainer = TorchTrainer(
        train_loop,
        train_loop_config={"pipeline": config.model_dump(mode="json"), "model_config": model_config,
                           "tracking_uri": tracking_uri, "run_id": run_id, "warm_start": warm_start,
                           "pretrained": pretrained or {},
                           "model_files": {TOKENIZER_FILE: manifest.tokenizer_uri} if manifest.text else {}},
        scaling_config=ScalingConfig(num_workers=train.num_workers, use_gpu=use_gpu,
                                     resources_per_worker=resources, placement_strategy=train.placement_strategy),
        run_config=RunConfig(
            name=f"{workflow_id}-train", storage_path=storage_path, storage_filesystem=storage_fs,
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=2),
        ),
        datasets={"train": ray_dataset(manifest, "train")},
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
    )
    result = trainer.fit()
    checkpoint_uri = storage_uri(config.storage, result.checkpoint.path)
    return {"checkpoint_uri": checkpoint_uri, "model_uri": join(checkpoint_uri, MODEL_DIR),
            "metrics": {k: v for k, v in result.metrics.items() if isinstance(v, int | float)}}
