"""The Python API on its own (the CLI tests drive it end to end): what it refuses before starting
anything, what it reads back, and the defaults it takes from the environment."""

from __future__ import annotations

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
    with pytest.raises(ValueError, match="-n: must be > 0"):
        api.sample("models:/nope@champion", n=0)
