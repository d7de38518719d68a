"""The workflow's steps: `step(config, inputs, context) -> result` (small, JSON-serialisable).

Heavy artefacts (shards, checkpoints, weights) stay in storage; results only point at them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import models
from data_prep.manifest import load_verified
from pipelines import tracking
from pipelines.config import PipelineConfig

STEP_ORDER = ("prepare", "train", "tune", "evaluate", "register")
RUN_STEPS = ("prepare", "train", "evaluate", "register")    # genpipe run
SWEEP_STEPS = ("prepare", "tune", "evaluate", "register")   # genpipe tune: the best trial goes on


@dataclass(frozen=True)
class StepContext:
    workflow_id: str
    workflow_uri: str
    tracking_uri: str
    run_id: str


Inputs = dict[str, dict[str, Any]]


def prepare_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> dict[str, Any]:
    from data_prep.manifest import MANIFEST
    from data_prep.prepare import describe_result, prepare
    from pipelines.storage import join

    manifest, cache_hit = prepare(config.data, config.storage)
    tracking.log_dataset(context.tracking_uri, context.run_id, join(manifest.uri, MANIFEST), manifest.fingerprint)
    return describe_result(manifest, cache_hit)


def train_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> dict[str, Any]:
    from pipelines.training import run_training

    manifest = load_verified(inputs["prepare"]["dataset_uri"])
    from_data = data_shape(manifest)
    model_config = models.resolve_config(config.model.family, config.model.preset, config.model.params,
                                         from_data).model_dump(mode="json")
    pretrained = _attach_autoencoder(config, model_config, context) if "autoencoder" in model_config else {}
    warm_start = _warm_start_uri(config, model_config, context) if config.train.warm_start else None
    result = run_training(config, manifest, model_config, context.workflow_id, context.tracking_uri,
                          context.run_id, warm_start, pretrained)
    return {**result, "warm_start": warm_start}


def data_shape(manifest) -> dict[str, Any]:
    """What a model takes from its data: the vocabulary, or the image shape and the classes."""
    if manifest.text:
        return {"vocab_size": manifest.text.vocab_size}
    return {"image_shape": manifest.image_shape, "num_classes": manifest.num_classes,
            "class_names": manifest.class_names}


def _attach_autoencoder(config: PipelineConfig, model_config: dict[str, Any], context: StepContext) -> dict[str, str]:
    """A latent diffusion model's VAE: its family and config go into the model's config (so the
    model can be built anywhere), its weights are loaded by the training workers. Returns
    {submodule: version URI}, pinned to the version the alias names now."""
    from pipelines.registry import read_model_spec, resolve_version

    uri = model_config["autoencoder"]
    try:
        version = resolve_version(uri, context.tracking_uri)
    except Exception as exc:
        raise ValueError(f"model.params.autoencoder: cannot find {uri} in the registry at "
                         f"{context.tracking_uri}: {str(exc).splitlines()[0]}") from None
    pinned = f"models:/{version.name}/{version.version}"
    model_config["autoencoder_spec"] = read_model_spec(pinned, context.tracking_uri)
    models.build_model(config.model.family, model_config)  # the VAE fits the data, or a clear error
    tracking.client(context.tracking_uri).set_tag(context.run_id, "genpipe.autoencoder", pinned)
    return {"vae": pinned}


def _warm_start_uri(config: PipelineConfig, model_config: dict[str, Any], context: StepContext) -> str | None:
    """The champion to start from, after checking it has this very architecture."""
    from pipelines.registry import aliased_version, read_model_spec

    champion = aliased_version(context.tracking_uri, config.register.model_name, config.register.alias)
    if champion is None:
        return None  # nothing to start from yet: the first model trains from scratch
    uri = f"models:/{champion.name}/{champion.version}"
    spec = read_model_spec(uri, context.tracking_uri)
    differing = sorted(k for k in {*spec["config"], *model_config} if spec["config"].get(k) != model_config.get(k))
    if spec["family"] != config.model.family or differing:
        raise ValueError(f"train.warm_start: {uri} is a different model ({', '.join(differing) or 'family'} "
                         "differ); train from scratch or match its model.params")
    tracking.client(context.tracking_uri).set_tag(context.run_id, "genpipe.warm_start", uri)
    return uri


def tune_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> dict[str, Any]:
    from pipelines.sweep import run_sweep

    manifest = load_verified(inputs["prepare"]["dataset_uri"])
    return run_sweep(config, manifest, context.workflow_id, context.tracking_uri, context.run_id)


def fitted(inputs: Inputs) -> dict[str, Any]:
    """The result of whichever step produced the model: train, or the sweep's best trial."""
    return inputs["tune"] if "tune" in inputs else inputs["train"]


def evaluate_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> dict[str, Any]:
    from pipelines.evaluation import evaluate

    manifest = load_verified(inputs["prepare"]["dataset_uri"])
    return evaluate(config, manifest, fitted(inputs)["model_uri"], context.workflow_uri,
                    context.tracking_uri, context.run_id)


def register_step(config: PipelineConfig, inputs: Inputs, context: StepContext) -> dict[str, Any]:
    from pipelines.registry import register

    model = fitted(inputs)
    tags = {"genpipe.workflow_id": context.workflow_id,
            "genpipe.dataset.fingerprint": inputs["prepare"]["fingerprint"],
            "genpipe.family": model.get("family", config.model.family), "genpipe.preset": config.model.preset}
    if "best_trial" in model:
        tags["genpipe.tune.best_trial"] = model["best_trial"]
    return register(model["model_uri"], config.register, context.tracking_uri, context.run_id,
                    inputs["evaluate"], tags)


StepFunction = Callable[[PipelineConfig, Inputs, StepContext], dict[str, Any]]
STEPS: dict[str, StepFunction] = {"prepare": prepare_step, "train": train_step, "tune": tune_step,
                                  "evaluate": evaluate_step, "register": register_step}


def step_resources(step: str, config: PipelineConfig) -> dict[str, float]:
    """What the step's own Ray task holds. prepare and train hold nothing: Ray Data's tasks and Ray
    Train's workers ask for their own, and holding a CPU here would starve them on a small node."""
    if step == "evaluate":
        return {"num_cpus": config.evaluate.num_cpus, "num_gpus": config.evaluate.num_gpus}
    return {"num_cpus": 0}


def run_step(step: str, config_json: dict[str, Any], inputs: Inputs, context: StepContext) -> dict[str, Any]:
    """The body of a step's Ray task."""
    import ray.data

    ray.data.DataContext.get_current().enable_progress_bars = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return STEPS[step](PipelineConfig.model_validate(config_json), inputs, context)
