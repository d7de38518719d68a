"""MLflow: one run per workflow, created by the driver and written to by steps and rank 0.

Steps and Ray Train workers log through `MlflowClient` with an explicit run id rather than
`mlflow.start_run`, so no process-global "active run" leaks between steps sharing a worker.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from pipelines.config import PipelineConfig, flatten
from pipelines.registry.environment import apply_mlflow_defaults
from storage import is_local, join

MAX_PARAM_LENGTH = 6000  # MLflow 3's limit for a param value


def tracking_uri(config: PipelineConfig) -> str:
    """The configured server, or the embedded default for the config's storage."""
    return config.tracking_uri or default_tracking_uri(config.storage)


def default_tracking_uri(storage: str) -> str:
    """MLFLOW_TRACKING_URI when set, else an sqlite database beside local storage (or in
    ./.genpipe when the storage is remote: sqlite cannot live in an object store)."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    if is_local(storage):
        return f"sqlite:///{join(storage, 'mlflow.db')}"
    return f"sqlite:///{Path('.genpipe').resolve() / 'mlflow.db'}"


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def client(uri: str) -> MlflowClient:
    """A client of the tracking server and registry at `uri`, with genpipe's MLflow defaults."""
    apply_mlflow_defaults()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(mlflow_client: MlflowClient, name: str, artifact_root: str | None) -> str:
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    return mlflow_client.create_experiment(name, artifact_location=artifact_root)


def git_commit() -> str | None:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            timeout=5,
            cwd=Path(__file__).resolve().parent,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def start_workflow_run(config: PipelineConfig, uri: str, workflow_id: str) -> tuple[str, str]:
    """Create the workflow's MLflow run with the flattened config as params; (run id, run URL)."""
    mlflow_client = client(uri)
    # An MLflow server keeps artifacts where it is configured to (often proxied to S3); the
    # embedded store keeps them in genpipe's storage, local or s3://, beside the shards.
    artifact_root = None if is_server(uri) else join(config.storage, "mlartifacts")
    experiment_id = _experiment_id(mlflow_client, config.experiment_name, artifact_root)
    tags = {"genpipe.workflow_id": workflow_id, "mlflow.runName": f"{config.name}-{workflow_id}"}
    commit = git_commit()
    if commit:
        tags["mlflow.source.git.commit"] = commit
    run = mlflow_client.create_run(experiment_id, tags=tags)
    params = [
        Param(key, str(value)[:MAX_PARAM_LENGTH]) for key, value in flatten(config.model_dump(mode="json")).items()
    ]
    for start in range(0, len(params), 100):  # log_batch takes at most 100 params a call
        mlflow_client.log_batch(run.info.run_id, params=params[start : start + 100])
    return run.info.run_id, run_url(uri, experiment_id, run.info.run_id)


def child_run(uri: str, parent_run_id: str, key: str, params: dict[str, object]) -> str:
    """The run nested under `parent_run_id` for `key` (a sweep trial): found again when a
    restored trial comes back, else created with `params`."""
    mlflow_client = client(uri)
    parent = mlflow_client.get_run(parent_run_id)
    found = mlflow_client.search_runs(
        [parent.info.experiment_id],
        max_results=1,
        filter_string=(f"tags.`mlflow.parentRunId` = '{parent_run_id}' and tags.`genpipe.trial_id` = '{key}'"),
    )
    if found:
        return found[0].info.run_id
    run = mlflow_client.create_run(
        parent.info.experiment_id,
        run_name=key,
        tags={
            "mlflow.parentRunId": parent_run_id,
            "genpipe.trial_id": key,
            "genpipe.workflow_id": parent.data.tags.get("genpipe.workflow_id", ""),
        },
    )
    mlflow_client.log_batch(run.info.run_id, params=[Param(k, str(v)[:MAX_PARAM_LENGTH]) for k, v in params.items()])
    return run.info.run_id


def child_runs(uri: str, parent_run_id: str) -> list:
    mlflow_client = client(uri)
    experiment_id = mlflow_client.get_run(parent_run_id).info.experiment_id
    return mlflow_client.search_runs(
        [experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent_run_id}'", max_results=1000
    )


def run_url(uri: str, experiment_id: str, run_id: str) -> str:
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{experiment_id}/runs/{run_id}"
    return f"{uri} (open with `mlflow ui --backend-store-uri {uri}`) run {run_id}"


def log_metrics(uri: str, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    stamp = int(time.time() * 1000)
    entries = [Metric(key, float(value), stamp, step or 0) for key, value in metrics.items()]
    client(uri).log_batch(run_id, metrics=entries)


def set_tags(uri: str, run_id: str, tags: dict[str, str]) -> None:
    client(uri).log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])


def log_artifact(uri: str, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
    """A file, or a folder as a folder of the same name under `artifact_path`."""
    if os.path.isdir(local_path):
        folder = os.path.basename(os.path.normpath(local_path))
        client(uri).log_artifacts(run_id, local_path, f"{artifact_path}/{folder}" if artifact_path else folder)
    else:
        client(uri).log_artifact(run_id, local_path, artifact_path)


def log_dataset(uri: str, run_id: str, manifest_uri: str, fingerprint: str) -> None:
    """Dataset lineage: the manifest as the source and its fingerprint as the digest."""
    import warnings

    from mlflow.data.dataset_source_registry import resolve_dataset_source
    from mlflow.data.meta_dataset import MetaDataset
    from mlflow.entities import DatasetInput, InputTag

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow warns that resolve_dataset_source is experimental
        source = resolve_dataset_source(manifest_uri)
    # MLflow's own typing marks MetaDataset abstract (`profile`); it is the concrete class for this.
    dataset = MetaDataset(source=source, name=f"dataset-{fingerprint}", digest=fingerprint)  # type: ignore[abstract]
    lineage = DatasetInput(dataset._to_mlflow_entity(), tags=[InputTag("mlflow.data.context", "training")])
    mlflow_client = client(uri)
    mlflow_client.log_inputs(run_id, datasets=[lineage])
    mlflow_client.set_tag(run_id, "genpipe.dataset.fingerprint", fingerprint)
