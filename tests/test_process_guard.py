"""The guard that keeps the tests from leaving processes behind finds them by their mark, kills
what a killed session left, and leaves a live session's processes alone."""

from __future__ import annotations

import os
import subprocess
import sys

import process_guard
import psutil


def _sleeper(mark: str) -> subprocess.Popen:
    env = {**os.environ, process_guard.MARK: mark}
    # Its own session: a daemon's way of leaving its parent's process group.
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env=env, start_new_session=True)


def test_a_dead_sessions_processes_are_killed_and_a_live_ones_kept():
    dead_owner = subprocess.Popen([sys.executable, "-c", "pass"])
    dead_mark = process_guard.session_mark(psutil.Process(dead_owner.pid))
    dead_owner.wait()
    live_mark = os.environ[process_guard.MARK]  # this session's
    orphan, ours = _sleeper(dead_mark), _sleeper(live_mark)
    (process_guard.SESSIONS / dead_mark).touch()
    try:
        found = [entry.process.pid for entry in process_guard.left_by(dead_mark)]
        assert orphan.pid in found and ours.pid not in found
        killed = [found.process.pid for found in process_guard.kill_left_by_dead_sessions()]
        assert orphan.wait(timeout=10) is not None and orphan.pid in killed
        assert ours.poll() is None and ours.pid not in killed
        assert not (process_guard.SESSIONS / dead_mark).exists()
    finally:
        for process in (orphan, ours):
            process.kill()
            process.wait()
