"""Text sources: each kind's config (a `data.source` of the text modality) and how it reads its
documents, as a Ray Dataset.

A document row is `{key, text, error}`; `error` is "" or why the file cannot be used (a reject
with its reason, e.g. bytes that are not UTF-8), never a crash. Ray is imported when a source is
read, so a config loads without it.
"""

from __future__ import annotations

import hashlib
import sys
import sysconfig
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from data_prep.errors import DataError
from data_prep.files import check_parquet_columns, file_stamps, glob_files, parquet_record_key
from data_prep.modalities.base import SourceConfig
from storage import filesystem

if TYPE_CHECKING:
    from ray.data import Dataset

THIRD_PARTY = {"site-packages", "dist-packages"}  # inside some stdlib folders; not the stdlib


class TextSourceConfig(SourceConfig):
    """A source of text documents."""

    modality: ClassVar[str] = "text"


class PythonStdlibSource(TextSourceConfig):
    """The running Python's standard library `.py` files: a real code corpus that ships with
    every Python (tens of MB)."""

    kind: Literal["python_stdlib"] = "python_stdlib"
    include: str = Field("**/*.py", description="glob relative to the standard library folder")
    max_files: int | None = Field(None, gt=0, description="the first N files in sorted order")

    def describe(self) -> dict[str, Any]:
        return describe_stdlib(self)

    def read(self) -> Any:
        return read_stdlib(self)


class TextFilesSource(TextSourceConfig):
    """UTF-8 text files matching a glob (any fsspec URI); one document per file."""

    kind: Literal["text_files"]
    path: str = Field(description="a glob such as data/**/*.md or s3://bucket/corpus/*.txt")
    chunk_mb: float = Field(4, gt=0, description="a larger file becomes documents of this size, cut at lines")

    def describe(self) -> dict[str, Any]:
        return describe_text_files(self)

    def read(self) -> Any:
        return read_text_files(self)


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
    return glob_files(source.path)


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


def read_stdlib(source: PythonStdlibSource) -> Dataset:
    root, files = stdlib_files(source)
    return _read_files([{"key": str(p.relative_to(root)), "path": str(p), "start": 0, "end": -1} for p in files], "")


def read_text_files(source: TextFilesSource) -> Dataset:
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


def _read_files(items: list[dict[str, Any]], prefix: str) -> Dataset:
    """One document per item (a whole file, or the lines of one of its chunks); `prefix` gives
    object-store paths their scheme back."""
    import ray.data

    def load(row: dict[str, Any]) -> dict[str, Any]:
        fs, path = filesystem(prefix + row["path"])
        try:
            with fs.open(path, "rb") as handle:
                return document(row["key"], read_lines_in(handle, int(row["start"]), int(row["end"])))
        except OSError as exc:
            return {"key": row["key"], "text": "", "error": f"unreadable: {type(exc).__name__}: {exc}"}

    return ray.data.from_items(items).map(load)


def read_parquet_text(path: str, column: str) -> Dataset:
    """One document per row of the Parquet files under `path`: the text in `column`."""
    import ray.data

    check_parquet_columns(path, {"text_column": column})
    fs, root = filesystem(path)
    dataset = ray.data.read_parquet(
        root, filesystem=None if "://" not in path else fs, columns=[column], include_paths=True
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
