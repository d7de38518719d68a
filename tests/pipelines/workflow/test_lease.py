"""One driver per workflow: the lease refuses a second live driver, frees itself when its holder
died, and of many drivers racing for it (local folder, S3 on moto) exactly one wins."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
from helpers import s3_bucket, tiny_config

from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.lease import DriverLease, WorkflowBusy
from pipelines.workflow.runner import Workflow
from storage import write_json_atomic


def _race(uri: str, drivers: int) -> int:
    """How many of `drivers` leases, started at one moment, acquire the workflow at `uri`."""
    won, start = [], threading.Barrier(drivers)

    def attempt() -> None:
        lease = DriverLease.of(uri)
        start.wait()
        try:
            lease.acquire()
            won.append(lease)
        except WorkflowBusy:
            pass

    threads = [threading.Thread(target=attempt) for _ in range(drivers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for lease in won:
        lease.release("finished")
    return len(won)


def test_a_second_driver_is_refused_naming_the_holder(tmp_path):
    holder = DriverLease.of(str(tmp_path / "wf"))
    holder.acquire()
    holder.doing("train")
    with pytest.raises(WorkflowBusy, match=r"being run by .*:\d+ \(train\)"):
        DriverLease.of(str(tmp_path / "wf")).acquire()
    holder.release("finished")
    DriverLease.of(str(tmp_path / "wf")).acquire()  # free once released


def test_a_dead_holder_on_this_host_frees_the_lease_at_once(tmp_path):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lease = DriverLease.of(str(tmp_path / "wf"))
    try:
        record = {
            "host": socket.gethostname(),
            "pid": child.pid,
            "pid_started": psutil.Process(child.pid).create_time(),
            "state": "running",
            "doing": "train",
            "heartbeat_at": time.time(),
        }
        write_json_atomic(f"{lease.folder}/00000001.json", record)
        with pytest.raises(WorkflowBusy):
            lease.acquire()  # its holder lives
    finally:
        child.kill()
        child.wait()
    lease.acquire()  # kill -9'd: no waiting for the term
    assert lease.latest()[0] == 2


def test_a_holder_on_another_host_is_trusted_until_its_heartbeat_lapses(tmp_path):
    lease = DriverLease(str(tmp_path / "wf" / "leases"), term_s=30)
    record = {"host": "elsewhere", "pid": 1, "state": "running", "doing": "train", "term_s": 30}
    write_json_atomic(f"{lease.folder}/00000001.json", {**record, "heartbeat_at": time.time() - 5})
    with pytest.raises(WorkflowBusy, match="elsewhere:1"):
        lease.acquire()
    write_json_atomic(f"{lease.folder}/00000001.json", {**record, "heartbeat_at": time.time() - 31})
    lease.acquire()


def test_racing_drivers_one_wins_on_a_folder(tmp_path):
    assert [_race(str(tmp_path / f"wf{i}"), 8) for i in range(5)] == [1] * 5


@pytest.mark.slow
def test_racing_drivers_one_wins_on_s3(moto_server, s3_env):
    s3_env.setenv("AWS_ENDPOINT_URL", moto_server.url)
    bucket = s3_bucket(moto_server, "lease-race")
    assert [_race(f"s3://{bucket}/workflows/wf{i}", 6) for i in range(3)] == [1] * 3


def test_resume_of_a_workflow_another_driver_runs_exits_2_and_status_shows_it(ray_session, tmp_path, capsys):
    config = tiny_config(tmp_path)
    workflow = Workflow(str(tmp_path), "wf-busy")
    workflow.create(config, tracking.tracking_uri(config), ("prepare", "train", "evaluate", "register"))
    other = workflow.lease()
    other.acquire()
    other.doing("prepare")
    assert cli.main(["resume", "wf-busy", "--storage", str(tmp_path)]) == 2
    assert "is being run by" in capsys.readouterr().err
    assert workflow.step_states()["prepare"] == "running"
    other.release("interrupted")
    assert workflow.step_states() == {
        "prepare": "interrupted",
        "train": "pending",
        "evaluate": "pending",
        "register": "pending",
    }
