"""A real `genpipe scheduler` process: a seconds-level schedule fires the tiny workflow twice
(the second time the data has not changed, so it skips training), then SIGTERM stops it cleanly.
The schedule was added from a user's YAML that is gone by then, with a tracking URI the scheduler's
environment does not have: the runs get both from the config resolved at `schedule add`."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml
from helpers import REPO, TINY, seed_dataset

from pipelines import cli
from pipelines.config import read_config_source
from pipelines.registry import tracking
from pipelines.schedule.schedules import ScheduleStore

pytestmark = pytest.mark.slow


def test_scheduler_fires_twice_and_stops_on_sigterm(quickstart_dataset, tmp_path, monkeypatch):
    storage = tmp_path / "store"
    seed_dataset(quickstart_dataset, storage)  # prepare is not what this test is about
    options = [item for setting in TINY for item in ("--set", setting)]
    mine = tmp_path / "mine" / "my.yaml"
    mine.parent.mkdir()
    mine.write_text(yaml.safe_dump(read_config_source("quickstart")))
    registry = f"sqlite:///{tmp_path / 'registry.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert (
        cli.main(
            [
                "schedule",
                "add",
                "digits",
                str(mine),
                "--tracking-uri",
                registry,
                "--cron",
                "*/2 * * * * *",
                "--when",
                "data-changed",
                "--storage",
                str(storage),
                *options,
            ]
        )
        == 0
    )
    shutil.rmtree(mine.parent)  # moved away: the schedule does not need it any more
    log = (tmp_path / "scheduler.log").open("w")
    scheduler = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", "scheduler", "--storage", str(storage), "--tick", "1"],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    store = ScheduleStore(str(storage))
    try:
        deadline = time.monotonic() + 480
        while time.monotonic() < deadline:
            runs = [h for h in store.state("digits").history if h["workflow_id"]]
            if len(runs) >= 2:
                break
            assert scheduler.poll() is None, (tmp_path / "scheduler.log").read_text()[-3000:]
            time.sleep(1)
        else:
            pytest.fail(f"two runs did not finish in time: {(tmp_path / 'scheduler.log').read_text()[-3000:]}")
    finally:
        scheduler.send_signal(signal.SIGTERM)
        code = scheduler.wait(timeout=120)
        log.close()
    output = (tmp_path / "scheduler.log").read_text()
    assert code == 0 and "[scheduler] stopped" in output
    assert runs[0]["outcome"] == "succeeded: version 1 promoted", runs
    assert runs[1]["outcome"].startswith("skipped: data unchanged: dataset"), runs
    skipped = [h for h in store.state("digits").history if h["outcome"].startswith("skipped: previous run")]
    assert skipped, "slots that came during the first run should have been skipped, not doubled"
    assert cli.main(["schedule", "list", "--storage", str(storage)]) == 0
    versions = tracking.client(registry).search_model_versions("name = 'quickstart-ddpm'")
    assert [int(v.version) for v in versions] == [1]  # registered where `schedule add` was told
