"""A workflow submitted as a Ray job: validated and checked here, then `genpipe run` on the
cluster with the resolved config (`env:GENPIPE_CONFIG`), under a job id that is its workflow id,
so `genpipe jobs logs ID` and `genpipe status ID --storage ...` name the same thing."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from pipelines.cluster import jobs
from pipelines.config import CONFIG_VARIABLE, ConfigError, dump_config, load_config
from pipelines.workflow import preflight
from pipelines.workflow.runner import check_workflow_id, new_workflow_id
from storage import is_local, normalize


@dataclass(frozen=True)
class SubmittedJob:
    job_id: str  # the workflow's id too
    address: str  # the job server
    storage: str  # where the workflow's records are


def job_server(address: str | None = None, token_file: str | None = None) -> str:
    """The Ray dashboard's job server (`address`, RAY_API_SERVER_ADDRESS or RAY_ADDRESS), with the
    cluster's token set up for the client when one is at hand."""
    address = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS")
    if not address or not address.startswith(("http://", "https://")):
        raise ConfigError([f"--address: the Ray dashboard's job server, http://HOST:8265 (got {address!r})"])
    jobs.use_token(token_file)
    return address


def submit_workflow(
    config_source: str,
    sets: Sequence[str] = (),
    *,
    storage: str | None = None,
    tracking_uri: str | None = None,
    address: str | None = None,
    workflow_id: str | None = None,
    token_file: str | None = None,
    echo: Callable[[str], None] = lambda _: None,
) -> SubmittedJob:
    """Validate and check everything here, then hand the resolved config to `genpipe run` on the
    cluster. Raises ConfigError (exit 2 in the CLI) before anything is submitted."""
    if workflow_id:
        check_workflow_id(workflow_id)  # the job's id and a folder in storage: refused here, not in the job
    config = load_config(config_source, list(sets), storage=storage, tracking_uri=tracking_uri)
    config = config.model_copy(
        update={
            "storage": normalize(config.storage),
            "tracking_uri": config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI"),
        }
    )
    if config.tracking_uri is None and not is_local(config.storage):
        raise ConfigError(
            [
                "--tracking-uri: a job on a cluster needs an MLflow server (or MLFLOW_TRACKING_URI): "
                "the embedded sqlite store would stay in the job's temporary working directory"
            ]
        )
    try:
        jobs.code_mode(config.cluster.code)  # shipping a checkout that is not there: refused now
    except jobs.JobsError as exc:
        raise ConfigError([str(exc)]) from None
    server = job_server(address, token_file or config.cluster.auth_token_file)
    preflight.check_storage(config.storage)
    if config.tracking_uri:
        preflight.check_tracking(config.tracking_uri)
    if is_local(config.storage):
        echo(f"note: storage {config.storage} is a folder: the job writes it on the cluster's nodes")
    workflow_id = workflow_id or new_workflow_id(config.name)
    job_id = jobs.submit(
        server,
        ["run", f"env:{CONFIG_VARIABLE}", "--workflow-id", workflow_id],
        workflow_id,
        env_vars={CONFIG_VARIABLE: dump_config(config)},
        extra_runtime_env=config.cluster.runtime_env,
        code=config.cluster.code,
    )
    return SubmittedJob(job_id, server, config.storage)
