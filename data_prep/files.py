"""Listing and stamping a source's files (any fsspec URI): shared by the image, text and series
sources, so a source's description changes when any of its files does."""

from __future__ import annotations

import hashlib
import posixpath
from typing import Any

from data_prep.errors import DataError
from storage import filesystem

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def file_stamps(fs, root: str, paths: list[str]) -> list[list[Any]]:
    """[relative path, size, modification stamp] per file: changes when any file does."""
    files = []
    for path in paths:
        info = fs.info(path)
        stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
        files.append([posixpath.relpath(path, root), info.get("size"), str(stamp)])
    return files


def list_files(path: str, by_folder: bool) -> list[str]:
    """The images under `path` that sit in a class subfolder (`by_folder`), else its Parquet files."""
    fs, root = filesystem(path)
    if not fs.exists(root):
        raise DataError(f"data.source.path: {path} does not exist")
    suffixes = IMAGE_SUFFIXES if by_folder else (".parquet",)
    found = [root] if fs.isfile(root) else sorted(p for p in fs.find(root) if p.lower().endswith(suffixes))
    if by_folder:
        found = [p for p in found if "/" in posixpath.relpath(p, root)]  # labelled by a subfolder
    if not found:
        kinds = "/".join(suffixes)
        raise DataError(f"data.source.path: no {kinds} files under {path}")
    return found


def glob_files(pattern: str) -> list[str]:
    """The files a glob (any fsspec URI) matches, sorted; a DataError naming `data.source.path`
    when there are none."""
    fs, glob = filesystem(pattern)
    found = sorted(p for p in fs.glob(glob) if fs.isfile(p))
    if not found:
        raise DataError(f"data.source.path: no files match {pattern}")
    return found


def describe_files(config: dict[str, Any], path: str, by_folder: bool) -> dict[str, Any]:
    """A file source's `config` with every file's name, size and modification stamp."""
    fs, root = filesystem(path)
    return {**config, "files": file_stamps(fs, root, list_files(path, by_folder))}


def check_parquet_columns(path: str, columns: dict[str, str]) -> None:
    """Every Parquet file under `path` has the `columns` ({config field: column}) the config names:
    a missing one is a DataError naming the field, the column and the file, before any task runs."""
    import pyarrow.parquet as pq

    fs, _ = filesystem(path)
    for file in list_files(path, by_folder=False):
        with fs.open(file, "rb") as handle:
            names = pq.ParquetFile(handle).schema_arrow.names
        for field, column in columns.items():
            if column not in names:
                raise DataError(f"data.source.{field}: {file} has no column {column!r} (it has {', '.join(names)})")


def parquet_record_key(path: str, root: str, digest: str) -> str:
    """A Parquet record's key: its file relative to the source root, and its content's digest. Not
    the absolute path, so a record keeps its split when the data moves (another mount, a copy to S3)."""
    relative = path[len(root) :].lstrip("/") if path.startswith(root) else path
    return f"{relative or posixpath.basename(path)}#{digest}"


def read_checked(uri: str, sha256: str, what: str = "shard") -> bytes:
    """A dataset file's bytes, whole, if they hash to the manifest's `sha256`; else a DataError."""
    fs, path = filesystem(uri)
    try:
        data = fs.cat_file(path)
    except FileNotFoundError:
        raise DataError(f"{uri}: {what} listed in the manifest is missing") from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise DataError(
            f"{uri}: checksum mismatch (sha256 {digest[:12]}..., the manifest says {sha256[:12]}...); "
            f"the {what} is damaged: restore it or prepare the dataset again"
        )
    return data
