"""Workflows as Ray jobs on a cluster (the Ray Jobs API): submit, list, logs, follow, stop. The
address is the Ray dashboard's job server (http://HOST:8265), else RAY_API_SERVER_ADDRESS or
RAY_ADDRESS; `token_file` where the cluster asks for a token (Ray 2.60's default)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from pipelines.cluster import jobs as ray_jobs
from pipelines.cluster.submission import SubmittedJob, job_server
from pipelines.cluster.submission import submit_workflow as submit


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


__all__ = ["SubmittedJob", "follow", "list_jobs", "logs", "stop", "submit"]
