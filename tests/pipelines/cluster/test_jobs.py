"""What a submitted job carries: the repository (no environments, caches or local outputs), the
config's runtime_env, and never a secret from the config."""

from __future__ import annotations

import json
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from helpers import REPO

from pipelines.cluster import jobs
from pipelines.config import ConfigError, load_config


def test_a_job_ships_the_repository_without_what_git_ignores():
    env = jobs.runtime_env()
    assert env["working_dir"] == str(REPO)
    assert {".venv/", ".git/", ".genpipe/"} <= set(env["excludes"])
    assert "/.pytest_cache/" in env["excludes"] or ".pytest_cache/" in env["excludes"]


def test_runtime_env_merges_the_config_and_keeps_working_dir():
    config = load_config(
        "quickstart", ["cluster.runtime_env.env_vars.LOG_LEVEL=debug", "cluster.runtime_env.pip=[einops]"]
    )
    env = jobs.runtime_env({"GENPIPE_CONFIG": "x"}, config.cluster.runtime_env)
    assert env["working_dir"] == str(REPO) and env["pip"] == ["einops"]
    # The commit the job comes from travels with it (its working_dir has no .git).
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    dirty = env["env_vars"].get("GENPIPE_GIT_DIRTY")
    git = {"GENPIPE_GIT_COMMIT": commit, "GENPIPE_GIT_DIRTY": dirty} if commit else {}
    assert env["env_vars"] == {"LOG_LEVEL": "debug", "GENPIPE_CONFIG": "x", **git}
    assert not commit or git["GENPIPE_GIT_DIRTY"] in ("true", "false")


@pytest.mark.parametrize(
    ("assignment", "problem"),
    [
        (
            "cluster.runtime_env.env_vars.AWS_SECRET_ACCESS_KEY=abc",
            "env_vars.AWS_SECRET_ACCESS_KEY: looks like a secret",
        ),
        ("cluster.runtime_env.env_vars.MLFLOW_TRACKING_PASSWORD=abc", "looks like a secret"),
        ("cluster.runtime_env.working_dir=/src", "working_dir: genpipe ships this repository"),
        ("cluster.runtime_env.conda_env=x", "conda_env: not a runtime_env field"),
        ("tracking_uri=http://admin:hunter2@mlflow:5000", "tracking_uri: credentials in the URI would be logged"),
        (
            "cluster.runtime_env.pip=[git+https://bot:hunter2@git.example.com/lib.git]",
            "cluster.runtime_env.pip.0: holds a URI with credentials",
        ),
        (
            "cluster.runtime_env.env_vars.INDEX=https://ghp_abcdefghijklmnopqrstuvwx@pypi.example.com/simple",
            "cluster.runtime_env.env_vars.INDEX: holds a URI with credentials",
        ),
    ],
)
def test_secrets_and_conflicts_in_the_cluster_config_are_refused(assignment, problem):
    with pytest.raises(ConfigError) as error:
        load_config("quickstart", [assignment])
    assert problem in str(error.value)
    assert not any(secret in str(error.value) for secret in ("hunter2", "abc", "ghp_"))


def test_a_config_can_come_from_an_environment_variable(monkeypatch):
    monkeypatch.setenv("GENPIPE_TEST_CONFIG", "name: from-env\nregister: {model_name: m}\n")
    assert load_config("env:GENPIPE_TEST_CONFIG").name == "from-env"
    with pytest.raises(ConfigError, match="environment variable GENPIPE_UNSET is not set"):
        load_config("env:GENPIPE_UNSET")


@pytest.mark.parametrize("name", ["quickstart", "gan-sweep-digits", "gpt-code-tiny"])
def test_the_config_a_job_reads_back_is_the_submitted_one(name, monkeypatch):
    from pipelines.config import CONFIG_VARIABLE, dump_config

    config = load_config(name, ["evaluate.top_k=null", "cluster.runtime_env.pip=[einops]"], storage="s3://b/p")
    monkeypatch.setenv(CONFIG_VARIABLE, dump_config(config))
    assert load_config(f"env:{CONFIG_VARIABLE}") == config


def test_genpipes_packages_are_the_ones_pyproject_ships():
    import re

    include = re.search(r"^include = \[(.*)\]$", (REPO / "pyproject.toml").read_text(), flags=re.MULTILINE)
    assert set(re.findall(r'"(\w+)\*"', include.group(1))) == set(jobs.PACKAGES)


def test_code_ships_as_modules_or_not_at_all_and_a_checkout_only_from_a_checkout(monkeypatch, tmp_path):
    modules = jobs.runtime_env(code="modules")
    assert modules["py_modules"] == [str(REPO / package) for package in jobs.PACKAGES]
    assert "working_dir" not in modules and "__pycache__/" in modules["excludes"]
    image = jobs.runtime_env({"GENPIPE_CONFIG": "x"}, code="image")
    assert "working_dir" not in image and "py_modules" not in image and image["env_vars"]["GENPIPE_CONFIG"] == "x"
    assert jobs.code_mode("auto") == "working_dir"  # this is a source checkout

    monkeypatch.setattr(jobs, "REPO_ROOT", tmp_path)  # as from site-packages: no pyproject.toml beside
    assert jobs.code_mode("auto") == "modules"
    with pytest.raises(jobs.JobsError, match="cluster.code: working_dir ships genpipe's source checkout"):
        jobs.code_mode("working_dir")


GCS_REFUSED = "RuntimeError: Failed to store package in the GCS."


class _FailingJobServer(BaseHTTPRequestHandler):
    """A job server whose package store fails, as Ray's answers when its GCS does not take an
    upload: HTTP 500 with its traceback as the body. (A real head cannot be made to fail so on cue.)"""

    uploads = 0

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.path == "/api/version":
            import ray

            self._answer(200, json.dumps({"version": "4", "ray_version": ray.__version__}))
        else:
            self._answer(404, "")  # no such package yet: the client uploads it

    def do_PUT(self) -> None:  # noqa: N802
        type(self).uploads += 1
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self._answer(500, f"Traceback (most recent call last):\n  ...\n{GCS_REFUSED}")

    def _answer(self, status: int, body: str) -> None:
        self.send_response(status)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: object) -> None:
        pass


def test_a_job_server_error_is_tried_again_then_named_in_a_line(monkeypatch):
    monkeypatch.setattr(jobs, "SERVER_ERROR_BACKOFF_S", 0.01)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FailingJobServer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    address = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with pytest.raises(jobs.JobsError) as failed:
            jobs.submit(address, ["run", "quickstart"], "job-1", code="modules")
    finally:
        server.shutdown()
    assert str(failed.value) == (f"the Ray job server at {address} failed the submission (HTTP 500): {GCS_REFUSED}")
    assert _FailingJobServer.uploads == 1 + jobs.SERVER_ERROR_RETRIES
