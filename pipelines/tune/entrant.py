"""One entrant of `genpipe compare`: a family trained on the data for the comparison's budget,
scored by the modality's evaluation and timed at sampling, in one Ray Tune trial.

Equal compute: under a wall-clock budget the trial first times a few steps on a throwaway copy of
the model (the probe; its first steps pay one-off costs, so they are not counted) and then trains
a fresh model for as many steps as fit the budget at that rate, so the learning-rate schedule
runs its whole course. The probe's rate is a guess (trials sharing a node slow each other, most
while they start): RECHECKS times in the run the length is set again from the run's own rate,
and the schedule stretched or shortened to it (measured: without this, AR trained 82 s of a
120 s budget beside an LSTM's start). Under a FLOPs budget the steps follow from the family's
FLOPs per token.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from data_prep.manifest import Manifest, load_verified
from data_prep.modalities.registry import modality_of
from models.base import GenerativeModel, parameter_count
from models.capabilities import language_model
from pipelines.config import PipelineConfig
from pipelines.config.compare import CompareSection
from pipelines.evaluate.scorers import scorer_for
from pipelines.registry import tracking
from pipelines.registry.environment import apply_mlflow_defaults
from pipelines.train.checkpoints import write_checkpoint
from pipelines.train.engines import build_engines, stretch_schedules
from pipelines.train.feed import Feed, open_feed
from pipelines.train.loop import Fit, LossWindow
from pipelines.train.model_setup import built_model, model_config
from pipelines.train.settings import data_lanes, lasting_process_group, loop_settings, set_up_process
from pipelines.train.strategy import strategy_for, worker_memory
from pipelines.train.worker import quiet_worker_logs
from pipelines.tune.trial import TrialSetup

PROBE_WARM_STEPS = 3  # not timed: the first steps import torch's compiler, allocate, fill caches
PROBE_SHARE, PROBE_MAX_S, PROBE_MAX_STEPS = 0.1, 15.0, 200  # of the budget, at most, in steps
SAMPLES_TIMED = 100  # the cost of sampling: the time to draw this many
PROGRESS_EVERY_S = 5.0
RECHECKS = 20  # times the run's length is set again from its own rate (trials sharing a node slow each other)
REPORT_FILE = "entrant.json"  # the trial's report, kept in its checkpoint for a restored trial to repeat


def entrant_config(base_config: dict[str, Any], family: str, preset: str, seed: int) -> PipelineConfig:
    """The config a family trains with in the comparison: the compared preset without params
    (they belong to the config's own family), the config's train section with this seed."""
    raw = {**base_config, "tune": None, "compare": None}
    raw["model"] = {"family": family, "preset": preset, "params": {}}
    raw["train"] = {**raw["train"], "seed": seed, "max_steps": None}
    raw["register"] = {**raw["register"], "gate": {}}
    return PipelineConfig.model_validate(raw)


def run_entrant(params: dict[str, Any], setup: TrialSetup) -> None:
    """Train `params["family"]` with `params["seed"]` for the budget, score it, report once."""
    from ray import tune

    apply_mlflow_defaults()
    quiet_worker_logs()
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:  # restored after its report (the driver died before Tune saw the end)
        with checkpoint.as_directory() as folder:
            reported = json.loads((Path(folder) / REPORT_FILE).read_text())
        tune.report(reported, checkpoint=checkpoint)
        return
    compare = CompareSection.model_validate(setup.base_config["compare"])
    family, seed = params["family"], params["seed"]
    config = entrant_config(setup.base_config, family, compare.preset, seed)
    device = torch.device("cuda" if setup.use_gpu and torch.cuda.is_available() else "cpu")
    set_up_process(config.train, 0, setup.cpus, device)
    manifest = load_verified(setup.manifest_uri)
    feed = open_feed(manifest, "train", config.train, device, data_lanes(config.train, 1, None))
    score, _ = scorer_for(manifest, config.evaluate)
    trial_id = tune.get_context().get_trial_id()
    run_id = tracking.child_run(
        setup.tracking_uri, setup.parent_run_id, trial_id, {"family": family, "preset": compare.preset, "seed": seed}
    )
    tracking.set_tags(setup.tracking_uri, run_id, {"genpipe.family": family, "genpipe.compare.seed": str(seed)})
    fit, metrics = _train_for_budget(compare, config, manifest, feed, device, setup.report)
    fit.model.eval()
    scored_at = time.perf_counter()
    metrics.update(score(fit.model, None))
    metrics["cost/score_seconds"] = time.perf_counter() - scored_at
    metrics.update(_sampling_cost(fit.model, config.evaluate.seed))
    tracking.log_metrics(setup.tracking_uri, run_id, metrics)
    tracking.client(setup.tracking_uri).set_terminated(run_id, "FINISHED")
    reported = {**metrics, "run_id": run_id}
    with tempfile.TemporaryDirectory() as folder:
        write_checkpoint(folder, fit, int(metrics["cost/train_steps"]), with_model=True)
        (Path(folder) / REPORT_FILE).write_text(json.dumps(reported))
        tune.report(reported, checkpoint=tune.Checkpoint.from_directory(folder))


def _train_for_budget(
    compare: CompareSection, config: PipelineConfig, manifest: Manifest, feed: Feed, device: torch.device, report
) -> tuple[Fit, dict[str, float]]:
    """The family trained for its budget; its mean losses and what the training cost."""
    lasting_process_group(device.type == "cuda")  # kept for the next trial of this actor
    probe_started = time.perf_counter()
    steps = _budget_steps(compare, config, manifest, feed, device)
    probe_seconds = time.perf_counter() - probe_started
    fit = _fit(config, manifest, feed, device, steps)
    window = LossWindow(list(fit.engines))
    started = last_shown = time.perf_counter()
    done, chunk = 0, max(1, steps // RECHECKS)
    while done < steps:
        start, stop = done, min(steps, done + chunk)
        for done in fit.steps(start, stop, window):
            if report is not None and time.perf_counter() - last_shown >= PROGRESS_EVERY_S:
                last_shown = time.perf_counter()
                report("compare", text=f"{config.model.family} seed {config.train.seed}: step {done}/{steps}")
        if compare.budget_flops is None:  # the probe's rate was a guess: the budget is seconds
            elapsed = time.perf_counter() - started
            remaining = max(0.0, compare.budget_s - elapsed)
            steps = done + int(done / max(elapsed, 1e-9) * remaining)
            stretch_schedules(fit.model, fit.engines, config.train, steps)
    metrics = {f"train/{n}_loss": t / window.steps for n, t in zip(window.names, window.totals(), strict=True)}
    metrics.update(
        {
            "cost/parameters": float(parameter_count(fit.model.parameters())),
            "cost/train_steps": float(done),
            "cost/train_seconds": time.perf_counter() - started,
            "cost/probe_seconds": probe_seconds,
        }
    )
    return fit, metrics


def _fit(config: PipelineConfig, manifest: Manifest, feed: Feed, device: torch.device, steps: int) -> Fit:
    """A fresh model (seeded), its engines and the loop for `steps` optimizer steps."""
    torch.manual_seed(config.train.seed * 1000)
    model = built_model(config.model.family, model_config(config, manifest)).to(device)
    train = config.train.model_copy(update={"max_steps": steps})
    strategy = strategy_for(train, model, 1, worker_memory(device, 1), device.type == "cuda")
    settings = loop_settings(train, strategy, 0, 1, device, manifest.splits["train"].rows)
    return Fit(model, build_engines(model, train, strategy.zero_stage, steps, settings.on_gpu), feed, settings)


def _budget_steps(compare: CompareSection, config: PipelineConfig, manifest: Manifest, feed: Feed, device) -> int:
    """The optimizer steps this family gets: the FLOPs budget over its FLOPs a step, or the
    seconds budget times the rate the probe measured."""
    if compare.budget_flops is not None:
        model = built_model(config.model.family, model_config(config, manifest))
        train = config.train
        tokens = modality_of(manifest).tokens_per_row(manifest) or 1
        per_step = language_model(model).flops_per_token(tokens) * tokens * train.batch_size * train.grad_accum_steps
        return max(1, int(compare.budget_flops // per_step))
    probe = _fit(config, manifest, feed, device, PROBE_MAX_STEPS)
    window = LossWindow(list(probe.engines))
    limit = min(PROBE_SHARE * compare.budget_s, PROBE_MAX_S)
    timed, since = 0, time.perf_counter()
    for step in probe.steps(0, PROBE_MAX_STEPS, window):
        if step == PROBE_WARM_STEPS:
            since = time.perf_counter()
        elif step > PROBE_WARM_STEPS:
            timed += 1
            if time.perf_counter() - since >= limit:
                break
    rate = timed / max(time.perf_counter() - since, 1e-9)
    return max(1, int(rate * compare.budget_s))


@torch.no_grad()
def _sampling_cost(model: GenerativeModel, seed: int) -> dict[str, float]:
    """Seconds to draw SAMPLES_TIMED samples as a served model would (the options a request
    cannot do without, made up: a translator's inputs, a video model's context), and its rate."""
    generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
    options = model.sample_options(SAMPLES_TIMED, **model.example_options(SAMPLES_TIMED))
    started = time.perf_counter()
    model.sample(SAMPLES_TIMED, generator=generator, **options)
    seconds = time.perf_counter() - started
    return {"cost/sample_100_seconds": seconds, "cost/samples_per_second": SAMPLES_TIMED / max(seconds, 1e-9)}
