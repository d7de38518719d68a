"""Lineage through MLflow's public API: the datasets a run read and the registered models it
builds on, as the run's inputs."""

from __future__ import annotations

import hashlib
import json

from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelInput

from data_prep.manifest import MANIFEST, Manifest
from pipelines.registry import tracking
from pipelines.registry.versions import logged_model_id, resolve_version
from storage import join


def split_dataset(manifest: Manifest, split: str) -> Dataset:
    """One split of a prepared dataset as MLflow's lineage records it: named by the dataset's
    fingerprint and the split, its digest from the split's shard hashes, the manifest as the source,
    the columns as the schema and the row count as the profile."""
    shards = manifest.splits[split].shards
    digest = hashlib.sha256("".join(shard.sha256 for shard in shards).encode()).hexdigest()[:16]
    return Dataset(
        name=f"{manifest.fingerprint}/{split}",
        digest=digest,
        source_type="genpipe-manifest",
        source=json.dumps({"uri": join(manifest.uri, MANIFEST), "split": split}),
        schema=json.dumps({"columns": manifest.schema_}),
        profile=json.dumps({"rows": manifest.splits[split].rows, "shards": len(shards)}),
    )


def log_dataset(uri: str, run_id: str, manifest: Manifest, split: str, context: str) -> Dataset:
    """A split as an input of the run, tagged with what it was used for ("training", "evaluation");
    returns it as MLflow knows it."""
    dataset = split_dataset(manifest, split)
    lineage = DatasetInput(dataset, tags=[InputTag("mlflow.data.context", context)])
    mlflow_client = tracking.client(uri)
    mlflow_client.log_inputs(run_id, datasets=[lineage])
    mlflow_client.set_tag(run_id, "genpipe.dataset.fingerprint", manifest.fingerprint)
    return dataset


def log_parent_model(uri: str, run_id: str, model_uri: str, role: str) -> None:
    """A registered model this run builds on (a warm start, a latent model's VAE) as a model input
    of the run, and as a tag naming its role. Versions registered before MLflow 3's logged models
    have no model id: the tag alone records them."""
    mlflow_client = tracking.client(uri)
    mlflow_client.set_tag(run_id, f"genpipe.{role}", model_uri)
    model_id = logged_model_id(resolve_version(model_uri, uri))
    if model_id:
        mlflow_client.log_inputs(run_id, models=[LoggedModelInput(model_id)])
