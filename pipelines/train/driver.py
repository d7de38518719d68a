"""train: a Ray Train TorchTrainer whose workers (pipelines/train/worker.py) step each network
through its DeepSpeed engine.

Fault tolerance is Ray Train's: a checkpoint (pipelines/train/checkpoints.py) is reported every
`train.checkpoint_every` steps; a restarted worker group, or the same workflow re-run after a crash
(same run name and storage path), starts from the latest one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from data_prep.manifest import Manifest
from data_prep.modalities.registry import modality_of
from pipelines.config import PipelineConfig
from pipelines.train.capacity import (
    Capacity,
    Resources,
    cluster_capacity,
    shown_need,
    uses_gpu,
    wait_for_scale_up,
    worker_resources,
)
from pipelines.train.checkpoints import MODEL_DIR
from pipelines.train.handoff import TrainHandOff
from pipelines.train.startup import torch_trainer_class, use_start_up_settings
from pipelines.train.worker import train_loop
from storage import join, ray_storage, storage_uri


def run_training(
    config: PipelineConfig,
    manifest: Manifest,
    model_config: dict[str, Any],
    workflow_id: str,
    tracking_uri: str,
    run_id: str,
    warm_start: str | None = None,
    pretrained: dict[str, str] | None = None,
    report: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Fit the model on the prepared dataset; returns where the final checkpoint and weights are."""
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchConfig

    use_start_up_settings()
    train = config.train
    capacity = cluster_capacity()
    use_gpu = uses_gpu(train, capacity)
    resources = worker_resources(train, capacity)
    withdraw = _scaled_up_for(config, capacity, resources, report or _say_nothing)
    storage_path, storage_fs = ray_storage(join(config.storage, "checkpoints"))
    trainer = torch_trainer_class()(
        train_loop,
        train_loop_config=TrainHandOff(
            config=config,
            model_config=model_config,
            manifest_uri=manifest.uri,
            tracking_uri=tracking_uri,
            run_id=run_id,
            warm_start=warm_start,
            pretrained=pretrained or {},
            model_files=modality_of(manifest).model_files(manifest),
            report=report,
            fit_called_at=time.time(),
        ).as_loop_config(),
        scaling_config=ScalingConfig(
            num_workers=train.num_workers,  # type: ignore[arg-type]  # [min, max]: Train V2 elastic (v1 stubs)
            use_gpu=use_gpu,
            resources_per_worker=resources,
            placement_strategy=train.placement_strategy,
        ),
        run_config=RunConfig(
            name=f"{workflow_id}-train",
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            failure_config=FailureConfig(max_failures=train.max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=train.keep_checkpoints),
        ),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
    )
    try:
        result = trainer.fit()
    finally:
        withdraw()
    if result.checkpoint is None:  # every run reports its final step with a checkpoint
        raise RuntimeError(f"train: the run {workflow_id}-train reported no checkpoint")
    checkpoint_uri = storage_uri(config.storage, result.checkpoint.path)
    return {
        "checkpoint_uri": checkpoint_uri,
        "model_uri": join(checkpoint_uri, MODEL_DIR),
        "metrics": {k: v for k, v in (result.metrics or {}).items() if isinstance(v, int | float)},
    }


def _say_nothing(stage: str, **event: Any) -> None:
    """The `report` of a run without a console."""


def _scaled_up_for(
    config: PipelineConfig, capacity: Capacity, need: Resources, report: Callable[..., None]
) -> Callable[[], None]:
    """Wait until the nodes that are up fit the fewest workers the run starts with: on an autoscaling
    cluster the autoscaler is asked for them first (the preflight has refused work that no node
    type fits). Returns the call that withdraws that request once the run has ended."""
    train = config.train
    fewest = train.min_workers
    if capacity.training_slots_up(train, need) >= fewest:
        return lambda: None
    what = f"{fewest} training workers of {shown_need(need)}"
    return wait_for_scale_up(
        [need] * fewest,
        lambda now: now.training_slots_up(train, need) >= fewest,
        config.cluster.scale_up_timeout_s,
        what,
        lambda text: report("train", text=text),
    )
