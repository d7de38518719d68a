"""tune: a Ray Tune sweep over variants of a GAN or autoencoder, one MLflow child run per trial.

Each trial trains one model in its own Tune actor with the same step loop and DeepSpeed engines as
`train` (pipelines/fitting.py), on a one-process group: the tiny sweep models would spend longer
starting a Ray Train worker group per trial than training. An iteration is one epoch; after each,
the trial scores itself with the evaluator's own scorer, logs to its child run and reports to Tune
with a checkpoint, so ASHA can stop it and a restored sweep resumes it. The best trial's final
checkpoint goes on to `evaluate` and `register` like a `train` result.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import tempfile
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
from ray.tune.stopper import Stopper

import models
from data_prep.manifest import Manifest, load_verified
from data_prep.readers import read_arrays
from pipelines import tracking
from pipelines.config import PipelineConfig, assign
from pipelines.deepspeed_setup import for_world_size
from pipelines.fitting import MODEL_DIR, Fit, LossWindow, build_engines, restore, write_checkpoint
from pipelines.storage import exists, join, ray_storage, read_bytes, storage_uri, write_bytes_atomic

log = logging.getLogger("genpipe.tune")
EXPERIMENT = "sweep"


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares (sent once through the object store by `tune.with_parameters`)."""

    base_config: dict[str, Any]
    manifest_uri: str
    tracking_uri: str
    parent_run_id: str
    cpus: float
    use_gpu: bool


def trial_config(base_config: dict[str, Any], params: dict[str, Any]) -> PipelineConfig:
    return PipelineConfig.model_validate(assign({**base_config, "tune": None}, params))


@contextmanager
def one_process_group(on_gpu: bool):
    """A torch.distributed group of one, which DeepSpeed's engines expect; rendezvous through a
    private file, so concurrent trials on a node never race for a port."""
    import torch.distributed as dist

    for name in ("RANK", "LOCAL_RANK"):
        os.environ[name] = "0"  # DeepSpeed's engine asserts a launcher set them
    os.environ["WORLD_SIZE"] = "1"
    with tempfile.TemporaryDirectory() as folder:
        dist.init_process_group("nccl" if on_gpu else "gloo", init_method=f"file://{folder}/rendezvous",
                                rank=0, world_size=1)
        try:
            yield
        finally:
            dist.destroy_process_group()


def _train_split(manifest: Manifest, device: torch.device) -> dict[str, torch.Tensor]:
    images, labels = read_arrays(manifest, "train")
    return {"image": torch.from_numpy(images).to(device), "label": torch.from_numpy(labels).long().to(device)}


def run_trial(params: dict[str, Any], setup: TrialSetup) -> None:
    """One trial: train epoch by epoch, score, log to the child run, report to Tune."""
    from ray import tune

    from pipelines.evaluation import image_scorer
    from pipelines.steps import data_shape
    from pipelines.training import quiet_worker_logs

    quiet_worker_logs()
    config = trial_config(setup.base_config, params)
    train = for_world_size(config.train, 1)
    torch.manual_seed(train.seed)
    on_gpu = setup.use_gpu and torch.cuda.is_available()
    device = torch.device("cuda" if on_gpu else "cpu")
    torch.set_num_threads(max(1, math.floor(setup.cpus)))
    manifest = load_verified(setup.manifest_uri)
    model_config = models.resolve_config(config.model.family, config.model.preset, config.model.params,
                                         data_shape(manifest))
    model = models.build_model(config.model.family, model_config).to(device)
    shard = _train_split(manifest, device)
    steps_per_epoch = len(shard["image"]) // (train.batch_size * train.grad_accum_steps)
    if steps_per_epoch == 0:
        raise ValueError(f"train.batch_size: {train.batch_size} is more than the {len(shard['image'])} train rows")
    total_steps = steps_per_epoch * train.epochs
    score, _ = image_scorer(manifest, config.evaluate)
    trial_id = tune.get_context().get_trial_id()
    run_id = tracking.child_run(setup.tracking_uri, setup.parent_run_id, trial_id, params)
    with one_process_group(on_gpu):
        fit = Fit(model, build_engines(model, train, total_steps, on_gpu), shard, train, 0, steps_per_epoch)
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
            metrics = {f"train/{name}_loss": total / window.steps
                       for name, total in zip(window.names, window.totals(), strict=True)}
            window.reset()
            model.eval()
            metrics.update(score(model, None))
            model.train()
            epoch = step // steps_per_epoch
            tracking.log_metrics(setup.tracking_uri, run_id, metrics, epoch)
            if step == total_steps:
                # Before the report: at max_t, ASHA stops the actor as soon as the report is in.
                tracking.client(setup.tracking_uri).set_terminated(run_id, "FINISHED")
            with tempfile.TemporaryDirectory() as folder:
                write_checkpoint(folder, fit, step, with_model=True)
                tune.report({**metrics, "epoch": epoch}, checkpoint=tune.Checkpoint.from_directory(folder))


def _search(config: PipelineConfig):
    """The search algorithm with the concurrency limit built in (Tune ignores
    `max_concurrent_trials` for a search algorithm passed in that is not a `Searcher`)."""
    from ray.tune.search import BasicVariantGenerator, ConcurrencyLimiter

    settings = config.tune
    if settings.search == "optuna":
        from optuna.samplers import TPESampler
        from ray.tune.search.optuna import OptunaSearch

        return ConcurrencyLimiter(OptunaSearch(sampler=TPESampler(seed=settings.seed)), settings.max_concurrent)
    return BasicVariantGenerator(random_state=settings.seed, max_concurrent=settings.max_concurrent)


SEARCH_PROPERTIES = ("_metric", "_mode", "_metric_op")


class ResumableASHA(ASHAScheduler):
    """ASHA whose rungs survive a killed sweep. A restored Tuner gets its search algorithm's state
    back but its scheduler as it was pickled at the start (empty rungs), so resumed trials would be
    judged only against each other. This one writes its state (what Ray's own `save` writes) to
    `state_uri` after every result, and reads it back when the restored Tuner unpickles it."""

    def __init__(self, state_uri: str, **kwargs: Any):
        super().__init__(**kwargs)
        self.state_uri = state_uri

    def on_trial_result(self, tune_controller, trial, result: dict) -> str:
        decision = super().on_trial_result(tune_controller, trial, result)
        write_bytes_atomic(self.state_uri, pickle.dumps(self.__dict__))
        return decision

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        if exists(self.state_uri):  # written by this sweep's own driver, beside Tune's tuner.pkl
            saved = pickle.loads(read_bytes(self.state_uri))
            # The metric and mode stay unset: the restored Tuner sets them, and refuses a scheduler
            # that already has them.
            self.__dict__.update({k: v for k, v in saved.items() if k not in SEARCH_PROPERTIES})


def _scheduler(config: PipelineConfig, sweep_uri: str):
    settings = config.tune
    if settings.scheduler == "asha":
        return ResumableASHA(join(sweep_uri, "asha-state.pkl"), max_t=config.train.epochs,
                             grace_period=min(settings.grace_period, config.train.epochs),
                             reduction_factor=settings.reduction_factor)
    return FIFOScheduler()


class TrialEpochBudget(Stopper):
    """Stops the whole sweep once its trials have run `budget` epochs between them (the budget
    ASHA and plain random search are compared on in benchmarks/sweep_bench.py)."""

    def __init__(self, budget: int):
        self.budget, self.spent = budget, 0

    def __call__(self, trial_id: str, result: dict[str, Any]) -> bool:
        self.spent += 1
        return False

    def stop_all(self) -> bool:
        return self.spent >= self.budget


def _tuner(config: PipelineConfig, setup: TrialSetup, workflow_id: str):
    """A new Tuner, or the one a killed sweep left: finished trials are not run again, the search
    algorithm and ASHA's rungs (`ResumableASHA`) go on where they were."""
    from ray import tune

    settings = config.tune
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
        tune_config=tune.TuneConfig(metric=settings.metric, mode=settings.mode, search_alg=_search(config),
                                    scheduler=_scheduler(config, sweep_uri), num_samples=settings.num_samples),
        run_config=tune.RunConfig(name=EXPERIMENT, storage_path=storage_path, storage_filesystem=storage_fs,
                                  checkpoint_config=tune.CheckpointConfig(num_to_keep=1), verbose=0,
                                  stop=budget),
    )


def run_sweep(config: PipelineConfig, manifest: Manifest, workflow_id: str, tracking_uri: str,
              run_id: str) -> dict[str, Any]:
    """Run (or resume) the sweep; record every trial and the best on the workflow's run."""
    from pipelines.image_metrics import load_or_train_classifier

    settings = config.tune
    logging.getLogger("ray.tune").setLevel(logging.WARNING)
    # One small checkpoint per trial-epoch is the point here, not a sync bottleneck to warn about.
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    # Trained once here and cached beside the shards, so trials load it instead of racing to train it.
    load_or_train_classifier(manifest, config.evaluate.classifier_epochs, config.evaluate.seed)
    setup = TrialSetup(config.model_dump(mode="json"), manifest.uri, tracking_uri, run_id,
                       settings.cpus_per_trial, settings.gpus_per_trial > 0)
    results = _tuner(config, setup, workflow_id).fit()
    errors = [result for result in results if result.error]
    finished = [result for result in results if not result.error and result.checkpoint]
    if not finished:
        raise RuntimeError(f"tune: no trial finished; first error: {errors[0].error if errors else 'none'}")
    best = results.get_best_result(settings.metric, settings.mode, scope="last", filter_nan_and_inf=True)
    summary = _record_trials(results, best, config, tracking_uri, run_id)
    checkpoint_uri = storage_uri(config.storage, best.checkpoint.path)
    return {"checkpoint_uri": checkpoint_uri, "model_uri": join(checkpoint_uri, MODEL_DIR),
            "metrics": {k: v for k, v in best.metrics.items() if k.startswith(("eval/", "train/"))}, **summary}


def _record_trials(results, best, config: PipelineConfig, tracking_uri: str, run_id: str) -> dict[str, Any]:
    """Close each trial's child run (ASHA-stopped ones never reach their own end), and put the
    best trial, its params and the trials table on the parent run."""
    settings = config.tune
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
    tracking.set_tags(tracking_uri, run_id, {
        "genpipe.tune.best_trial": best_id, "genpipe.tune.best_run_id": children[best_id].info.run_id
        if best_id in children else "", "genpipe.family": family})
    tracking.log_metrics(tracking_uri, run_id, {
        f"best/{settings.metric}": best.metrics[settings.metric], "tune/trials": ran,
        "tune/stopped_early": stopped_early, "tune/trial_epochs": sum(
            int(r.metrics.get("training_iteration", 0)) for r in results if r.metrics)})
    with tempfile.TemporaryDirectory() as folder:
        table = results.get_dataframe()
        table.to_csv(f"{folder}/trials.csv", index=False)
        tracking.log_artifact(tracking_uri, run_id, f"{folder}/trials.csv", "tune")
    return {"best_trial": best_id, "best_params": best_params, "family": family, "trials": ran,
            "stopped_early": stopped_early}
