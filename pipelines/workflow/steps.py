"""The workflow's steps: `step(config, inputs, context) -> result`, each a typed `StepResult`.

Each step is a thin adapter: it reads its inputs' results, calls the library that does the work
(data_prep, pipelines.train, .tune, .evaluate, .registry) and types what comes back.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from data_prep.manifest import load_verified
from models import family_class
from pipelines.config import PipelineConfig
from pipelines.registry import lineage
from pipelines.registry.environment import apply_mlflow_defaults
from pipelines.workflow.progress import Report, flush
from pipelines.workflow.results import (
    ChosenResult,
    CompareResult,
    EvaluateResult,
    FitResult,
    PrepareResult,
    RegisterResult,
    StepResult,
    TrainResult,
    TuneResult,
)
from typed_errors import first_line

# The config sections each step reads: `genpipe resume ID --set` may change a section only while
# every step reading it is still to run.
STEP_SECTIONS: dict[str, tuple[str, ...]] = {
    "prepare": ("data",),
    "train": ("model", "train"),
    "tune": ("model", "train", "tune"),
    "compare": ("train", "compare"),
    "evaluate": ("evaluate",),
    "register": ("register",),
}


def _silent(stage: str, **event: Any) -> None:
    """The `report` of a step run without a console (a test calling a step directly)."""


@dataclass(frozen=True)
class StepContext:
    workflow_id: str
    workflow_uri: str
    tracking_uri: str
    run_id: str
    report: Report = _silent  # progress for the console (pipelines/workflow/progress.py)


Inputs = dict[str, StepResult]


def _prepared(inputs: Inputs) -> PrepareResult:
    result = inputs["prepare"]
    assert isinstance(result, PrepareResult)  # the runner types each record by its step
    return result


def prepare_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> PrepareResult:
    from data_prep.prepare import describe_result, prepare

    manifest, cache_hit = prepare(config.data, config.storage, context.report)
    lineage.log_dataset(context.tracking_uri, context.run_id, manifest, "train", "training")
    return PrepareResult(**describe_result(manifest, cache_hit))


def train_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> TrainResult:
    from pipelines.train.driver import run_training
    from pipelines.train.model_setup import model_config as resolved_model_config

    manifest = load_verified(_prepared(inputs).dataset_uri)
    model_config = resolved_model_config(config, manifest).model_dump(mode="json")
    pretrained = _attach_registered_parts(config, model_config, context)
    warm_start = _warm_start_uri(config, model_config, context) if config.train.warm_start else None
    result = run_training(
        config,
        manifest,
        model_config,
        context.workflow_id,
        context.tracking_uri,
        context.run_id,
        warm_start,
        pretrained,
        context.report,
    )
    return TrainResult(**result, warm_start=warm_start)


def _attach_registered_parts(
    config: PipelineConfig, model_config: dict[str, Any], context: StepContext
) -> dict[str, str]:
    """Parts of the model that come from the registry (`registered_parts`, e.g. a latent
    diffusion model's VAE): each part's family and config go into the model's config (so the model
    can be built anywhere), its weights are loaded by the training workers. Returns {submodule:
    version URI}, pinned to the version each alias names now."""
    from pipelines.registry.versions import read_model_spec, resolve_version
    from pipelines.train.model_setup import built_model

    parts = {}
    for part, field in family_class(config.model.family).registered_parts.items():
        uri = model_config[field]
        try:
            version = resolve_version(uri, context.tracking_uri)
        except Exception as exc:
            raise ValueError(
                f"model.params.{field}: cannot find {uri} in the registry at {context.tracking_uri}: {first_line(exc)}"
            ) from None
        pinned = f"models:/{version.name}/{version.version}"
        model_config[f"{field}_spec"] = read_model_spec(pinned, context.tracking_uri)
        lineage.log_parent_model(context.tracking_uri, context.run_id, pinned, field)
        parts[part] = pinned
    if parts:
        built_model(config.model.family, model_config)  # the parts fit the data, or a clear error
    return parts


def _warm_start_uri(config: PipelineConfig, model_config: dict[str, Any], context: StepContext) -> str | None:
    """The champion to start from, after checking it has this very architecture."""
    from pipelines.registry.versions import aliased_version, read_model_spec

    champion = aliased_version(context.tracking_uri, config.register.model_name, config.register.alias)
    if champion is None:
        return None  # nothing to start from yet: the first model trains from scratch
    uri = f"models:/{champion.name}/{champion.version}"
    spec = read_model_spec(uri, context.tracking_uri)
    differing = sorted(k for k in {*spec["config"], *model_config} if spec["config"].get(k) != model_config.get(k))
    if spec["family"] != config.model.family or differing:
        raise ValueError(
            f"train.warm_start: {uri} is a different model ({', '.join(differing) or 'family'} "
            "differ); train from scratch or match its model.params"
        )
    lineage.log_parent_model(context.tracking_uri, context.run_id, uri, "warm_start")
    return uri


def tune_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> TuneResult:
    from pipelines.tune.sweep import run_sweep

    manifest = load_verified(_prepared(inputs).dataset_uri)
    return TuneResult(
        **run_sweep(config, manifest, context.workflow_id, context.tracking_uri, context.run_id, context.report)
    )


def compare_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> CompareResult:
    from pipelines.tune.compare import run_comparison

    manifest = load_verified(_prepared(inputs).dataset_uri)
    return CompareResult(
        **run_comparison(config, manifest, context.workflow_id, context.tracking_uri, context.run_id, context.report)
    )


def fitted(inputs: Inputs) -> FitResult:
    """The result of whichever step produced the model: train, the sweep's best trial or the
    comparison's winner."""
    result = next(inputs[step] for step in ("tune", "compare", "train") if step in inputs)
    assert isinstance(result, FitResult)
    return result


def evaluate_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> EvaluateResult:
    from pipelines.evaluate.evaluator import evaluate

    manifest = load_verified(_prepared(inputs).dataset_uri)
    model_uri, tags = fitted(inputs).model_uri, _model_tags(config, inputs, context)
    where = (context.workflow_uri, context.tracking_uri, context.run_id)
    return EvaluateResult(**evaluate(config, manifest, model_uri, *where, tags, context.report))


def _model_tags(config: PipelineConfig, inputs: Inputs, context: StepContext) -> dict[str, str]:
    """What the logged model and its registered version say about where they come from."""
    model = fitted(inputs)
    family = model.family if isinstance(model, ChosenResult) else config.model.family
    compared = isinstance(model, CompareResult) and config.compare is not None
    tags = {
        "genpipe.workflow_id": context.workflow_id,
        "genpipe.dataset.fingerprint": _prepared(inputs).fingerprint,
        "genpipe.family": family,
        "genpipe.preset": config.compare.preset if compared else config.model.preset,  # type: ignore[union-attr]
    }
    if isinstance(model, TuneResult):
        tags["genpipe.tune.best_trial"] = model.best_trial
    if isinstance(model, CompareResult):
        tags["genpipe.compare.best_trial"] = model.best_trial
    return tags


def register_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> RegisterResult:
    from pipelines.registry.registration import register

    evaluation = inputs["evaluate"].record()
    tags = _model_tags(config, inputs, context)
    return RegisterResult(**register(config.register, context.tracking_uri, context.run_id, evaluation, tags))


StepFunction = Callable[[PipelineConfig, Inputs, StepContext], StepResult]
STEPS: dict[str, StepFunction] = {
    "prepare": prepare_step,
    "train": train_step,
    "tune": tune_step,
    "compare": compare_step,
    "evaluate": evaluate_step,
    "register": register_step,
}


def step_resources(step: str, config: PipelineConfig) -> dict[str, float]:
    """What the step's own Ray task holds. prepare and train hold nothing: Ray Data's tasks and Ray
    Train's workers ask for their own, and holding a CPU here would starve them on a small node."""
    if step == "evaluate":
        return {"num_cpus": config.evaluate.num_cpus, "num_gpus": config.evaluate.num_gpus}
    return {"num_cpus": 0}


def run_step(step: str, config_json: dict[str, Any], inputs: Inputs, context: StepContext) -> StepResult:
    """The body of a step's Ray task."""
    import ray.data

    apply_mlflow_defaults()
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    # Bars off (the runner prints each step); Ray Data then warns that they are off, once per process.
    logging.getLogger("ray.data._internal.progress").setLevel(logging.ERROR)
    ray.data.DataContext.get_current().enable_progress_bars = False
    result = STEPS[step](PipelineConfig.model_validate(config_json), inputs, context)
    flush(context.report)  # the step's last progress lines are on the console before its result
    return result
