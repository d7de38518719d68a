"""MLflow: one run per workflow, created by the driver and written to by steps and rank 0.

Steps and Ray Train workers log through `MlflowClient` with an explicit run id rather than
`mlflow.start_run`, so no process-global "active run" leaks between steps sharing a worker.
"""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from mlflow.entities import Metric, Param, RunStatus, RunTag
from mlflow.tracking import MlflowClient

from pipelines.config import PipelineConfig, flatten
from pipelines.registry.environment import COMMAND_VARIABLE, apply_mlflow_defaults
from storage import is_local, join, redact

MAX_PARAM_LENGTH = 6000  # MLflow 3's limit for a param value
# The UI opens an experiment with this kind in its model-training view (runs, charts, models),
# not in the GenAI traces view it picks for an experiment of unknown kind.
EXPERIMENT_KIND = {"mlflow.experimentKind": "custom_model_development"}
# Captured where a command runs and carried into a Ray job's environment (its working_dir has
# no .git), so a run on a cluster records the commit it was submitted from.
GIT_COMMIT_VARIABLE, GIT_DIRTY_VARIABLE = "GENPIPE_GIT_COMMIT", "GENPIPE_GIT_DIRTY"


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


@contextmanager
def pointed_at(uri: str) -> Iterator[None]:
    """MLflow's process-wide tracking and registry URIs at `uri` for the block, as they were after.
    Only for MLflow calls that take no client (logging an MLflow Model); the rest use `client`.
    MLflow keeps the process-wide URIs in MLFLOW_TRACKING_URI / MLFLOW_REGISTRY_URI too: those are
    restored (or unset) exactly, never left pointing at MLflow's own default."""
    import mlflow

    before = {name: os.environ.get(name) for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")}
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(before["MLFLOW_TRACKING_URI"])  # type: ignore[arg-type]  # None unsets it
        mlflow.set_registry_uri(before["MLFLOW_REGISTRY_URI"])  # type: ignore[arg-type]
        for name, value in before.items():
            if value is None:
                os.environ.pop(name, None)


def is_server(uri: str) -> bool:
    return uri.startswith(("http://", "https://", "databricks"))


def client(uri: str) -> MlflowClient:
    """A client of the tracking server and registry at `uri`, with genpipe's MLflow defaults."""
    apply_mlflow_defaults()
    return MlflowClient(tracking_uri=uri, registry_uri=uri)


def _experiment_id(mlflow_client: MlflowClient, name: str, artifact_root: str | None) -> str:
    """The experiment named `name`, created (or marked, if an older genpipe made it) as a
    model-training experiment."""
    experiment = mlflow_client.get_experiment_by_name(name)
    if experiment is None:
        return mlflow_client.create_experiment(name, artifact_location=artifact_root, tags=EXPERIMENT_KIND)
    for key, value in EXPERIMENT_KIND.items():
        if key not in experiment.tags:
            mlflow_client.set_experiment_tag(experiment.experiment_id, key, value)
    return experiment.experiment_id


def _git(*args: str) -> str | None:
    try:
        return subprocess.run(
            ["git", *args], capture_output=True, text=True, timeout=5, cwd=Path(__file__).resolve().parent, check=True
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def git_state() -> dict[str, str]:
    """The commit genpipe's code is at and whether the checkout has uncommitted changes, as
    environment variables: read from the environment when a submitter set them (a Ray job), else
    from git; empty outside a git checkout."""
    if os.environ.get(GIT_COMMIT_VARIABLE):
        return {name: os.environ[name] for name in (GIT_COMMIT_VARIABLE, GIT_DIRTY_VARIABLE) if name in os.environ}
    commit = _git("rev-parse", "HEAD")
    if not commit:
        return {}
    changes = _git("status", "--porcelain", "--untracked-files=no")
    return {GIT_COMMIT_VARIABLE: commit, GIT_DIRTY_VARIABLE: "true" if changes else "false"}


def _source_tags(workflow_id: str) -> dict[str, str]:
    """What the UI shows as the run's source, user and commit."""
    # The CLI names its command line in GENPIPE_COMMAND; a script using the API is named by its file.
    command = redact(os.environ.get(COMMAND_VARIABLE) or Path(sys.argv[0]).name or "python")
    tags = {
        "mlflow.runName": workflow_id,
        "mlflow.source.name": command,
        "mlflow.source.type": "JOB" if "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ else "LOCAL",
        "mlflow.user": os.environ.get("MLFLOW_TRACKING_USERNAME") or getpass.getuser(),
        "genpipe.workflow_id": workflow_id,
    }
    git = git_state()
    if git:
        tags["mlflow.source.git.commit"] = git[GIT_COMMIT_VARIABLE]
        tags["genpipe.git.dirty"] = git.get(GIT_DIRTY_VARIABLE, "unknown")
    return tags


def start_workflow_run(config: PipelineConfig, uri: str, workflow_id: str) -> tuple[str, str]:
    """Create the workflow's MLflow run with the flattened config as params; (run id, run URL)."""
    mlflow_client = client(uri)
    # An MLflow server keeps artifacts where it is configured to (often proxied to S3); the
    # embedded store keeps them in genpipe's storage, local or s3://, beside the shards.
    artifact_root = None if is_server(uri) else join(config.storage, "mlartifacts")
    experiment_id = _experiment_id(mlflow_client, config.experiment_name, artifact_root)
    run = mlflow_client.create_run(experiment_id, tags=_source_tags(workflow_id))
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


def metric_entries(metrics: dict[str, float], step: int | None = None) -> list[Metric]:
    stamp = int(time.time() * 1000)
    return [Metric(key, float(value), stamp, step or 0) for key, value in metrics.items()]


def log_metrics(uri: str, run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    client(uri).log_batch(run_id, metrics=metric_entries(metrics, step))


def end_run(uri: str, run_id: str, status: str) -> None:
    """End the workflow's run with `status` (FINISHED, FAILED or KILLED), and any nested run a
    sweep left open with it."""
    mlflow_client = client(uri)
    for child in child_runs(uri, run_id):
        if child.info.status == "RUNNING":
            mlflow_client.set_terminated(child.info.run_id, status)
    mlflow_client.set_terminated(run_id, status)


def reopen_run(uri: str, run_id: str) -> None:
    """A resumed workflow's run is RUNNING again until the resume ends it."""
    mlflow_client, running = client(uri), RunStatus.to_string(RunStatus.RUNNING)
    if mlflow_client.get_run(run_id).info.status != running:
        mlflow_client.update_run(run_id, running)


def set_tags(uri: str, run_id: str, tags: dict[str, str]) -> None:
    client(uri).log_batch(run_id, tags=[RunTag(key, str(value)) for key, value in tags.items()])


def log_artifact(uri: str, run_id: str, local_path: str, artifact_path: str | None = None) -> None:
    """A file, or a folder as a folder of the same name under `artifact_path`."""
    if os.path.isdir(local_path):
        folder = os.path.basename(os.path.normpath(local_path))
        client(uri).log_artifacts(run_id, local_path, f"{artifact_path}/{folder}" if artifact_path else folder)
    else:
        client(uri).log_artifact(run_id, local_path, artifact_path)
