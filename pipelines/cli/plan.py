"""`genpipe run|prepare|train|evaluate|tune CONFIG --dry-run`: the config validated as a run would
validate it, and what the run would do, step by step, without starting Ray or MLflow: whether the
dataset is in storage already (its fingerprint is known before anything runs), the model's size,
the strategy and resources of training, what the gate compares. Exit 0, or 2 for a bad config,
as the run itself would."""

from __future__ import annotations

import argparse
from typing import Any

import psutil
import torch

from data_prep.manifest import Manifest, find_manifest
from data_prep.prepare import fingerprint
from models.base import parameter_count
from pipelines.cli.output import EXIT_OK, say
from pipelines.config import PipelineConfig, load_config
from pipelines.evaluate.scorers import EVALUATIONS
from pipelines.train.engines import precision_mode
from pipelines.train.model_setup import built_model
from pipelines.train.strategy import strategy_for
from pipelines.workflow import preflight
from pipelines.workflow.runner import Workflow
from storage import normalize


def print_plan(args: argparse.Namespace, steps: tuple[str, ...]) -> int:
    sections = ("compare",) if "compare" in steps else ()
    config = load_config(args.config, args.set, sections, storage=args.storage, tracking_uri=args.tracking_uri)
    storage = normalize(config.storage)
    preflight.check_storage(storage, write=False)  # as a run checks it first, without the probe it writes
    preflight.check_source(config.data)
    done = _done_steps(storage, args.workflow_id)
    key = fingerprint(config.data)
    manifest = find_manifest(storage, key)
    workflow = f"workflow {args.workflow_id}" if args.workflow_id else "a new workflow"
    say(f"plan of {args.config} ({config.model.family}/{config.model.preset}): {workflow} in {storage}")
    lines = {
        "prepare": lambda: _prepare_line(config, key, manifest),
        "train": lambda: _train_line(config, manifest),
        "tune": lambda: _tune_line(config),
        "compare": lambda: _compare_line(config),
        "evaluate": lambda: _evaluate_line(config),
        "register": lambda: _register_line(config),
    }
    for number, step in enumerate(steps, start=1):
        line = "done earlier, skipped" if step in done else lines[step]()
        say(f"  {number}. {step:<9} {line}")
    say(f"tracking: {config.tracking_uri or 'MLFLOW_TRACKING_URI, else sqlite in the storage'}")
    say("nothing ran (--dry-run); without it the same command runs this plan")
    return EXIT_OK


def _done_steps(storage: str, workflow_id: str | None) -> set[str]:
    if not workflow_id:
        return set()
    workflow = Workflow(storage, workflow_id)
    if not workflow.exists():
        return set()
    return {step for step, state in workflow.step_states().items() if state == "succeeded"}


def _prepare_line(config: PipelineConfig, key: str, manifest: Manifest | None) -> str:
    source = f"{config.data.source.kind} ({config.data.modality})"
    if manifest is not None:
        rows = ", ".join(f"{split} {info.rows:,}" for split, info in manifest.splits.items())
        return f"cached: dataset {key} from {source} is in storage ({rows} rows); prepare reads nothing"
    return f"to prepare: {source} into dataset {key}"


def _train_line(config: PipelineConfig, manifest: Manifest | None) -> str:
    train = config.train
    workers = train.num_workers
    world = workers if isinstance(workers, int) else workers[1]
    on_gpu = train.use_gpu is True or (train.use_gpu == "auto" and torch.cuda.is_available())
    device = "GPU" if on_gpu else f"{train.cpus_per_worker:g} CPU"
    shown_workers = f"{workers[0]}-{workers[1]} (elastic)" if isinstance(workers, tuple) else str(workers)
    length = f"{train.max_steps} steps" if train.max_steps else f"{train.epochs} epochs"
    resources = f"{shown_workers} Ray Train workers x {device}, batch {train.batch_size} each, {length}"
    size, strategy = _size_and_strategy(config, manifest, world, on_gpu)
    return f"{resources}; {size}; {strategy}"


def _size_and_strategy(config: PipelineConfig, manifest: Manifest | None, world: int, on_gpu: bool) -> tuple[str, str]:
    """The model's parameters (built on the meta device: no memory, no arithmetic) where the data's
    shape is known before prepare, and the strategy `auto` would pick on this machine."""
    inputs = _model_inputs(config, manifest)
    if inputs is None:
        return "parameters known after prepare (they depend on the data)", f"strategy {config.train.strategy}"
    import models

    resolved = models.resolve_config(config.model.family, config.model.preset, config.model.params, inputs)
    with torch.device("meta"):
        model = built_model(config.model.family, resolved)
    parameters = parameter_count(p for p in model.parameters() if p.requires_grad)
    memory = psutil.virtual_memory().total / world  # on a GPU cluster each worker decides on its own device
    chosen = strategy_for(config.train, model, world, memory, on_gpu)
    precision = precision_mode(config.train, on_gpu, model.gpu_precision)
    return f"{parameters / 1e6:.3g}M parameters, {precision}", f"strategy {chosen.name} ({chosen.reason})"


def _model_inputs(config: PipelineConfig, manifest: Manifest | None) -> dict[str, Any] | None:
    """The data's shape: the prepared dataset's, else what the config tells (images only)."""
    if manifest is not None:
        from pipelines.train.model_setup import data_shape

        return data_shape(manifest)
    return config.images_as_configured()


def _compare_line(config: PipelineConfig) -> str:
    compare = config.compare
    assert compare is not None  # the command gives it its defaults
    fitting, unfit = config.compare_entrants()
    budget = f"{compare.budget_flops:.3g} FLOPs" if compare.budget_flops else f"{compare.budget_s:g} s of training"
    return (
        f"{len(fitting)} families x {compare.seeds} seeds ({', '.join(fitting)}), {budget} each on "
        f"{compare.cpus_per_trial:g} CPU; ranked by {compare.mode} {compare.metric}; "
        f"{len(unfit)} do not fit: {', '.join(unfit) or 'none'}"
    )


def _tune_line(config: PipelineConfig) -> str:
    tune = config.tune
    if tune is None:
        return "no tune: section (genpipe tune needs one)"
    searched = ", ".join(tune.space)
    return (
        f"{tune.num_samples} trials ({tune.search} search, {tune.scheduler} scheduler), {tune.max_concurrent} at a "
        f"time x {tune.cpus_per_trial:g} CPU; {tune.mode} {tune.metric}; searching {searched}"
    )


def _evaluate_line(config: PipelineConfig) -> str:
    evaluation = config.evaluate
    held = f"{evaluation.num_cpus:g} CPU" + (f", {evaluation.num_gpus:g} GPU" if evaluation.num_gpus else "")
    return f"{EVALUATIONS[config.data.modality].description} ({evaluation.num_samples} samples, {held})"


def _register_line(config: PipelineConfig) -> str:
    gate = config.register.gate
    better = "lower" if gate.mode == "min" else "higher"
    by = f" by {gate.min_improvement:g} or more" if gate.min_improvement else ""
    return (
        f"as {config.register.model_name}; @{config.register.alias} moves when its {gate.metric} ({better} is "
        f"better) beats the champion's{by}"
    )
