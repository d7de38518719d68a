"""A server is signalled only while its pid still names the process genpipe started: a test
session hands out ~30,000 pids, so a stopped server's pid soon belongs to another process."""

from __future__ import annotations

import subprocess
import sys
import time

import psutil

from pipelines.cluster.local import Server, _spawn


def _sleeper() -> subprocess.Popen:
    """An unrelated process that leads a group of its own, as a new Ray driver or server does."""
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], start_new_session=True)


def test_a_server_whose_pid_now_names_another_process_is_not_running_and_stop_leaves_that_process(tmp_path):
    other = _sleeper()
    try:
        # The record of a server that had `other`'s pid before it: the same pid, an earlier start.
        earlier = psutil.Process(other.pid).create_time() - 100
        server = Server("mlflow", other.pid, "http://127.0.0.1:1", str(tmp_path / "log"), started=earlier)
        assert not server.running()
        server.stop(timeout=1)
        assert other.poll() is None  # still alive
    finally:
        other.kill()
        other.wait()


def test_a_live_server_is_running_and_stop_ends_its_group_and_the_strays_that_left_it(tmp_path):
    # A leader with a child in a session of its own (as a Ray job's driver is): stop ends both.
    script = (
        "import subprocess, sys, time; "
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'], start_new_session=True); "
        "time.sleep(60)"
    )
    pid, log, started = _spawn("stray-test", [sys.executable, "-c", script], tmp_path)
    server = Server("stray-test", pid, "", log, started=started)
    deadline, strays = time.monotonic() + 10, []
    while not strays and time.monotonic() < deadline:
        strays = psutil.Process(pid).children(recursive=True)
        time.sleep(0.05)
    assert server.running() and strays
    server.stop(timeout=5)
    assert not server.running()
    _, alive = psutil.wait_procs(strays, timeout=5)
    assert not alive
