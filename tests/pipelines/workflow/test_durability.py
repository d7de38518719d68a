"""A workflow whose driver is killed mid-training (SIGKILL, every process of the run with it) is
finished by `genpipe resume`: prepare is not re-run and training restarts from its latest
checkpoint, not from step 0."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import REPO, TINY

from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow


def test_killed_run_resumes_from_its_last_checkpoint(ray_session, tmp_path):
    storage = tmp_path / "store"
    options = [item for setting in TINY for item in ("--set", setting)]
    options += ["--set", "train.max_steps=150", "--set", "train.checkpoint_every=20"]
    log = (tmp_path / "run.log").open("w")
    run = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "run",
            "quickstart",
            "--storage",
            str(storage),
            "--workflow-id",
            "wf",
            *options,
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    checkpoints = storage / "checkpoints" / "wf-train"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("checkpoint_*/unet")):
        assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
        time.sleep(0.5)
    time.sleep(3)  # past the ~2 s in which a crash can lose the report just made (FIELD_NOTES)
    os.killpg(run.pid, signal.SIGKILL)  # the driver and every Ray process it started
    run.wait()
    log.close()
    workflow = Workflow(str(storage), "wf")
    prepared = workflow.record("prepare")
    assert workflow.step_states()["train"] == "pending"

    assert cli.main(["resume", "wf", "--storage", str(storage)]) == 0
    assert workflow.record("prepare") == prepared
    meta = workflow.meta()
    resumed = tracking.client(meta["tracking_uri"]).get_metric_history(meta["run_id"], "train/resumed_from_step")
    assert len(resumed) == 1 and resumed[0].value >= 20
    assert workflow.record("train")["result"]["metrics"]["step"] == 150
    assert workflow.step_states()["register"] == "succeeded"


def test_a_damaged_shard_fails_train_naming_it_and_resume_goes_on_once_repaired(ray_session, tmp_path, capsys):
    from helpers import tiny_config

    from data_prep.prepare import prepare

    storage = tmp_path / "store"
    options = [item for setting in TINY for item in ("--set", setting)]
    options += ["--set", "train.max_failures=0", "--set", "train.device_cache_mb=0"]
    manifest, _ = prepare(tiny_config(storage).data, str(storage))  # the dataset the run will find
    shard = manifest.shard_uris("train")[0]
    with open(shard, "rb") as handle:
        original = handle.read()
    with open(shard, "wb") as handle:
        handle.write(original[:100] + bytes([original[100] ^ 0xFF]) + original[101:])

    run = ["run", "quickstart", "--storage", str(storage), "--workflow-id", "damaged", *options]
    assert cli.main(run) != 0
    out = capsys.readouterr()
    assert f"{shard}: checksum mismatch" in out.out + out.err
    workflow = Workflow(str(storage), "damaged")
    assert workflow.step_states()["train"] == "failed"

    with open(shard, "wb") as handle:
        handle.write(original)
    assert cli.main(["resume", "damaged", "--storage", str(storage)]) == 0
    assert workflow.step_states()["register"] == "succeeded"
