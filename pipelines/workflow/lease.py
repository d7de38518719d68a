"""One driver per workflow: a lease in the workflow's folder, renewed while the driver runs.

Leases are numbered files `leases/<generation>.json`, each created exclusively (O_EXCL locally, a
conditional PUT on S3), so of two drivers taking the same free or expired lease exactly one wins.
The holder rewrites its own file with a heartbeat and the step it runs; a second driver for a
live workflow is refused (exit 2) with the holder's name. A lease is free when released, when its
heartbeat is older than its term (a driver killed on another host), or at once when its holder
was on this host and its process is gone (kill -9, then `genpipe resume`).

A hand-written lease rather than a library: Ray has no cross-job lock, and the storage (a folder
or a bucket) is the only thing every driver of a workflow shares.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psutil

from pipelines.config import ConfigError
from storage import create_exclusive, filesystem, join, read_json, write_json_atomic

LEASE_SECONDS = 60.0


class WorkflowBusy(ConfigError):
    """Another driver holds the workflow (exit 2, naming it)."""


def _this_process() -> dict[str, Any]:
    pid = os.getpid()
    return {"host": socket.gethostname(), "pid": pid, "pid_started": psutil.Process(pid).create_time()}


def holder_alive(record: dict[str, Any], now: float) -> bool:
    """Whether the driver that wrote `record` may still be running."""
    if record.get("state") != "running":
        return False
    if record.get("host") == socket.gethostname():
        try:
            return psutil.Process(int(record["pid"])).create_time() == record.get("pid_started")
        except (psutil.NoSuchProcess, psutil.AccessDenied, KeyError, ValueError):
            return False
    return now - float(record.get("heartbeat_at", 0)) <= float(record.get("term_s", LEASE_SECONDS))


def describe(record: dict[str, Any]) -> str:
    return f"{record.get('host')}:{record.get('pid')} (step {record.get('step') or '-'})"


@dataclass
class DriverLease:
    """The lease of the workflow whose folder is `workflow_uri`."""

    workflow_uri: str
    term_s: float = LEASE_SECONDS
    _generation: int | None = None
    _record: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    @property
    def folder(self) -> str:
        return join(self.workflow_uri, "leases")

    def _uri(self, generation: int) -> str:
        return join(self.folder, f"{generation:08d}.json")

    def latest(self) -> tuple[int, dict[str, Any]] | None:
        """The newest lease and its generation; None when the workflow never had a driver."""
        fs, path = filesystem(self.folder)
        if not fs.exists(path):
            return None
        names = [p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(path, detail=False)]
        generations = sorted(int(n[:-5]) for n in names if n.endswith(".json") and n[:-5].isdigit())
        for generation in reversed(generations):
            try:
                return generation, read_json(self._uri(generation))
            except (FileNotFoundError, ValueError):  # a lease being written: an older one decides
                continue
        return None

    def acquire(self) -> None:
        """Take the lease, or raise WorkflowBusy naming the live driver that holds it."""
        now = time.time()
        latest = self.latest()
        if latest is not None and holder_alive(latest[1], now):
            raise WorkflowBusy(
                [
                    f"WORKFLOW_ID: {os.path.basename(self.workflow_uri)} is being run by {describe(latest[1])}; "
                    f"wait for it, or stop it (its lease lapses {self.term_s:.0f} s after its last heartbeat)"
                ]
            )
        generation = latest[0] + 1 if latest else 1
        record = {
            **_this_process(),
            "nonce": uuid.uuid4().hex,
            "state": "running",
            "step": None,
            "term_s": self.term_s,
            "acquired_at": now,
            "heartbeat_at": now,
        }
        if not create_exclusive(self._uri(generation), record):
            raise WorkflowBusy(
                [f"WORKFLOW_ID: {os.path.basename(self.workflow_uri)}: another driver took it at the same moment"]
            )
        self._generation, self._record = generation, record
        threading.Thread(target=self._renew, name="genpipe-lease", daemon=True).start()

    def _write(self, **changes: Any) -> None:
        with self._lock:
            if self._generation is None:
                return
            self._record = {**self._record, **changes, "heartbeat_at": time.time()}
            write_json_atomic(self._uri(self._generation), self._record)

    def _renew(self) -> None:
        while not self._stop.wait(self.term_s / 4):
            try:
                self._write()
            except Exception:  # storage briefly unreachable: the next beat tries again
                continue

    def running(self, step: str) -> None:
        """Record the step the driver is running (for `genpipe status`)."""
        self._write(step=step)

    def release(self, state: str) -> None:
        """Give the lease up, saying how the driver ended: finished, failed or interrupted."""
        self._stop.set()
        self._write(state=state)
        self._generation = None
