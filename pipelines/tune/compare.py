"""compare: every family that fits the data, trained at equal compute as Ray Tune trials (one per
family and seed: a cluster runs them side by side, a killed comparison resumes without running a
finished trial again), one MLflow child run each, the leaderboard on the parent run; the winner's
model goes on to `evaluate` and `register` like a `train` result."""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from data_prep.manifest import Manifest
from pipelines.config import PipelineConfig
from pipelines.config.compare import CompareSection
from pipelines.evaluate.scorers import EVALUATIONS
from pipelines.registry import tracking
from pipelines.train.checkpoints import MODEL_DIR
from pipelines.tune.entrant import run_entrant
from pipelines.tune.leaderboard import Trial, as_table, leaderboard, quality_cost_chart, seed_agreement, winner
from pipelines.tune.trial import TrialSetup
from storage import join, ray_storage, storage_uri
from typed_errors import first_line

log = logging.getLogger("genpipe.compare")
EXPERIMENT = "compare"


def _tuner(config: PipelineConfig, setup: TrialSetup, workflow_id: str, families: list[str]):
    """A new Tuner over families x seeds, or the one a killed comparison left."""
    from ray import tune

    from pipelines.tune.progress import ComparisonProgress

    compare = _section(config)
    trainable = tune.with_resources(
        tune.with_parameters(run_entrant, setup=setup),
        {"cpu": compare.cpus_per_trial, "gpu": compare.gpus_per_trial},
    )
    storage_path, storage_fs = ray_storage(join(config.storage, "compare", workflow_id))
    experiment = f"{storage_path.rstrip('/')}/{EXPERIMENT}"
    if tune.Tuner.can_restore(experiment, storage_filesystem=storage_fs):
        log.info("[compare] resuming the comparison in %s", experiment)
        return tune.Tuner.restore(experiment, trainable, resume_errored=True, storage_filesystem=storage_fs)
    seeds = [config.train.seed + offset for offset in range(compare.seeds)]
    return tune.Tuner(
        trainable,
        param_space={"seed": tune.grid_search(seeds), "family": tune.grid_search(families)},
        # A trial's actor goes on to the next trial: the imports of torch, DeepSpeed and MLflow
        # (~5 s of a core) are paid once per slot, not once per family and seed.
        tune_config=tune.TuneConfig(reuse_actors=True),
        run_config=tune.RunConfig(
            name=EXPERIMENT,
            storage_path=storage_path,
            storage_filesystem=storage_fs,
            # One checkpoint a trial, and the experiment's state saved with each: a comparison
            # killed just after a trial ended knows it ended (Tune syncs every num_to_keep).
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),
            callbacks=[ComparisonProgress(compare.metric or "", len(families) * compare.seeds)],
            verbose=0,
        ),
    )


def _section(config: PipelineConfig) -> CompareSection:
    if config.compare is None:
        raise ValueError("compare: missing: genpipe compare needs a compare: section (or its flags)")
    return config.compare


def run_comparison(
    config: PipelineConfig,
    manifest: Manifest,
    workflow_id: str,
    tracking_uri: str,
    run_id: str,
    report: Callable[..., None] | None = None,
) -> dict[str, Any]:
    """Run (or resume) the comparison; the leaderboard on the workflow's run, the winner returned."""
    compare = _section(config)
    metric, mode = compare.metric or "", compare.mode or "min"
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    fitting, unfit = config.compare_entrants()
    if report is not None:
        report("compare", text=f"{len(fitting)} families x {compare.seeds} seeds; not fitting: {len(unfit)}")
    shared = EVALUATIONS[manifest.modality].shared  # made once here, loaded by every trial
    if shared is not None:
        shared(manifest, config.evaluate)
    base = config.model_dump(mode="json")
    setup = TrialSetup(
        base, manifest.uri, tracking_uri, run_id, compare.cpus_per_trial, compare.gpus_per_trial > 0, report
    )
    from pipelines.tune.progress import reporting

    with reporting(report):
        results = _tuner(config, setup, workflow_id, fitting).fit()
    trials: list[Trial] = []
    failed: dict[str, str] = {}
    for result in results:
        family, seed = result.config["family"], result.config["seed"]
        if result.error or not result.metrics or metric not in result.metrics:
            failed.setdefault(family, first_line(result.error) if result.error else "no score reported")
            continue
        numbers = {k: float(v) for k, v in result.metrics.items() if k.startswith(("eval/", "train/", "cost/"))}
        trials.append(Trial(family, seed, numbers, result.metrics["trial_id"], result.metrics["run_id"]))
    failed = {family: reason for family, reason in failed.items() if all(t.family != family for t in trials)}
    rows = leaderboard(trials, metric, mode, failed, unfit)
    best = winner(trials, rows, metric, mode)
    if best is None:
        raise RuntimeError(f"compare: no family finished with a finite {metric}; {json.dumps(failed)[:400]}")
    agreement = seed_agreement(trials, metric)
    _record(rows, metric, mode, agreement, best, tracking_uri, run_id)
    checkpoint = next(r.checkpoint for r in results if not r.error and r.metrics.get("trial_id") == best.trial_id)
    checkpoint_uri = storage_uri(config.storage, checkpoint.path)
    return {
        "checkpoint_uri": checkpoint_uri,
        "model_uri": join(checkpoint_uri, MODEL_DIR),
        "metrics": {k: v for k, v in best.metrics.items() if k.startswith(("eval/", "train/"))},
        "best_trial": best.trial_id,
        "family": best.family,
        "metric": metric,
        "mode": mode,
        "leaderboard": rows,
        "seed_agreement": agreement,
    }


def _record(
    rows: list[dict[str, Any]],
    metric: str,
    mode: str,
    agreement: float | None,
    best: Trial,
    tracking_uri: str,
    run_id: str,
) -> None:
    """The leaderboard (an MLflow table and a chart) and the winner on the comparison's run."""
    import mlflow

    ranked = sum("rank" in row for row in rows)
    tracking.set_tags(
        tracking_uri,
        run_id,
        {
            "genpipe.compare.winner": best.family,
            "genpipe.compare.best_run_id": best.run_id,
            "genpipe.family": best.family,
        },
    )
    numbers = {"compare/families_ranked": ranked, f"best/{metric}": best.metrics[metric]}
    if agreement is not None:
        numbers["compare/seed_kendall_tau"] = agreement
    tracking.log_metrics(tracking_uri, run_id, numbers)
    with tracking.pointed_at(tracking_uri), tempfile.TemporaryDirectory() as folder:
        mlflow.log_table(as_table(rows), "leaderboard.json", run_id=run_id)
        chart = Path(folder) / "quality_vs_cost.png"
        quality_cost_chart(rows, metric, mode, chart)
        tracking.log_artifact(tracking_uri, run_id, str(chart), "compare")
