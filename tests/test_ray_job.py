"""A schedule with an address fires as a Ray job on a real `ray start --head` cluster (token
authentication on, as Ray 2.60 ships it) and its outcome comes back from the job."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import TINY, free_port

from pipelines.schedule import Schedule, Scheduler, ScheduleStore
from pipelines.schedule_runner import Launchers

pytestmark = pytest.mark.slow


@pytest.fixture
def ray_head(tmp_path, monkeypatch):
    """A Ray head node in its own process group (`--block`), stopped by its id, never `ray stop`.

    Its own --temp-dir keeps its `ray_current_cluster` file out of /tmp/ray, where a later plain
    `ray.init()` on this machine would find it and try to join a cluster that is gone."""
    port, dashboard = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")  # short: Ray's socket paths must fit
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    env.pop("RAY_ADDRESS", None)
    head = subprocess.Popen(
        [str(Path(sys.executable).parent / "ray"), "start", "--head", "--block", "--port", str(port),
         "--node-ip-address", "127.0.0.1", "--dashboard-host", "127.0.0.1", "--dashboard-port", str(dashboard),
         "--num-cpus", "2", "--include-dashboard", "true", "--temp-dir", temp_dir,
         # Fixed default ports (agent 52365, ...) are taken when the test session's own Ray runs:
         # without free ones the head has no job agent and refuses every submission.
         "--dashboard-agent-listen-port", str(free_port()), "--dashboard-agent-grpc-port", str(free_port()),
         "--runtime-env-agent-port", str(free_port()), "--metrics-export-port", str(free_port()),
         "--ray-client-server-port", str(free_port())],
        env=env, stdout=(tmp_path / "head.log").open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    address = f"http://127.0.0.1:{dashboard}"
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{address}/api/version", timeout=2)
            break
        except urllib.error.HTTPError:
            break  # up, and refusing requests without the token: as it should
        except OSError as exc:
            if head.poll() is not None or time.monotonic() > deadline:
                os.killpg(head.pid, signal.SIGKILL)
                raise RuntimeError((tmp_path / "head.log").read_text()[-3000:]) from exc
            time.sleep(1)
    yield address
    os.killpg(head.pid, signal.SIGTERM)
    try:
        head.wait(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(head.pid, signal.SIGKILL)
    shutil.rmtree(temp_dir, ignore_errors=True)


def test_schedule_with_an_address_runs_as_a_ray_job(ray_head, tmp_path):
    storage = str(tmp_path / "store")
    store = ScheduleStore(storage)
    created = time.time() - 10
    store.put(Schedule(name="remote", config="quickstart", sets=TINY, cron="* * * * * *", address=ray_head,
                       created_at=created))
    scheduler = Scheduler(store, Launchers(storage), "test", echo=lambda _: None)
    fired = scheduler.tick(time.time())
    assert len(fired) == 1
    store.put(store.get("remote").model_copy(update={"paused": True}))  # one job is enough here
    deadline = time.monotonic() + 400
    while store.state("remote").running is not None and time.monotonic() < deadline:
        time.sleep(2)
        scheduler.tick(time.time())  # follows the job until it ends
    state = store.state("remote")
    runs = [h for h in state.history if h["workflow_id"] == fired[0]]
    assert runs and runs[-1]["outcome"] == "succeeded: version 1 promoted", state.history
    log = (Path(storage) / "schedules" / "logs" / f"{fired[0]}.log").read_text()
    assert f"workflow {fired[0]} succeeded" in log
    scheduler.shutdown(time.time())
