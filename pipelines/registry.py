"""register: the trained weights become an MLflow model version (safetensors + config.json, no
pickle), idempotently per workflow run; the alias goes to it when the model has none yet."""

from __future__ import annotations

import tempfile
from typing import Any

from mlflow.exceptions import MlflowException

from pipelines import tracking
from pipelines.storage import local_copy

ARTIFACT_PATH = "model"


def register(model_uri: str, model_name: str, alias: str, tracking_uri: str, run_id: str,
             tags: dict[str, str]) -> dict[str, Any]:
    mlflow_client = tracking.client(tracking_uri)
    try:
        mlflow_client.get_registered_model(model_name)
    except MlflowException:
        mlflow_client.create_registered_model(model_name, description="Registered by genpipe.")

    # One workflow = one MLflow run = at most one version: a re-run finds its own version.
    existing = mlflow_client.search_model_versions(f"name = '{model_name}' and run_id = '{run_id}'")
    if existing:
        version = existing[0]
    else:
        with tempfile.TemporaryDirectory() as folder:
            mlflow_client.log_artifacts(run_id, local_copy(model_uri, f"{folder}/model"), ARTIFACT_PATH)
        source = f"{mlflow_client.get_run(run_id).info.artifact_uri}/{ARTIFACT_PATH}"
        version = mlflow_client.create_model_version(model_name, source, run_id=run_id,
                                                     tags={k: str(v) for k, v in tags.items()})

    aliases = mlflow_client.get_registered_model(model_name).aliases
    promoted = alias not in aliases
    if promoted:
        mlflow_client.set_registered_model_alias(model_name, alias, version.version)
    champion = str(version.version) if promoted else str(aliases[alias])
    return {"model_name": model_name, "version": int(version.version), "alias": alias,
            "alias_version": int(champion), "created": not existing,
            "model_uri": f"models:/{model_name}/{version.version}"}


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
    """A registered model's files (safetensors weights + config.json) in a local folder."""
    import mlflow.artifacts

    version = resolve_version(model_uri, tracking_uri)
    source = tracking.client(tracking_uri).get_model_version_download_uri(version.name, version.version)
    return mlflow.artifacts.download_artifacts(artifact_uri=source, dst_path=destination,
                                               tracking_uri=tracking_uri)
