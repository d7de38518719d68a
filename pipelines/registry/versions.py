"""Looking up registered versions: by alias or number, their spec and their files."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from pipelines.registry import tracking
from serving.pyfunc import WEIGHTS_ARTIFACT

NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")  # no such model, or no such alias
# Where the weights folder sits inside a registered MLflow Model (pipelines/registry/served_model.py).
WEIGHTS_PATH = f"artifacts/{WEIGHTS_ARTIFACT}"


def aliased_version(tracking_uri: str, model_name: str, alias: str) -> ModelVersion | None:
    """The version holding `alias`, or None when the model or the alias does not exist yet. Any
    other failure (a server that is down) is raised: it must never read as "no champion"."""
    try:
        return tracking.client(tracking_uri).get_model_version_by_alias(model_name, alias)
    except MlflowException as exc:
        if exc.error_code in NOT_FOUND:
            return None
        raise


def logged_model_id(version: ModelVersion) -> str | None:
    """The id of the logged model a version was registered from (MLflow's SQL registry keeps it
    only in the version's `models:/<id>` source); None for a version of an older genpipe."""
    if version.model_id:
        return version.model_id
    source = version.source or ""
    return source.removeprefix("models:/") if source.startswith("models:/m-") else None


def version_metrics(tracking_uri: str, version: ModelVersion) -> dict[str, float]:
    """A version's evaluation scores: its logged model's metrics, or (a version an older genpipe
    registered) its `eval/` tags."""
    model_id = logged_model_id(version)
    if model_id:
        logged = tracking.client(tracking_uri).get_logged_model(model_id)
        return {metric.key: metric.value for metric in logged.metrics or [] if metric.key.startswith("eval/")}
    return {k: float(v) for k, v in version.tags.items() if k.startswith("eval/")}


def read_model_spec(model_uri: str, tracking_uri: str) -> dict[str, Any]:
    """A registered model's config.json (family + model config), without its weights."""
    import mlflow.artifacts

    from models.weights import CONFIG_FILE

    version = resolve_version(model_uri, tracking_uri)
    source = tracking.client(tracking_uri).get_model_version_download_uri(version.name, version.version)
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{source}/{WEIGHTS_PATH}/{CONFIG_FILE}", dst_path=folder, tracking_uri=tracking_uri
            )
        except MlflowException:  # a version registered before genpipe logged MLflow Models
            path = mlflow.artifacts.download_artifacts(
                artifact_uri=f"{source}/{CONFIG_FILE}", dst_path=folder, tracking_uri=tracking_uri
            )
        with open(path) as handle:
            return json.load(handle)


def resolve_version(model_uri: str, tracking_uri: str):
    """`models:/NAME@ALIAS` or `models:/NAME/VERSION` -> the ModelVersion, looked up in the registry
    at `tracking_uri` (never in a process-global default)."""
    reference = model_uri.removeprefix("models:/")
    if reference == model_uri:
        raise ValueError(f"MODEL_URI: expected models:/NAME@ALIAS or models:/NAME/VERSION, got {model_uri!r}")
    mlflow_client = tracking.client(tracking_uri)
    if "@" in reference:
        name, alias = reference.split("@", 1)
        return mlflow_client.get_model_version_by_alias(name, alias)
    name, _, version = reference.rpartition("/")
    return mlflow_client.get_model_version(name, version)


def download(model_uri: str, tracking_uri: str, destination: str) -> str:
    """A registered model's weights folder (safetensors weights + config.json, a tokenizer) on the
    local disk: inside the MLflow Model, or the whole version of an older genpipe."""
    import mlflow.artifacts

    version = resolve_version(model_uri, tracking_uri)
    source = tracking.client(tracking_uri).get_model_version_download_uri(version.name, version.version)
    local = mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=destination, tracking_uri=tracking_uri)
    inside = os.path.join(local, WEIGHTS_PATH)
    return inside if os.path.isdir(inside) else local
