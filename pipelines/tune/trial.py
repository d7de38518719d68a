"""One sweep trial: the training loop of `train` (pipelines/train/) on a one-process group, an
epoch per Tune iteration; after each, the trial scores itself with the evaluator's own scorer,
logs to its MLflow child run and reports to Tune with a checkpoint, so ASHA can stop it and a
restored sweep resumes it."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from data_prep.manifest import load_verified
from pipelines.config import PipelineConfig, assign
from pipelines.evaluate.scorers import scorer_for
from pipelines.registry import tracking
from pipelines.registry.environment import apply_mlflow_defaults
from pipelines.train.checkpoints import restore, write_checkpoint
from pipelines.train.engines import build_engines
from pipelines.train.feed import open_feed
from pipelines.train.loop import Fit, LossWindow
from pipelines.train.model_setup import built_model, model_config
from pipelines.train.settings import data_lanes, loop_settings, one_process_group, set_up_process
from pipelines.train.strategy import strategy_for, worker_memory
from pipelines.train.worker import quiet_worker_logs


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares (sent once through the object store by `tune.with_parameters`)."""

    base_config: dict[str, Any]
    manifest_uri: str
    tracking_uri: str
    parent_run_id: str
    cpus: float
    use_gpu: bool
    report: Callable[..., None] | None = None  # progress lines for the console


def trial_config(base_config: dict[str, Any], params: dict[str, Any]) -> PipelineConfig:
    return PipelineConfig.model_validate(assign({**base_config, "tune": None}, params))


def run_trial(params: dict[str, Any], setup: TrialSetup) -> None:
    """One trial: train epoch by epoch, score, log to the child run, report to Tune."""
    from ray import tune

    apply_mlflow_defaults()
    quiet_worker_logs()
    config = trial_config(setup.base_config, params)
    device = torch.device("cuda" if setup.use_gpu and torch.cuda.is_available() else "cpu")
    set_up_process(config.train, 0, setup.cpus, device)
    manifest = load_verified(setup.manifest_uri)
    model = built_model(config.model.family, model_config(config, manifest)).to(device)
    feed = open_feed(manifest, "train", config.train, device, data_lanes(config.train, 1, None))
    strategy = strategy_for(config.train, model, 1, worker_memory(device, 1), device.type == "cuda")
    settings = loop_settings(config.train, strategy, 0, 1, device, manifest.splits["train"].rows)
    steps_per_epoch, total_steps = settings.steps_per_epoch, settings.total_steps
    score, _ = scorer_for(manifest, config.evaluate)
    trial_id = tune.get_context().get_trial_id()
    run_id = tracking.child_run(setup.tracking_uri, setup.parent_run_id, trial_id, params)
    with one_process_group(settings.on_gpu):
        fit = Fit(
            model,
            build_engines(model, settings.train, strategy.zero_stage, total_steps, settings.on_gpu),
            feed,
            settings,
        )
        step = 0
        checkpoint = tune.get_checkpoint()
        if checkpoint:
            with checkpoint.as_directory() as folder:
                step = restore(fit, folder)
        window = LossWindow(list(fit.engines))
        while step < total_steps:
            epoch_end = min(step + steps_per_epoch, total_steps)
            for _ in fit.steps(step, epoch_end, window):
                pass
            step = epoch_end
            metrics = {
                f"train/{name}_loss": total / window.steps
                for name, total in zip(window.names, window.totals(), strict=True)
            }
            window.reset()
            model.eval()
            metrics.update(score(model, None))
            model.train()
            epoch = step // steps_per_epoch
            tracking.log_metrics(setup.tracking_uri, run_id, metrics, epoch)
            if setup.report is not None:
                shown = ", ".join(f"{k.split('/')[-1]}={v:.4g}" for k, v in metrics.items())
                setup.report("tune", text=f"trial {trial_id} epoch {epoch}/{config.train.epochs}: {shown}")
            if step == total_steps:
                # Before the report: at max_t, ASHA stops the actor as soon as the report is in.
                tracking.client(setup.tracking_uri).set_terminated(run_id, "FINISHED")
            with tempfile.TemporaryDirectory() as folder:
                write_checkpoint(folder, fit, step, with_model=True)
                tune.report({**metrics, "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(folder))
