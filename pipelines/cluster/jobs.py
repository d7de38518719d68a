"""Ray Jobs API: run a genpipe command on a cluster, with genpipe's code shipped as `cluster.code`
says (the source checkout as working_dir, genpipe's packages as py_modules, or nothing: the image).

The dashboard address (http://HOST:8265) is the job server. Ray 2.60 turns token authentication
on by default; a client then needs RAY_AUTH_MODE=token and the token (RAY_AUTH_TOKEN,
RAY_AUTH_TOKEN_PATH, or ~/.ray/auth_token). `use_token` sets the mode when a token is at hand.
The token is read by Ray itself: genpipe never prints, logs or ships it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pipelines.registry.tracking import git_state

# pipelines/cluster/jobs.py -> the repository of a source checkout, or site-packages when installed
REPO_ROOT = Path(__file__).resolve().parents[2]
# genpipe's top-level packages (pyproject.toml's packages.find include list; a test keeps them equal)
PACKAGES = ("genpipe", "pipelines", "models", "data_prep", "storage", "serving", "tokens", "typed_errors")
AGENT_WAIT_SECONDS = 90
# Ray's job client: "Request failed with status code 500: <the server's traceback>".
SERVER_ERROR = re.compile(r"Request failed with status code (?P<code>5\d\d)")
SERVER_ERROR_RETRIES = 2
SERVER_ERROR_BACKOFF_S = 2.0
# Nothing a job needs, and some of it large: environments, caches, local outputs. Ray also skips
# what .gitignore names; `_git_ignored` adds what git ignores by other rules (.git/info/exclude).
WORKING_DIR_EXCLUDES = [
    ".venv/",
    ".git/",
    ".genpipe/",
    "mlruns/",
    "mlflow.db",
    "benchmarks/out/",
    "__pycache__/",
    ".pytest_cache/",
    ".ruff_cache/",
    "*.png",
    "*.egg-info/",
]
DEFAULT_TOKEN_FILE = Path.home() / ".ray" / "auth_token"


class JobsError(Exception):
    """The job server cannot be reached or refuses us: a one-line reason naming the address."""


def use_token(token_file: str | None = None) -> None:
    """Point Ray's client at a token file and turn token mode on when a token is available
    (an explicit mode, e.g. RAY_AUTH_MODE=disabled, is left alone)."""
    if token_file:
        path = Path(token_file).expanduser()
        if not path.is_file():
            raise JobsError(f"auth token file {path} does not exist")
        os.environ["RAY_AUTH_TOKEN_PATH"] = str(path)
    given = any(os.environ.get(variable) for variable in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"))
    if (given or DEFAULT_TOKEN_FILE.is_file()) and "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        # Ray caches the mode in its C++ config when it is imported: re-read the environment, as
        # Ray's own token set-up does, or this process (and a later local ray.init) stays "disabled".
        from ray._raylet import Config  # type: ignore[attr-defined]  # a compiled module

        Config.initialize("")


def client(address: str):
    """A JobSubmissionClient; an unreachable or refusing server is a JobsError, in about a second."""
    from ray.exceptions import AuthenticationError
    from ray.job_submission import JobSubmissionClient

    try:
        return JobSubmissionClient(address)
    except ConnectionError as exc:
        raise JobsError(
            f"cannot reach the Ray job server at {address}: is the head node up, and is "
            "this its dashboard address (http://HOST:8265)?"
        ) from exc
    except AuthenticationError as exc:
        reason = "refused the token" if "Invalid" in str(exc) else "requires its auth token"
        raise JobsError(
            f"the Ray cluster at {address} {reason}: set RAY_AUTH_TOKEN or RAY_AUTH_TOKEN_PATH "
            "(or pass --token-file) with the token of that cluster"
        ) from None


def _git_ignored() -> list[str]:
    """Paths git ignores in this checkout (none outside a git checkout), as Ray excludes."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--others", "--ignored", "--exclude-standard", "--directory"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [f"/{line}" for line in listed.splitlines() if line]


def source_checkout() -> bool:
    """Whether genpipe runs from its source checkout (not from an installed package)."""
    pyproject = REPO_ROOT / "pyproject.toml"
    return pyproject.is_file() and 'name = "genpipe"' in pyproject.read_text()


def code_mode(code: str) -> str:
    """`cluster.code` made concrete: auto is working_dir from a source checkout, else modules."""
    if code == "auto":
        return "working_dir" if source_checkout() else "modules"
    if code == "working_dir" and not source_checkout():
        raise JobsError(
            f"cluster.code: working_dir ships genpipe's source checkout, and genpipe runs from an installed "
            f"package here ({REPO_ROOT}); use modules (its packages, a few MB) or image (the nodes have it)"
        )
    return code


def runtime_env(
    env_vars: dict[str, str] | None = None, extra: dict[str, Any] | None = None, code: str = "auto"
) -> dict[str, Any]:
    """The job's runtime_env: genpipe's code as `code` says, the config's own settings, and the
    commit it was submitted from (a shipped working_dir carries no .git for MLflow to read it from)."""
    extra = dict(extra or {})
    merged_vars = {**git_state(), **extra.pop("env_vars", {}), **(env_vars or {})}
    user_excludes = extra.pop("excludes", [])
    mode = code_mode(code)
    if mode == "working_dir":
        excludes = [*WORKING_DIR_EXCLUDES, *_git_ignored(), *user_excludes]
        return {**extra, "working_dir": str(REPO_ROOT), "excludes": excludes, "env_vars": merged_vars}
    shipped: dict[str, Any] = {}
    if mode == "modules":  # Ray zips each package folder and puts it on the job's PYTHONPATH
        modules = [str(REPO_ROOT / package) for package in PACKAGES]
        shipped = {"py_modules": [*modules, *extra.pop("py_modules", [])], "excludes": ["__pycache__/", *user_excludes]}
    elif user_excludes:
        shipped = {"excludes": user_excludes}
    return {**extra, **shipped, "env_vars": merged_vars}


class _ToGenpipeLogs(logging.Handler):
    """Hands a record to the root logger's handlers: genpipe's log file, and the console only for
    what genpipe shows there (pipelines/cli/logs.py)."""

    def emit(self, record: logging.LogRecord) -> None:
        logging.getLogger().handle(record)


def _packaging_lines_to_the_log_file() -> None:
    """Ray's packaging (the upload of a job's code) logs through Ray's own `ray` logger, which
    prints to stderr: a scheduler's console got one line per job. They go to the log file."""
    logger = logging.getLogger("ray._private.runtime_env.packaging")
    if not any(isinstance(handler, _ToGenpipeLogs) for handler in logger.handlers):
        logger.addHandler(_ToGenpipeLogs())
        logger.propagate = False


def submit(
    address: str,
    arguments: list[str],
    submission_id: str,
    env_vars: dict[str, str] | None = None,
    extra_runtime_env: dict[str, Any] | None = None,
    code: str = "auto",
) -> str:
    """Submit `python -m pipelines.cli ARGUMENTS` as a job; returns its submission id."""
    _packaging_lines_to_the_log_file()
    entrypoint = shlex.join(["python", "-m", "pipelines.cli", *arguments])
    job_client = client(address)
    deadline = time.monotonic() + AGENT_WAIT_SECONDS
    server_errors = 0
    while True:
        try:
            return job_client.submit_job(
                entrypoint=entrypoint,
                runtime_env=runtime_env(env_vars, extra_runtime_env, code),
                submission_id=submission_id,
                metadata={"genpipe": "1"},
            )
        except RuntimeError as exc:
            failed = SERVER_ERROR.match(str(exc))
            if failed:
                # The job server's own failure (its traceback as the body), e.g. a package upload
                # that its GCS did not take in time on a busy head: worth a second try or two.
                server_errors += 1
                if server_errors > SERVER_ERROR_RETRIES:
                    raise JobsError(
                        f"the Ray job server at {address} failed the submission (HTTP {failed['code']}): "
                        f"{_last_line(str(exc).removesuffix('.'))}"  # the '.' Ray's client adds
                    ) from exc
                time.sleep(SERVER_ERROR_BACKOFF_S * server_errors)
                continue
            # A head node that has just started serves its dashboard before its job agent is up.
            if "No available agent" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(2)


def _last_line(text: str) -> str:
    """A server's traceback in a line: its last, the error it raised."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1] if lines else text


def follow(address: str, job_id: str, echo: Callable[[str], None]) -> Any:
    """Stream the job's logs until it ends; its final JobStatus."""
    job_client = client(address)

    async def stream() -> None:
        async for chunk in job_client.tail_job_logs(job_id):
            echo(chunk.rstrip("\n"))

    asyncio.run(stream())
    status = job_client.get_job_status(job_id)
    while not status.is_terminal():  # the log stream can close a moment before the status turns
        time.sleep(1)
        status = job_client.get_job_status(job_id)
    return status


def alive_nodes(address: str) -> int:
    from ray.util.state import list_nodes

    return len(list_nodes(address=address, filters=[("state", "=", "ALIVE")], raise_on_missing_output=False))
