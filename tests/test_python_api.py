"""`import genpipe`: the Python API's home, cheap to import, with the CLI's workflows, jobs and
schedules; `run(..., wait=False)` hands back a handle at once."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata

import pytest
from helpers import REPO, TINY, seed_dataset

import genpipe


def test_importing_genpipe_imports_no_heavy_library_and_names_its_api():
    code = "import sys, genpipe; print(sorted(m for m in ('torch', 'ray', 'mlflow', 'deepspeed') if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
    assert genpipe.__version__ == metadata.version("genpipe")
    for name in ("run", "resume", "status", "sample", "load_model", "submit", "jobs", "schedules", "RunHandle"):
        assert name in dir(genpipe) and getattr(genpipe, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        genpipe.nope  # noqa: B018


def test_schedules_are_managed_from_python_as_from_the_cli(tmp_path):
    storage = str(tmp_path)
    added = genpipe.schedules.add("nightly", "quickstart", cron="0 3 * * *", sets=["train.epochs=2"], storage=storage)
    assert added.resolved and "epochs: 2" in added.resolved
    genpipe.schedules.pause("nightly", storage=storage)
    (listed,) = genpipe.schedules.list_schedules(storage)
    assert listed.schedule is not None and listed.schedule.paused and listed.as_dict(0)["next"] is None
    genpipe.schedules.resume("nightly", storage=storage)
    assert genpipe.schedules.update("nightly", sets=["train.epochs=3"], storage=storage).sets == ["train.epochs=3"]
    with pytest.raises(genpipe.ConfigError, match="^NAME: a schedule named 'nightly' exists"):
        genpipe.schedules.add("nightly", "quickstart", cron="0 3 * * *", storage=storage)
    genpipe.schedules.remove("nightly", storage=storage)
    assert genpipe.schedules.list_schedules(storage) == []


def test_a_bad_config_is_refused_before_a_handle_exists(tmp_path):
    with pytest.raises(genpipe.ConfigError, match="^train.epochs: "):
        genpipe.run("quickstart", sets=["train.epochs=0"], storage=str(tmp_path), wait=False)


@pytest.mark.slow
def test_run_without_waiting_hands_back_a_handle_to_wait_on(ray_session, quickstart_dataset, tmp_path):
    storage = tmp_path / "store"
    seed_dataset(quickstart_dataset, storage)
    handle = genpipe.run("quickstart", sets=TINY, steps=("prepare",), storage=str(storage), wait=False)
    assert handle.workflow_id.startswith("quickstart-")
    outcome = handle.wait(timeout=300)
    assert handle.done() and outcome.workflow.id == handle.workflow_id
    assert outcome.results["prepare"].cache_hit
    assert handle.status().states == {"prepare": "succeeded"}
