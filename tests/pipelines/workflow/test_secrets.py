"""A planted secret never leaves the environment: credentials in MLFLOW_TRACKING_URI move to
MLflow's username/password variables, and neither the console, the log file, the workflow's
records nor the MLflow run (params, tags) holds them."""

from __future__ import annotations

import os
import subprocess
import sys

from helpers import TINY

from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow
from storage import redact

PASSWORD = "pl4nted-Secret-9f3e"
TOKEN = "tok-PLANTED-4b1d0c7e"


def test_redact_masks_userinfo_and_secret_values(monkeypatch):
    monkeypatch.setenv("MY_API_TOKEN", TOKEN)
    text = f"GET https://alice:{PASSWORD}@host/x failed; s3://bucket/p ok; git@github.com:x; sent {TOKEN}"
    assert redact(text) == "GET https://***@host/x failed; s3://bucket/p ok; git@github.com:x; sent ***"


def test_a_planted_secret_is_nowhere_genpipe_writes(ray_session, mlflow_server, tmp_path):
    storage, logs = tmp_path / "store", tmp_path / "logs"
    host = mlflow_server.split("://", 1)[1]
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"http://alice:{PASSWORD}@{host}",
        "MY_SERVICE_TOKEN": TOKEN,  # any secret the user's shell holds
        "GENPIPE_LOG_DIR": str(logs),
    }
    sets = [item for setting in TINY for item in ("--set", setting)]
    command = [sys.executable, "-m", "pipelines.cli", "prepare", "quickstart", "--storage", str(storage)]
    done = subprocess.run(
        [*command, "--workflow-id", "wf-secret", *sets], env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert mlflow_server in done.stdout  # the run's URL, with the host only
    written = [done.stdout, done.stderr]
    written += [p.read_text(errors="replace") for p in [*storage.rglob("*"), *logs.rglob("*")] if p.is_file()]
    assert not [text for text in written if PASSWORD in text or "alice" in text or TOKEN in text]

    meta = Workflow(str(storage), "wf-secret").meta()
    assert meta["tracking_uri"] == mlflow_server
    run = tracking.client(mlflow_server).get_run(meta["run_id"])
    recorded = " ".join([*run.data.params.values(), *run.data.tags.values()])
    assert PASSWORD not in recorded and TOKEN not in recorded
