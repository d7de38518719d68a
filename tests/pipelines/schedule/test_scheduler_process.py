"""A real `genpipe scheduler` process: a seconds-level schedule fires the tiny workflow twice
(the second time the data has not changed, so it skips training); SIGTERM stops it mid-run, the
run goes on, and a second scheduler adopts it and records its outcome once.
The schedule was added from a user's YAML that is gone by then, with a tracking URI the scheduler's
environment does not have: the runs get both from the config resolved at `schedule add`."""

from __future__ import annotations

import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from helpers import REPO, TINY, seed_dataset

from pipelines import cli
from pipelines.config import read_config_source
from pipelines.registry import tracking
from pipelines.schedule.schedules import ScheduleStore

pytestmark = pytest.mark.slow


def test_scheduler_fires_twice_and_the_next_one_adopts_the_run_it_left_going(quickstart_dataset, tmp_path, monkeypatch):
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
    store = ScheduleStore(str(storage))
    first, log = _scheduler(storage, tmp_path / "scheduler.log")
    try:
        _wait(lambda: len(_outcomes(log)) >= 2 and _a_new_run_going(store, log), first, log, "2 runs, a 3rd going")
    finally:
        first.send_signal(signal.SIGTERM)  # mid-run: the run goes on, released to the next scheduler
        code = first.wait(timeout=120)
    output = log.read_text()
    assert code == 0 and "[scheduler] stopped" in output
    runs = _outcomes(log)[:2]
    assert runs[0] == "succeeded: version 1 promoted", runs
    assert runs[1].startswith("skipped: data unchanged: dataset"), runs
    assert "skipped, previous run still going" in output, "slots that came during a run should be skipped, not doubled"
    released = store.state("digits").running
    assert released is not None and released.released, "the run in flight was stopped, not left going"

    assert cli.main(["schedule", "pause", "digits", "--storage", str(storage)]) == 0  # follow, fire no more
    second, second_log = _scheduler(storage, tmp_path / "second.log")
    try:
        _wait(lambda: store.state("digits").running is None, second, second_log, "the released run's outcome")
    finally:
        second.send_signal(signal.SIGTERM)
        assert second.wait(timeout=120) == 0
    assert f"adopted {released.workflow_id}" in second_log.read_text()
    outcomes = [h["outcome"] for h in store.state("digits").history if h["workflow_id"] == released.workflow_id]
    assert len(outcomes) == 1 and outcomes[0].startswith("skipped: data unchanged"), outcomes  # recorded once
    assert cli.main(["schedule", "list", "--storage", str(storage)]) == 0
    versions = tracking.client(registry).search_model_versions("name = 'quickstart-ddpm'")
    assert [int(v.version) for v in versions] == [1]  # registered where `schedule add` was told


def _scheduler(storage: Path, log: Path) -> tuple[subprocess.Popen, Path]:
    with log.open("w") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", "scheduler", "--storage", str(storage), "--tick", "1"],
            cwd=REPO,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    return process, log


def _outcomes(log: Path) -> list[str]:
    """The runs' outcomes a scheduler printed, in order (a schedule's state keeps its last 20
    entries, and every slot skipped while a run goes on is one)."""
    return re.findall(r"digits: digits-\S+ ((?:succeeded|skipped|failed|interrupted).*)", log.read_text())


def _a_new_run_going(store: ScheduleStore, log: Path) -> bool:
    """A run is in flight whose outcome the scheduler has not printed: the state of a run that just
    ended may still name it for a moment after its outcome line."""
    running = store.state("digits").running
    return running is not None and f"digits: {running.workflow_id} " not in log.read_text()


def _wait(done, scheduler: subprocess.Popen, log: Path, what: str, seconds: float = 480):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if result := done():
            return result
        assert scheduler.poll() is None, log.read_text()[-3000:]
        time.sleep(1)
    pytest.fail(f"{what}: not in time: {log.read_text()[-3000:]}")
