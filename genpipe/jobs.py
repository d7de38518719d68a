"""Workflows as Ray jobs on a cluster (the Ray Jobs API): submit, list, logs, follow, stop. The
address is the Ray dashboard's job server (http://HOST:8265), else RAY_API_SERVER_ADDRESS or
RAY_ADDRESS; `token_file` where the cluster asks for a token (Ray 2.60's default)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from pipelines.cluster import jobs as ray_jobs
from pipelines.cluster.submission import SubmittedJob, job_server, submit_workflow


def submit(
    config: str,
    sets: Sequence[str] = (),
    *,
    address: str | None = None,
    storage: str | None = None,
    tracking_uri: str | None = None,
    workflow_id: str | None = None,
    token_file: str | None = None,
) -> SubmittedJob:
    """`genpipe run CONFIG` as a Ray job whose id is the workflow's; checked here first (a bad
    config or an unreachable bucket raises ConfigError before anything is submitted)."""
    return submit_workflow(
        config,
        sets,
        storage=storage,
        tracking_uri=tracking_uri,
        address=address,
        workflow_id=workflow_id,
        token_file=token_file,
    )


def list_jobs(address: str | None = None, token_file: str | None = None) -> list[Any]:
    """The cluster's jobs (Ray's JobDetails: submission_id, status, start_time, entrypoint...)."""
    return ray_jobs.client(job_server(address, token_file)).list_jobs()


def logs(job_id: str, address: str | None = None, token_file: str | None = None) -> str:
    return ray_jobs.client(job_server(address, token_file)).get_job_logs(job_id)


def follow(
    job_id: str, address: str | None = None, token_file: str | None = None, echo: Callable[[str], None] = print
) -> str:
    """Stream a job's log lines to `echo` until it ends; its final status (SUCCEEDED, FAILED...)."""
    return str(ray_jobs.follow(job_server(address, token_file), job_id, echo).value)


def stop(job_id: str, address: str | None = None, token_file: str | None = None) -> bool:
    """Ask the job to stop (True), or False when it had ended already."""
    return ray_jobs.client(job_server(address, token_file)).stop_job(job_id)
