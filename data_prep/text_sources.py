"""Text sources' readers: what each text kind in data_prep.config reads, as a Ray Dataset of documents.

A document row is `{key, text, error}`; `error` is "" or why the file cannot be used (a reject
with its reason, e.g. bytes that are not UTF-8), never a crash.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Any

import ray.data

from data_prep.errors import DataError
from data_prep.sources import check_parquet_columns, file_stamps, parquet_record_key
from storage import filesystem

if TYPE_CHECKING:  # the source classes call in here; only their types are needed
    from data_prep.config import ParquetSource, PythonStdlibSource, TextFilesSource

THIRD_PARTY = {"site-packages", "dist-packages"}  # inside some stdlib folders; not the stdlib


def stdlib_files(source: PythonStdlibSource) -> tuple[Path, list[Path]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        p for p in root.glob(source.include) if p.is_file() and not THIRD_PARTY & set(p.relative_to(root).parts)
    )
    if source.max_files:
        files = files[: source.max_files]
    if not files:
        raise DataError(f"data.source.include: no files match {source.include!r} under {root}")
    return root, files


def glob_root(pattern: str) -> str:
    """The folder a glob starts from: the keys of its files are relative to it."""
    return pattern.split("*", 1)[0].rsplit("/", 1)[0]


def text_files(source: TextFilesSource) -> list[str]:
    fs, pattern = filesystem(source.path)
    found = sorted(p for p in fs.glob(pattern) if fs.isfile(p))
    if not found:
        raise DataError(f"data.source.path: no files match {source.path}")
    return found


def describe_stdlib(source: PythonStdlibSource) -> dict[str, Any]:
    """The standard library: the include glob, Python's version, the folder and the file count."""
    root, files = stdlib_files(source)
    return {**source.model_dump(), "python": sys.version, "root": str(root), "files": len(files)}


def describe_text_files(source: TextFilesSource) -> dict[str, Any]:
    fs, pattern = filesystem(source.path)
    return {**source.model_dump(), "files": file_stamps(fs, glob_root(pattern), text_files(source))}


def document(key: str, data: bytes | str | None) -> dict[str, Any]:
    if isinstance(data, str):
        return {"key": key, "text": data, "error": ""}
    if data is None:
        return {"key": key, "text": "", "error": "no text (null)"}
    try:
        return {"key": key, "text": data.decode("utf-8"), "error": ""}
    except UnicodeDecodeError as exc:
        return {"key": key, "text": "", "error": f"not UTF-8: {exc}"}


def read_stdlib(source: PythonStdlibSource) -> ray.data.Dataset:
    root, files = stdlib_files(source)
    return _read_files([{"key": str(p.relative_to(root)), "path": str(p), "start": 0, "end": -1} for p in files], "")


def read_text_files(source: TextFilesSource) -> ray.data.Dataset:
    """One document per file; a file over `chunk_mb` becomes one document per chunk of about that
    size, cut at line ends, so no task holds a whole large file."""
    fs, pattern = filesystem(source.path)
    root, chunk = glob_root(pattern), max(1, int(source.chunk_mb * 1e6))
    items: list[dict[str, Any]] = []
    for path in text_files(source):
        key, size = path[len(root) :].lstrip("/"), int(fs.size(path))
        if size <= chunk:
            items.append({"key": key, "path": path, "start": 0, "end": -1})
            continue
        for index, start in enumerate(range(0, size, chunk)):
            items.append({"key": f"{key}#{index}", "path": path, "start": start, "end": start + chunk})
    return _read_files(items, source.path.split("://")[0] + "://" if "://" in source.path else "")


def read_lines_in(handle: Any, start: int, end: int) -> bytes:
    """The lines that start in [start, end) of an open binary file; end -1 reads to the end."""
    if end < 0:
        return handle.read()
    position = 0
    if start > 0:
        handle.seek(start - 1)
        position = start - 1 + len(handle.readline())  # the line under way belongs to the chunk before
    if position >= end:
        return b""
    handle.seek(position)
    data = handle.read(end - position)
    return data if data.endswith(b"\n") else data + handle.readline()  # finish the line under way


def _read_files(items: list[dict[str, Any]], prefix: str) -> ray.data.Dataset:
    """One document per item (a whole file, or the lines of one of its chunks); `prefix` gives
    object-store paths their scheme back."""

    def load(row: dict[str, Any]) -> dict[str, Any]:
        fs, path = filesystem(prefix + row["path"])
        try:
            with fs.open(path, "rb") as handle:
                return document(row["key"], read_lines_in(handle, int(row["start"]), int(row["end"])))
        except OSError as exc:
            return {"key": row["key"], "text": "", "error": f"unreadable: {type(exc).__name__}: {exc}"}

    return ray.data.from_items(items).map(load)


def read_parquet_text(source: ParquetSource) -> ray.data.Dataset:
    column = source.text_column
    if column is None:
        raise DataError("data.source.text_column: names the column that holds the text")
    check_parquet_columns(source, [column])
    fs, root = filesystem(source.path)
    dataset = ray.data.read_parquet(
        root, filesystem=None if "://" not in source.path else fs, columns=[column], include_paths=True
    )

    def load(row: dict[str, Any]) -> dict[str, Any]:
        value = row[column]
        if not isinstance(value, str | bytes | None):
            digest = hashlib.sha1(repr(value).encode()).hexdigest()
            error = f"text column {column!r} holds {type(value).__name__}, not text"
            return {"key": parquet_record_key(row["path"], root, digest), "text": "", "error": error}
        digest = hashlib.sha1(value.encode() if isinstance(value, str) else (value or b"")).hexdigest()
        return document(parquet_record_key(row["path"], root, digest), value)

    return dataset.map(load)
