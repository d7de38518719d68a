"""Reading and writing files at storage URIs: atomic replacement, exclusive creation."""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

from fsspec.implementations.local import LocalFileSystem

from storage.uris import filesystem, is_local


def write_bytes_atomic(uri: str, data: bytes) -> None:
    """Readers see the old object or the new one, never half of it.

    A local file is written beside its target and renamed; an object store's PUT is already
    all-or-nothing.
    """
    fs, path = filesystem(uri)
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    else:
        fs.pipe_file(path, data)


def write_json_atomic(uri: str, payload: Any) -> None:
    write_bytes_atomic(uri, json.dumps(payload, indent=2, sort_keys=True).encode())


def read_bytes(uri: str) -> bytes:
    fs, path = filesystem(uri)
    with fs.open(path, "rb") as handle:
        return handle.read()


def read_json(uri: str) -> Any:
    return json.loads(read_bytes(uri))


def exists(uri: str) -> bool:
    fs, path = filesystem(uri)
    return fs.exists(path)


def local_copy(uri: str, destination: str) -> str:
    """A local folder holding the contents of `uri`: the folder itself when it is local,
    otherwise a download into `destination`."""
    if is_local(uri):
        return uri.removeprefix("file://")
    fs, path = filesystem(uri)
    fs.get(path.rstrip("/") + "/", destination.rstrip("/") + "/", recursive=True)
    return destination


def create_exclusive(uri: str, payload: Any) -> bool:
    """Create `uri` holding `payload` as JSON unless it exists; True if this call created it.

    The claim is the creation itself (O_EXCL locally, a conditional PUT where the object store's
    fsspec driver offers mode "xb"), so racing callers cannot both win.
    """
    data = json.dumps(payload).encode()
    fs, path = filesystem(uri)
    if isinstance(fs, LocalFileSystem):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True
    try:
        with fs.open(path, "xb") as handle:
            handle.write(data)
    except (ValueError, NotImplementedError) as exc:
        raise RuntimeError(
            f"{uri}: this storage cannot create a file exclusively ({exc}); run a single scheduler on it"
        ) from exc
    except Exception as exc:
        # The PUT may have landed though its answer was lost (a retry then meets the object and
        # fails): the object is ours if it holds our payload, which carries a nonce when it matters.
        if _holds(fs, path, data):
            return True
        if isinstance(exc, FileExistsError):
            return False
        raise
    return True


def _holds(fs: Any, path: str, data: bytes) -> bool:
    """Whether the object at `path` exists and holds exactly `data`."""
    try:
        with fs.open(path, "rb") as handle:
            return handle.read() == data
    except FileNotFoundError:
        return False
