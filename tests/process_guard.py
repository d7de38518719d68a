"""No process outlives the test session that started it.

Every process a test starts inherits the session's mark, GENPIPE_TEST_SESSION=<pid>:<start time>
of the pytest process that owns the session (set before anything starts): Ray's GCS, raylets and
workers, `ray start` heads, the MLflow and moto servers, schedulers, `genpipe` subprocesses. The
environment is a label a process keeps when it daemonises or changes its process group, so it
finds them whoever their parent is now. A few of Ray's processes (its dashboard's and agents)
retitle themselves over the memory /proc shows as their environment: those are caught as Ray
processes left to init (parent pid 1) that started while the session ran.

- At the end of a session, such a process still alive (after a grace period for Ray's own
  shutdown) is a leak: it is listed, killed, and the session fails.
- At the start of a session, what a session whose pytest is gone (killed) left is killed first:
  each session keeps a file under the temp folder until it ends, naming its mark.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

MARK = "GENPIPE_TEST_SESSION"
GRACE_S = 30.0  # a raylet's workers exit a few seconds after `ray.shutdown()`
SESSIONS = Path(tempfile.gettempdir()) / "genpipe-test-sessions"
RAY_TITLES = ("ray::", "ray-dashboard-")


def session_mark(process: psutil.Process | None = None) -> str:
    """The mark of a session owned by `process` (this one by default): its pid and start time,
    so a reused pid never passes for a live owner."""
    process = process or psutil.Process()
    return f"{process.pid}:{process.create_time():.2f}"


def _started(mark: str) -> float:
    return float(mark.partition(":")[2])


def _owner_alive(mark: str) -> bool:
    pid, _, created = mark.partition(":")
    try:
        return f"{psutil.Process(int(pid)).create_time():.2f}" == created
    except (ValueError, psutil.Error):
        return False


@dataclass(frozen=True)
class Found:
    process: psutil.Process
    command: str

    def describe(self) -> str:
        return f"pid {self.process.pid}: {self.command[:160]}"


def _alive(process: psutil.Process) -> bool:
    try:
        return process.status() != psutil.STATUS_ZOMBIE  # a zombie has exited; its parent reaps it
    except psutil.Error:
        return False


def left_by(mark: str) -> list[Found]:
    """The live processes of the session `mark`: those carrying it, and retitled Ray processes
    left to init that started after the session did."""
    since, found = _started(mark), []
    for process in psutil.process_iter(["pid", "ppid", "cmdline", "create_time"]):
        if process.pid == os.getpid():
            continue
        with contextlib.suppress(psutil.Error):
            command = " ".join(process.info["cmdline"] or [])
            marked = process.environ().get(MARK) == mark
            orphaned_ray = (
                process.info["ppid"] == 1 and command.startswith(RAY_TITLES) and process.info["create_time"] >= since
            )
            if (marked or orphaned_ray) and _alive(process):
                found.append(Found(process, command))
    return found


def kill(found: list[Found]) -> None:
    for entry in found:
        with contextlib.suppress(psutil.Error):
            entry.process.kill()
    psutil.wait_procs([entry.process for entry in found], timeout=10)


def kill_left_by_dead_sessions() -> list[Found]:
    """Kill what earlier sessions whose pytest is gone (killed) left behind; return it."""
    SESSIONS.mkdir(parents=True, exist_ok=True)
    killed: list[Found] = []
    for record in SESSIONS.iterdir():
        mark = record.name
        if not _owner_alive(mark):
            left = left_by(mark)
            kill(left)
            killed += left
            record.unlink(missing_ok=True)
    return killed


def begin() -> tuple[str, list[Found]]:
    """Clean up after dead sessions, then open this one: its mark, and what was killed."""
    killed = kill_left_by_dead_sessions()
    mark = session_mark()
    (SESSIONS / mark).touch()
    return mark, killed


def end(mark: str, grace_s: float = GRACE_S) -> list[Found]:
    """This session's processes still alive after `grace_s`, killed; the session is closed."""
    deadline = time.monotonic() + grace_s
    while (left := left_by(mark)) and time.monotonic() < deadline:
        time.sleep(0.5)
    kill(left)
    (SESSIONS / mark).unlink(missing_ok=True)
    return left


def raylets() -> set[int]:
    """The raylets this process started (`ray.init` of a local Ray makes them its children)."""
    return {child.pid for child in psutil.Process().children() if child.name() == "raylet"}


def stop_ray_leftovers(raylet_pids: set[int], grace_s: float = 10.0) -> list[str]:
    """After `ray.shutdown()`: kill the workers of those raylets that outlive them (a Ray Train
    controller whose run was cut short can miss its raylet's exit and live on, ~480 MB each);
    return what was killed."""
    deadline = time.monotonic() + grace_s
    while True:
        left = []
        for process in psutil.process_iter(["cmdline"]):
            with contextlib.suppress(psutil.Error, ValueError):
                if int(process.environ().get("RAY_RAYLET_PID", 0)) in raylet_pids and _alive(process):
                    left.append(process)
        if not left or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    described = [f"pid {p.pid}: {' '.join(p.info['cmdline'] or [])[:120]}" for p in left]
    for process in left:
        with contextlib.suppress(psutil.Error):
            process.kill()
    return described
