"""What a crashed pytest-xdist worker leaves to read.

A worker that dies without a Python traceback was killed (SIGKILL: the kernel's OOM killer, or a
signal meant for another process), or exited from native code: a Ray driver exits at once when
its raylet or GCS dies. xdist then reports only "node down: Not properly terminated". Each worker
records its pid when it starts; when one goes down, the controller adds to the crashed test's
report the memory left on the machine and the last lines Ray's driver core wrote for that pid
(Ray names that log after the driver's pid), so a CI log shows which of these it was.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from pathlib import Path

import psutil

RAY_TEMP = Path(tempfile.gettempdir()) / "ray"
WORKERS = Path(tempfile.gettempdir()) / "genpipe-test-workers"  # <mark>/<worker id> holds its pid
TAIL_LINES = 12


def _pids_file(root: Path, mark: str, worker: str) -> Path:
    return root / mark / worker


def record_worker(root: Path, mark: str, worker: str, pid: int) -> None:
    path = _pids_file(root, mark, worker)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(str(pid))


def forget_workers(root: Path, mark: str) -> None:
    shutil.rmtree(root / mark, ignore_errors=True)


def _tail(path: Path) -> list[str]:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace").splitlines()[-TAIL_LINES:]
    return []


def describe(root: Path, mark: str, worker: str, ray_temp: Path = RAY_TEMP) -> str:
    """The lines to add to the report of the test `worker` crashed on."""
    memory = psutil.virtual_memory()
    lines = [f"memory available now: {memory.available / 2**20:.0f} of {memory.total / 2**20:.0f} MiB"]
    record = _pids_file(root, mark, worker)
    try:
        pid, started = int(record.read_text()), record.stat().st_mtime
    except (OSError, ValueError):
        return "\n".join([*lines, f"{worker} recorded no pid"])
    lines.append(f"{worker} was pid {pid}")
    logs = {
        log.resolve() for log in ray_temp.glob(f"session_*/logs/python-core-driver-*_{pid}.log")
    }  # session_latest too
    for log in sorted(logs):
        if log.stat().st_mtime >= started:  # not an earlier process's that had the same pid
            lines += [f"--- the last lines of {log}:", *_tail(log)]
    return "\n".join(lines)
