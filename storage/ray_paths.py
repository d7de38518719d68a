"""Storage URIs in the form Ray Train and Ray Tune take them (and give them back)."""

from __future__ import annotations

from typing import Any

from storage.uris import filesystem, is_local


def ray_storage(uri: str) -> tuple[str, Any]:
    """(storage_path, storage_filesystem) for Ray Train's and Ray Tune's RunConfig: a local path as
    it is, an object-store URI as its bucket path plus a pyarrow wrapper of the fsspec filesystem."""
    if is_local(uri):
        return uri, None
    import pyarrow.fs

    fs, path = filesystem(uri)
    return path, pyarrow.fs.PyFileSystem(pyarrow.fs.FSSpecHandler(fs))


def storage_uri(storage: str, ray_path: str) -> str:
    """A path Ray returned (a checkpoint's) as a URI again: object stores get their scheme back."""
    return ray_path if is_local(storage) else f"{storage.split('://')[0]}://{ray_path}"
