"""Ray Jobs API: run a genpipe command on a cluster, with this repository as the job's working_dir.

The dashboard address (http://HOST:8265) is the job server. With Ray's token authentication
(on by default since 2.5x), set RAY_AUTH_MODE=token and the token (RAY_AUTH_TOKEN or
RAY_AUTH_TOKEN_PATH, default ~/.ray/auth_token) in the environment; it is never logged here.
"""

from __future__ import annotations

import shlex
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
# Nothing a job needs, and some of it large: environments, caches, local outputs.
AGENT_WAIT_SECONDS = 90
WORKING_DIR_EXCLUDES = [".venv/", ".git/", ".genpipe/", "mlruns/", "mlflow.db", "benchmarks/out/",
                        "__pycache__/", ".pytest_cache/", ".ruff_cache/", "*.png", "*.egg-info/"]


def client(address: str):
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address)


def submit(address: str, arguments: list[str], submission_id: str, env_vars: dict[str, str] | None = None) -> str:
    """Submit `python -m pipelines.cli ARGUMENTS` as a job; returns its submission id."""
    entrypoint = shlex.join(["python", "-m", "pipelines.cli", *arguments])
    runtime_env = {"working_dir": str(REPO_ROOT), "excludes": WORKING_DIR_EXCLUDES,
                   "env_vars": env_vars or {}}
    job_client = client(address)
    deadline = time.monotonic() + AGENT_WAIT_SECONDS
    while True:
        try:
            return job_client.submit_job(entrypoint=entrypoint, runtime_env=runtime_env,
                                         submission_id=submission_id, metadata={"genpipe": "1"})
        except RuntimeError as exc:
            # A head node that has just started serves its dashboard before its job agent is up.
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)
