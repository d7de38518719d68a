"""A node's cache of remote dataset files, shared by every process of the node: each file is
fetched from its object store once per node, checked once (the caller's `fetch` verifies it), and
kept on local disk under a size limit, the least recently used going first.

Files are named by their sha256 (the manifest's): a name is its content, so two datasets sharing a
shard share its copy, and a file is never read under a stale name. One process of the node
fetches a file while the others wait on its lock (`fcntl.flock`), then read the copy.

Hand-written rather than fsspec's `filecache`/`blockcache`: those key files by URL, not content,
hold no lock across processes (two ranks fetch the same file), and do not evict by a size limit.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

from storage.uris import is_local

MEGABYTE = 2**20


class NodeCache:
    def __init__(self, folder: str | Path, limit_mb: float):
        self.folder, self.limit = Path(folder), int(limit_mb * MEGABYTE)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fetched_bytes = 0  # by this process, from the object store

    @classmethod
    def for_dataset(cls, uri: str, folder: str | None, limit_mb: float) -> NodeCache | None:
        """The cache for a dataset at `uri`: None when it is on a local or mounted filesystem (a
        copy would only cost disk) or the limit is 0."""
        if limit_mb <= 0 or is_local(uri):
            return None
        return cls(folder or os.path.join(tempfile.gettempdir(), "genpipe-shard-cache"), limit_mb)

    def get(self, sha256: str, fetch: Callable[[], bytes]) -> bytes:
        """The file whose content hashes to `sha256`: the node's copy, or `fetch()` (which must
        verify it) kept as the copy."""
        path = self.folder / sha256
        with contextlib.suppress(FileNotFoundError):  # evicted by another process since: fetch it
            return self._read(path)
        with self._locked(f"{sha256}.lock"):
            with contextlib.suppress(FileNotFoundError):  # another process fetched it meanwhile
                return self._read(path)
            data = fetch()
            self.fetched_bytes += len(data)
            if len(data) <= self.limit:
                with self._locked("evict.lock"):
                    self._make_room(len(data))
                    partial = path.with_name(f"{sha256}.partial-{os.getpid()}")
                    partial.write_bytes(data)
                    os.replace(partial, path)  # whole or absent: a killed writer leaves no copy
            return data

    def held_bytes(self) -> int:
        return sum(entry.stat().st_size for entry in self._copies())

    @staticmethod
    def _read(path: Path) -> bytes:
        data = path.read_bytes()
        os.utime(path)  # recently used: evicted last
        return data

    def _copies(self) -> list[Path]:
        return [entry for entry in self.folder.iterdir() if "." not in entry.name]

    def _make_room(self, incoming: int) -> None:
        """Remove the least recently used copies until `incoming` more bytes fit the limit."""
        copies = []
        for entry in self._copies():
            with contextlib.suppress(FileNotFoundError):
                status = entry.stat()
                copies.append((status.st_mtime, status.st_size, entry))
        held = sum(size for _, size, _ in copies)
        for _, size, entry in sorted(copies, key=lambda copy: copy[0]):
            if held + incoming <= self.limit:
                break
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
            held -= size

    @contextlib.contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        with open(self.folder / name, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
