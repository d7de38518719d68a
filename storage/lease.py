"""A lease in storage: at most one live holder of a thing (a workflow's driver, a schedule's tick).

Leases are numbered files `<folder>/<generation>.json`, each created exclusively (O_EXCL locally, a
conditional PUT on S3), so of two processes taking the same free or expired lease exactly one wins.
The holder rewrites its own file with a heartbeat (and what it is doing). A lease is free when
released, when its heartbeat is older than its term (a holder killed on another host), or at once
when its holder was on this host and its process is gone (kill -9).

Hand-written rather than a library: Ray has no cross-job lock, and the storage (a folder or a
bucket) is the only thing every holder shares.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

import psutil

from storage.files import create_exclusive, read_json, write_json_atomic
from storage.uris import filesystem, join

LEASE_SECONDS = 60.0


KEPT_GENERATIONS = 2  # older lease files are deleted: a lease taken every tick must not pile up


class LeaseHeld(RuntimeError):
    """Another live process holds the lease; `record` says who."""

    def __init__(self, record: dict[str, Any]):
        super().__init__(f"held by {describe(record)}")
        self.record = record


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
    doing = f" ({record['doing']})" if record.get("doing") else ""
    return f"{record.get('host')}:{record.get('pid')}{doing}"


@dataclass
class Lease:
    """The lease whose generations are files in `folder`."""

    folder: str
    term_s: float = LEASE_SECONDS
    _generation: int | None = None
    _record: dict[str, Any] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

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
            except (OSError, ValueError):  # being rewritten or deleted (s3fs: FileExpired): an older one decides
                continue
        return None

    def acquire(self, renew: bool = True) -> None:
        """Take the lease, or raise LeaseHeld naming the live process that holds it. `renew`:
        a thread keeps the heartbeat fresh (not needed for a hold shorter than the term)."""
        now = time.time()
        latest = self.latest()
        if latest is not None and holder_alive(latest[1], now):
            raise LeaseHeld(latest[1])
        generation = latest[0] + 1 if latest else 1
        record = {
            **_this_process(),
            "nonce": uuid.uuid4().hex,
            "state": "running",
            "doing": None,
            "term_s": self.term_s,
            "acquired_at": now,
            "heartbeat_at": now,
        }
        if not create_exclusive(self._uri(generation), record):
            taken = self.latest()
            raise LeaseHeld(taken[1] if taken else {"host": "another process", "pid": "?"})
        self._generation, self._record = generation, record
        self._forget_before(generation - KEPT_GENERATIONS + 1)
        if renew:
            threading.Thread(target=self._renew, name="genpipe-lease", daemon=True).start()

    def _forget_before(self, generation: int) -> None:
        fs, _ = filesystem(self.folder)
        for old in range(max(1, generation - 3), generation):  # the few a holder can have left behind
            with contextlib.suppress(OSError):  # already gone
                fs.rm_file(self._uri(old))  # fsspec strips the protocol itself

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

    def doing(self, what: str) -> None:
        """Record what the holder is doing (a workflow driver: the step it runs)."""
        self._write(doing=what)

    def release(self, state: str) -> None:
        """Give the lease up, saying how the holder ended (finished, failed, interrupted)."""
        self._stop.set()
        with contextlib.suppress(Exception):  # storage unreachable: the lease lapses after its term
            self._write(state=state)
        self._generation = None
