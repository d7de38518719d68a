"""The evaluated model as an MLflow 3 LoggedModel: an MLflow Model logged from the trained weights
(pipelines/registry/served_model.py), an output of the workflow's run, with the evaluation's scores
as its metrics on the evaluation dataset, so the server can rank models by them."""

from __future__ import annotations

import shutil
import tempfile
import time

from mlflow import MlflowClient
from mlflow.entities import Dataset, LoggedModelStatus, Metric

from pipelines.registry import tracking
from pipelines.registry.served_model import log_served_model
from pipelines.registry.versions import WEIGHTS_ARTIFACT
from storage import local_copy

REGISTERED_FOR_TAG = "genpipe.registered_model"  # on the logged model: the name it is registered under


def log_evaluated_model(
    model_uri: str,
    tracking_uri: str,
    run_id: str,
    name: str,
    tags: dict[str, str],
    metrics: dict[str, float],
    evaluation_data: Dataset,
) -> str:
    """The run's logged model (logged once: a re-run finds it) with `metrics` on it; its id."""
    mlflow_client = tracking.client(tracking_uri)
    model_id = _logged_model(model_uri, mlflow_client, tracking_uri, run_id, name, tags)
    _log_scores(mlflow_client, run_id, model_id, metrics, evaluation_data)
    return model_id


def _logged_model(
    model_uri: str, mlflow_client: MlflowClient, tracking_uri: str, run_id: str, name: str, tags: dict[str, str]
) -> str:
    """The run's logged model for `name`: one a failed attempt already logged whole (READY), else
    a new one from the weights at `model_uri`."""
    experiment_id = mlflow_client.get_run(run_id).info.experiment_id
    found = mlflow_client.search_logged_models(
        [experiment_id],
        filter_string=f"source_run_id = '{run_id}' and tags.`{REGISTERED_FOR_TAG}` = '{name}'",
    )
    ready = [model for model in found if model.status == LoggedModelStatus.READY]
    if ready:
        return ready[0].model_id
    with tempfile.TemporaryDirectory() as folder, tracking.pointed_at(tracking_uri):
        # MLflow files an artifact folder under its own name: the weights go in as `weights/`.
        weights = f"{folder}/{WEIGHTS_ARTIFACT}"
        fetched = local_copy(model_uri, weights)
        if fetched != weights:
            shutil.copytree(fetched, weights)
        return log_served_model(weights, mlflow_client, experiment_id, run_id, name, {**tags, REGISTERED_FOR_TAG: name})


def _log_scores(
    mlflow_client: MlflowClient, run_id: str, model_id: str, metrics: dict[str, float], evaluation_data: Dataset
) -> None:
    """The evaluation's scores as numbers of the logged model, measured on the evaluation dataset:
    `mlflow.search_logged_models(order_by=...)` ranks models by them."""
    stamp = int(time.time() * 1000)
    entries = [
        Metric(
            key,
            float(value),
            stamp,
            0,
            model_id=model_id,
            dataset_name=evaluation_data.name,
            dataset_digest=evaluation_data.digest,
            run_id=run_id,
        )
        for key, value in metrics.items()
    ]
    mlflow_client.log_batch(run_id, metrics=entries)
