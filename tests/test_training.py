"""Fault tolerance of training: a worker killed mid-run is restarted by Ray Train and resumes
from the latest DeepSpeed checkpoint instead of step 0."""

from __future__ import annotations

import os
import signal
import threading
import time

import psutil
import pytest
from conftest import tiny_config

import models
from data_prep.prepare import prepare
from pipelines import tracking
from pipelines.training import run_training

pytestmark = pytest.mark.slow


def _kill_a_worker_after_first_checkpoint(checkpoints, killed: list[int], timeout: float = 240) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not list(checkpoints.glob("*/checkpoint_*/unet")):
        time.sleep(0.2)
    time.sleep(3)  # a crash within ~2 s of a report can lose that report (FIELD_NOTES)
    for process in psutil.process_iter(["cmdline"]):
        if "ray::RayTrainWorker" in " ".join(process.info["cmdline"] or []):
            os.kill(process.pid, signal.SIGKILL)
            killed.append(process.pid)
            return


def test_killed_worker_resumes_from_the_latest_checkpoint(ray_session, tmp_path):
    config = tiny_config(tmp_path, "train.max_steps=150", "train.checkpoint_every=10", "train.log_every=10",
                         "train.max_failures=1")
    manifest, _ = prepare(config.data, config.storage)
    uri = tracking.tracking_uri(config)
    run_id, _ = tracking.start_workflow_run(config, uri, "wf-kill")
    model_config = models.resolve_config("ddpm", "tiny", config.model.params, {"image_shape": manifest.image_shape})
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_worker_after_first_checkpoint, args=(tmp_path / "checkpoints", killed))
    killer.start()
    result = run_training(config, manifest, model_config.model_dump(mode="json"), "wf-kill", uri, run_id)
    killer.join()
    assert killed, "no Ray Train worker was found to kill"
    assert result["metrics"]["step"] == 150
    resumed = tracking.client(uri).get_metric_history(run_id, "train/resumed_from_step")
    assert len(resumed) == 1 and resumed[0].value >= 10
    assert os.path.exists(os.path.join(result["model_uri"], "model.safetensors"))
