"""tune: a Ray Tune sweep over variants of a model, one MLflow child run per trial.

Each trial (pipelines/tune/trial.py) trains one model in its own Tune actor on a one-process
group: the tiny sweep models would spend longer starting a Ray Train worker group per trial than
training. The best trial's final checkpoint goes on to `evaluate` and `register` like a `train`
result.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from typing import Any

from data_prep.manifest import Manifest
from pipelines.config import PipelineConfig
from pipelines.evaluate.scorers import EVALUATIONS
from pipelines.registry import tracking
from pipelines.train.checkpoints import MODEL_DIR
from pipelines.tune.schedulers import TrialEpochBudget, search_algorithm, trial_scheduler
from pipelines.tune.trial import TrialSetup, run_trial
from storage import join, ray_storage, storage_uri

log = logging.getLogger("genpipe.tune")
EXPERIMENT = "sweep"


def _tuner(config: PipelineConfig, setup: TrialSetup, workflow_id: str):
    """A new Tuner, or the one a killed sweep left: finished trials are not run again, the search
    algorithm and ASHA's rungs (`ResumableASHA`) go on where they were."""
    from ray import tune

    from pipelines.tune.progress import SweepProgress

    settings = config.sweep
    resources = {"cpu": settings.cpus_per_trial, "gpu": settings.gpus_per_trial}
    trainable = tune.with_resources(tune.with_parameters(run_trial, setup=setup), resources)
    sweep_uri = join(config.storage, "tune", workflow_id)
    storage_path, storage_fs = ray_storage(sweep_uri)
    experiment = f"{storage_path.rstrip('/')}/{EXPERIMENT}"
    if tune.Tuner.can_restore(experiment, storage_filesystem=storage_fs):
        log.info("[tune] resuming the sweep in %s", experiment)
        return tune.Tuner.restore(experiment, trainable, resume_errored=True, storage_filesystem=storage_fs)
    budget = TrialEpochBudget(settings.max_trial_epochs) if settings.max_trial_epochs else None
    return tune.Tuner(
        trainable,
        param_space={path: distribution.to_tune() for path, distribution in settings.space.items()},
        tune_config=tune.TuneConfig(
            metric=settings.metric,
            mode=settings.mode,
            search_alg=search_algorithm(config),
            scheduler=trial_scheduler(config, sweep_uri),
            num_samples=settings.num_samples,
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=config.train.keep_checkpoints),
            callbacks=[SweepProgress(settings.metric, settings.mode, settings.num_samples)],
            verbose=0,
            stop=budget,
        ),
    )


def run_sweep(
    config: PipelineConfig,
    manifest: Manifest,
    workflow_id: str,
    tracking_uri: str,
    run_id: str,
    report: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the sweep; record every trial and the best on the workflow's run."""
    settings = config.sweep
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    # One small checkpoint per trial-epoch is the point here, not a sync bottleneck to warn about.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # What the scorer shares (the image classifier) is made once here and cached beside the shards,
    # so trials load it instead of racing to make it.
    shared = EVALUATIONS[manifest.modality].shared
    if shared is not None:
        shared(manifest, config.evaluate)
    setup = TrialSetup(
        config.model_dump(mode="json"),
        manifest.uri,
        tracking_uri,
        run_id,
        settings.cpus_per_trial,
        settings.gpus_per_trial > 0,
        report,
    )
    from pipelines.tune.progress import reporting  # Ray Tune with it, when a sweep runs

    with reporting(report):
        results = _tuner(config, setup, workflow_id).fit()
    errors = [result for result in results if result.error]
    finished = [result for result in results if not result.error and result.checkpoint]
    if not finished:
        raise RuntimeError(f"tune: no trial finished; first error: {errors[0].error if errors else 'none'}")
    best = results.get_best_result(settings.metric, settings.mode, scope="last", filter_nan_and_inf=True)
    summary = _record_trials(results, best, config, tracking_uri, run_id)
    checkpoint_uri = storage_uri(config.storage, best.checkpoint.path)
    return {
        "checkpoint_uri": checkpoint_uri,
        "model_uri": join(checkpoint_uri, MODEL_DIR),
        "metrics": {k: v for k, v in best.metrics.items() if k.startswith(("eval/", "train/"))},
        **summary,
    }


def _record_trials(results, best, config: PipelineConfig, tracking_uri: str, run_id: str) -> dict[str, Any]:
    """Close each trial's child run (ASHA-stopped ones never reach their own end), and put the
    best trial, its params and the trials table on the parent run."""
    settings = config.sweep
    children = {run.data.tags.get("genpipe.trial_id"): run for run in tracking.child_runs(tracking_uri, run_id)}
    mlflow_client = tracking.client(tracking_uri)
    stopped_early = ran = 0
    for result in results:
        epochs = int(result.metrics.get("training_iteration", 0)) if result.metrics else 0
        if not epochs:
            continue  # never started: a budget (tune.max_trial_epochs) ran out first
        ran += 1
        early = not result.error and epochs < config.train.epochs
        stopped_early += early
        child = children.get(result.metrics["trial_id"])
        if child is not None:
            mlflow_client.set_tag(child.info.run_id, "genpipe.tune.epochs", str(epochs))
            mlflow_client.set_tag(child.info.run_id, "genpipe.tune.stopped_early", str(early).lower())
            if child.info.status == "RUNNING":
                mlflow_client.set_terminated(child.info.run_id, "FAILED" if result.error else "FINISHED")
    best_id = best.metrics["trial_id"]
    best_params = dict(best.config)
    family = best_params.get("model.family", config.model.family)
    tracking.set_tags(
        tracking_uri,
        run_id,
        {
            "genpipe.tune.best_trial": best_id,
            "genpipe.tune.best_run_id": children[best_id].info.run_id if best_id in children else "",
            "genpipe.family": family,
        },
    )
    tracking.log_metrics(
        tracking_uri,
        run_id,
        {
            f"best/{settings.metric}": best.metrics[settings.metric],
            "tune/trials": ran,
            "tune/stopped_early": stopped_early,
            "tune/trial_epochs": sum(int(r.metrics.get("training_iteration", 0)) for r in results if r.metrics),
        },
    )
    with tempfile.TemporaryDirectory() as folder:
        table = results.get_dataframe()
        table.to_csv(f"{folder}/trials.csv", index=False)
        tracking.log_artifact(tracking_uri, run_id, f"{folder}/trials.csv", "tune")
    return {
        "best_trial": best_id,
        "best_params": best_params,
        "family": family,
        "trials": ran,
        "stopped_early": stopped_early,
    }
