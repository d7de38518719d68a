"""The Python API on its own (the CLI tests drive it end to end): what it refuses before starting
anything, what it reads back, and the defaults it takes from the environment."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import ray

from pipelines.config import ConfigError
from pipelines.registry import tracking
from pipelines.workflow import api


@pytest.fixture
def nothing_may_start(monkeypatch):
    def must_not_start(*args, **kwargs):
        raise AssertionError("started something")

    monkeypatch.setattr(ray, "init", must_not_start)
    monkeypatch.setattr(tracking, "start_workflow_run", must_not_start)


def test_run_refuses_a_bad_config_or_a_missing_sweep_before_starting(nothing_may_start, tmp_path):
    with pytest.raises(ConfigError, match=r"train\.batch_size: must be > 0"):
        api.run("quickstart", sets=["train.batch_size=0"], storage=str(tmp_path))
    with pytest.raises(ConfigError, match="tune: missing"):
        api.run("quickstart", steps=("prepare", "tune"), storage=str(tmp_path))
    assert not any(tmp_path.iterdir())


def test_status_and_resume_name_a_workflow_the_storage_lacks(nothing_may_start, tmp_path, monkeypatch):
    monkeypatch.setenv("GENPIPE_STORAGE", str(tmp_path))
    assert api.status() == []
    with pytest.raises(ConfigError, match="WORKFLOW_ID: no workflow 'nope'"):
        api.status("nope")
    with pytest.raises(ConfigError, match="WORKFLOW_ID: no workflow 'nope'"):
        api.resume("nope")


def test_a_model_the_registry_lacks_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("GENPIPE_STORAGE", str(tmp_path))
    assert api.registry_uri() == f"sqlite:///{tmp_path}/mlflow.db"  # beside the storage
    with pytest.raises(api.ModelUnavailable, match="MODEL_URI: cannot load models:/nope@champion"):
        api.load_model("models:/nope@champion")
    with pytest.raises(ValueError, match="^n: must be > 0"):
        api.sample("models:/nope@champion", n=0)


def test_without_an_address_a_run_starts_its_own_ray_even_where_another_was_started(ray_session):
    """`ray start` (and ray.cluster_utils.Cluster) leave the cluster's address in Ray's temp folder;
    Ray's default then joins it: a run died when that other cluster was shut down."""
    from helpers import REPO

    other = ray_session.get_runtime_context().gcs_address  # a live cluster this run must not join
    temp = tempfile.mkdtemp(prefix="rt-", dir="/tmp")  # Ray's socket paths must stay short
    try:
        (Path(temp) / "ray").mkdir()
        (Path(temp) / "ray" / "ray_current_cluster").write_text(other)
        probe = "import ray; from pipelines.workflow import api; api.connect_ray(); "
        probe += "print(ray.get_runtime_context().gcs_address)"
        env = {key: value for key, value in os.environ.items() if key != "RAY_ADDRESS"}
        joined = subprocess.run(
            [sys.executable, "-c", probe],
            cwd=REPO,
            env={**env, "RAY_TMPDIR": temp},
            capture_output=True,
            text=True,
            timeout=180,
        )
    finally:
        shutil.rmtree(temp, ignore_errors=True)
    assert joined.returncode == 0, joined.stderr[-3000:]
    assert joined.stdout.split()[-1] not in ("", other), joined.stdout
