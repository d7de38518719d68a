"""A workflow whose driver is killed mid-training (SIGKILL, every process of the run with it) is
finished by `genpipe resume`: prepare is not re-run and training restarts from its latest
checkpoint, not from step 0. A driver stopped by SIGTERM ends its MLflow run KILLED. An MLflow
server that dies mid-run does not stop training; resume, once it is back, registers one version."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import GROUP, REPO, TINY, seed_dataset

from pipelines import cli
from pipelines.cluster import local as local_cluster
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow


def _start_run(
    tmp_path: Path, *extra: str, env: dict[str, str] | None = None, storage: str | None = None
) -> subprocess.Popen:
    """`genpipe run quickstart` (tiny) as workflow `wf` in its own process group, output in run.log."""
    options = [item for setting in [*TINY, *extra] for item in ("--set", setting)]
    command = ["run", "quickstart", "--storage", storage or str(tmp_path / "store"), "--workflow-id", "wf", *options]
    with (tmp_path / "run.log").open("w") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "pipelines.cli", *command],
            cwd=REPO,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
        )


def _wait_for_a_checkpoint(run: subprocess.Popen, tmp_path: Path) -> None:
    checkpoints = tmp_path / "store" / "checkpoints" / "wf-train"
    deadline = time.monotonic() + 300
    while not list(checkpoints.glob("checkpoint_*/unet")):
        assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
        time.sleep(0.5)
    time.sleep(3)  # past the ~2 s in which a crash can lose the report just made (FIELD_NOTES)


def _kill_group(run: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(run.pid, signal.SIGKILL)  # the driver and every Ray process it started
    run.wait()


def test_killed_run_resumes_from_its_last_checkpoint(ray_session, quickstart_dataset, tmp_path):
    storage = tmp_path / "store"
    seed_dataset(quickstart_dataset, storage)
    # 80 steps: the kill (~3 s after the step-20 checkpoint, ~20 steps alone) lands mid-train.
    run = _start_run(tmp_path, GROUP, "train.max_steps=80", "train.checkpoint_every=20")
    _wait_for_a_checkpoint(run, tmp_path)
    _kill_group(run)
    workflow = Workflow(str(storage), "wf")
    prepared = workflow.record("prepare")
    assert workflow.step_states()["train"] == "interrupted"  # the driver died in it
    meta = workflow.meta()
    assert tracking.client(meta["tracking_uri"]).get_run(meta["run_id"]).info.status == "RUNNING"  # no one to end it

    assert cli.main(["resume", "wf", "--storage", str(storage)]) == 0
    assert workflow.record("prepare") == prepared
    meta = workflow.meta()
    resumed = tracking.client(meta["tracking_uri"]).get_metric_history(meta["run_id"], "train/resumed_from_step")
    assert len(resumed) == 1 and resumed[0].value >= 20
    assert workflow.record("train")["result"]["metrics"]["step"] == 80
    assert workflow.step_states()["register"] == "succeeded"
    finished = tracking.client(meta["tracking_uri"]).get_run(meta["run_id"])
    assert finished.info.status == "FINISHED"
    # The resumed group shares the model as the group that wrote the checkpoint did.
    assert finished.data.tags["genpipe.train.strategy_reason"].startswith("kept from the checkpoint it resumes")


def test_sigterm_stops_the_run_and_its_mlflow_run_ends_killed(ray_session, quickstart_dataset, tmp_path):
    seed_dataset(quickstart_dataset, tmp_path / "store")
    run = _start_run(tmp_path, "train.max_steps=150", "train.checkpoint_every=20")
    _wait_for_a_checkpoint(run, tmp_path)
    run.send_signal(signal.SIGTERM)  # the driver only, as a scheduler's timeout or `ray job stop` would
    try:
        assert run.wait(timeout=120) == 130
    finally:
        _kill_group(run)
    assert "interrupted" in (tmp_path / "run.log").read_text()
    workflow = Workflow(str(tmp_path / "store"), "wf")
    meta = workflow.meta()
    assert tracking.client(meta["tracking_uri"]).get_run(meta["run_id"]).info.status == "KILLED"
    assert workflow.step_states()["prepare"] == "succeeded"


def test_mlflow_down_mid_run_training_goes_on_and_resume_registers_once(ray_session, quickstart_dataset, tmp_path):
    seed_dataset(quickstart_dataset, tmp_path / "store")
    folder = tmp_path / "mlflow"
    server = local_cluster.start_mlflow(folder, str(folder / "artifacts"))
    port = int(server.url.rsplit(":", 1)[1])
    # Fail fast instead of MLflow's default minutes of retries: the point is what happens after.
    patience = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "1", "MLFLOW_HTTP_REQUEST_TIMEOUT": "5"}
    run = _start_run(
        tmp_path,
        "train.max_steps=60",
        "train.checkpoint_every=15",
        f"tracking_uri={server.url}",
        env={**os.environ, **patience},
    )
    try:
        _wait_for_a_checkpoint(run, tmp_path)
        server.stop()
        assert run.wait(timeout=600) == 1
    finally:
        _kill_group(run)
    console = (tmp_path / "run.log").read_text()
    assert "is not answering: training goes on, metrics are buffered" in console
    workflow = Workflow(str(tmp_path / "store"), "wf")
    assert workflow.record("train")["result"]["metrics"]["step"] == 60  # trained to the end
    assert workflow.step_states()["evaluate"] == "failed"
    assert f"127.0.0.1:{port}" in workflow.error("evaluate")

    again = local_cluster.start_mlflow(folder, str(folder / "artifacts"), port=port)
    try:
        with pytest.MonkeyPatch.context() as patch:
            for name, value in patience.items():
                patch.setenv(name, value)
            assert cli.main(["resume", "wf", "--storage", str(tmp_path / "store")]) == 0
            assert cli.main(["resume", "wf", "--storage", str(tmp_path / "store")]) == 0
        mlflow_client = tracking.client(again.url)
        assert len(mlflow_client.search_model_versions("name = 'quickstart-ddpm'")) == 1
        meta = workflow.meta()
        assert mlflow_client.get_run(meta["run_id"]).info.status == "FINISHED"
    finally:
        again.stop()


def test_a_damaged_shard_fails_train_naming_it_and_resume_goes_on_once_repaired(ray_session, tmp_path, capsys):
    from helpers import tiny_config

    from data_prep.prepare import prepare

    storage = tmp_path / "store"
    options = [item for setting in TINY for item in ("--set", setting)]
    options += ["--set", "train.max_failures=0", "--set", "train.device_cache_mb=0"]
    prepared = ["prepare", "quickstart", "--storage", str(storage), "--workflow-id", "damaged", *options]
    assert cli.main(prepared) == 0  # the workflow's dataset, whole when prepare checked it
    manifest, _ = prepare(tiny_config(storage).data, str(storage))
    shard = manifest.shard_uris("train")[0]
    with open(shard, "rb") as handle:
        original = handle.read()
    with open(shard, "wb") as handle:  # damaged after prepare: train must name it
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


def _relay(port: int, upstream: str) -> subprocess.Popen:
    """tests/tcp_relay.py in its own process: the S3 endpoint the run sees, killable apart from moto."""
    relay = subprocess.Popen(
        [sys.executable, str(REPO / "tests" / "tcp_relay.py"), str(port), upstream.split("//")[1]],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert relay.stdout is not None and relay.stdout.readline().strip() == "listening"
    return relay


def test_an_s3_outage_mid_train_fails_the_step_in_one_line_and_resume_goes_on(
    moto_server, s3_env, quickstart_dataset, tmp_path
):
    import s3fs
    from helpers import s3_bucket

    bucket, port = s3_bucket(moto_server, "outage"), local_cluster.free_port()
    storage = f"s3://{bucket}/runs"
    s3_env.setenv("AWS_ENDPOINT_URL", moto_server.url)
    seed_dataset(quickstart_dataset, storage)
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        **os.environ,
        **local_cluster.s3_environment(moto_server),
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_MAX_ATTEMPTS": "2",  # give up in seconds, not botocore's minutes: the point is what follows
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
    }
    relay = _relay(port, moto_server.url)
    # 100 steps: the outage (~5 s after the step-20 checkpoint) lands mid-train with room to spare.
    run = _start_run(tmp_path, "train.max_steps=100", "train.checkpoint_every=20", env=env, storage=storage)
    behind_the_relay = s3fs.S3FileSystem(endpoint_url=moto_server.url, skip_instance_cache=True)
    try:
        deadline = time.monotonic() + 300
        while not [key for key in behind_the_relay.find(f"{bucket}/runs/checkpoints") if "/unet/" in key]:
            assert run.poll() is None and time.monotonic() < deadline, (tmp_path / "run.log").read_text()[-3000:]
            time.sleep(1)
        time.sleep(3)
        relay.kill()  # SIGKILL: the S3 endpoint is gone; the objects behind it stay, as S3's do
        relay.wait()
        assert run.wait(timeout=600) == 1
    finally:
        _kill_group(run)
        relay.kill()
    console = (tmp_path / "run.log").read_text()
    assert "FAILED: workflow wf: step train failed:" in console and "Traceback" not in console, console[-3000:]
    assert "Could not connect to the endpoint URL" in console  # the cause, not only "controller error:"

    relay = _relay(port, moto_server.url)  # S3 is back
    try:
        resumed = subprocess.run(
            [sys.executable, "-m", "pipelines.cli", "resume", "wf", "--storage", storage],
            cwd=REPO,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
        )
    finally:
        relay.kill()
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    assert "= prepare: done earlier, skipped" in resumed.stdout
    client = tracking.client(env["MLFLOW_TRACKING_URI"])
    run_id = json.loads(behind_the_relay.cat(f"{bucket}/runs/workflows/wf/workflow.json"))["run_id"]
    resumed_from = client.get_metric_history(run_id, "train/resumed_from_step")
    assert len(resumed_from) == 1 and resumed_from[0].value >= 20  # from a checkpoint written before the outage
    assert len(client.search_model_versions("name = 'quickstart-ddpm'")) == 1
