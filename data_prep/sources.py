"""Image sources' readers: what each kind in data_prep.config reads, as a Ray Dataset of raw rows.

A raw row is `{key, label, pixels, height, width, error}`: `pixels` are float32 (C, H, W) bytes in
[0, 1] and `error` is "" or the reason the record cannot be used (it becomes a reject, not a
crash).
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import ray.data
from fsspec.implementations.local import LocalFileSystem

from data_prep.errors import DataError
from data_prep.images import ImageRejected, decode_image, to_bytes
from storage import filesystem

if TYPE_CHECKING:  # the source classes call in here; only their types are needed
    from data_prep.config import ImageFolderSource, ParquetSource, SampleImageCropsSource

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


def describe_files(source: ImageFolderSource | ParquetSource) -> dict[str, Any]:
    """A file source's config with every file's name, size and modification stamp."""
    fs, root = filesystem(source.path)
    return {**source.model_dump(), "files": file_stamps(fs, root, _list_files(source))}


def file_stamps(fs, root: str, paths: list[str]) -> list[list[Any]]:
    """[relative path, size, modification stamp] per file: changes when any file does."""
    files = []
    for path in paths:
        info = fs.info(path)
        stamp = info.get("mtime") or info.get("LastModified") or info.get("ETag") or ""
        files.append([posixpath.relpath(path, root), info.get("size"), str(stamp)])
    return files


def folder_class_names(source: ImageFolderSource) -> list[str]:
    """The subfolders that hold images, sorted: label i is the i-th."""
    _, root = filesystem(source.path)
    return sorted({posixpath.relpath(p, root).split("/")[0] for p in _list_files(source)})


def _list_files(source: ImageFolderSource | ParquetSource) -> list[str]:
    fs, root = filesystem(source.path)
    if not fs.exists(root):
        raise DataError(f"data.source.path: {source.path} does not exist")
    by_folder = source.kind == "image_folder"
    suffixes = IMAGE_SUFFIXES if by_folder else (".parquet",)
    found = [root] if fs.isfile(root) else sorted(p for p in fs.find(root) if p.lower().endswith(suffixes))
    if by_folder:
        found = [p for p in found if "/" in posixpath.relpath(p, root)]  # labelled by a subfolder
    if not found:
        kinds = "/".join(suffixes)
        raise DataError(f"data.source.path: no {kinds} files under {source.path}")
    return found


def raw_row(key: str, label: int, pixels: np.ndarray | None, error: str = "") -> dict[str, Any]:
    height, width = pixels.shape[1:] if pixels is not None else (0, 0)
    return {
        "key": key,
        "label": label,
        "pixels": b"" if pixels is None else to_bytes(pixels),
        "height": height,
        "width": width,
        "error": error,
    }


def read_digits() -> ray.data.Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    return _in_memory_rows("digits", images, digits.target)


def read_sample_image_crops(source: SampleImageCropsSource) -> ray.data.Dataset:
    from sklearn.datasets import load_sample_images

    photos = [np.asarray(image, dtype=np.float32) / 255.0 for image in load_sample_images().images]
    rng = np.random.default_rng(source.seed)
    labels = rng.integers(0, len(photos), source.count)
    crops = []
    for label in labels:
        photo = photos[label]
        top = rng.integers(0, photo.shape[0] - source.crop + 1)
        left = rng.integers(0, photo.shape[1] - source.crop + 1)
        crops.append(photo[top : top + source.crop, left : left + source.crop].transpose(2, 0, 1))
    images = np.stack(crops)
    if source.channels == 1:  # luma as PIL's "L" mode computes it (ITU-R 601-2)
        images = np.tensordot(np.array([0.299, 0.587, 0.114], np.float32), images, axes=([0], [1]))[:, None]
    return _in_memory_rows("crops", images, labels)


def _in_memory_rows(prefix: str, images: np.ndarray, labels: np.ndarray) -> ray.data.Dataset:
    """Raw rows of images (N, C, H, W) in [0, 1] held in memory (a dataset that ships with a package)."""
    height, width = images.shape[2:]
    table = pa.table(
        {
            "key": [f"{prefix}/{i}" for i in range(len(images))],
            "label": labels.astype(np.int64),
            "pixels": [to_bytes(image) for image in images],
            "height": [height] * len(images),
            "width": [width] * len(images),
            "error": [""] * len(images),
        }
    )
    return ray.data.from_arrow(table)


def read_image_folder(source: ImageFolderSource) -> ray.data.Dataset:
    fs, root = filesystem(source.path)
    names = folder_class_names(source)
    items = []
    for path in _list_files(source):
        relative = posixpath.relpath(path, root)
        items.append({"key": relative, "path": path, "label": names.index(relative.split("/")[0])})
    uri_prefix = source.path.split("://")[0] + "://" if "://" in source.path else ""
    real_root = os.path.realpath(root) if isinstance(fs, LocalFileSystem) else None

    def load(row: dict[str, Any]) -> dict[str, Any]:
        if real_root is not None and not _inside(os.path.realpath(row["path"]), real_root):
            return raw_row(row["key"], row["label"], None, "a symlink that leads outside data.source.path")
        fs, _ = filesystem(uri_prefix + row["path"])
        try:
            with fs.open(row["path"], "rb") as handle:
                decoded = decode_image(handle.read(), source.channels, source.max_pixels)
        except ImageRejected as exc:
            return raw_row(row["key"], row["label"], None, f"image refused: {exc}")
        except Exception as exc:  # any unreadable file is a reject, with its reason
            return raw_row(row["key"], row["label"], None, f"unreadable image: {type(exc).__name__}: {exc}")
        return raw_row(row["key"], row["label"], decoded)

    return ray.data.from_items(items).map(load)


def _inside(path: str, root: str) -> bool:
    return os.path.commonpath([path, root]) == root


def check_parquet_columns(source: ParquetSource, columns: list[str]) -> None:
    """Every Parquet file has the columns the config names: a missing one is a DataError naming
    the field, the column and the file, before any task runs."""
    fs, _ = filesystem(source.path)
    for path in _list_files(source):
        with fs.open(path, "rb") as handle:
            names = pq.ParquetFile(handle).schema_arrow.names
        for column in columns:
            if column not in names:
                field = {source.text_column: "text_column", source.label_column: "label_column"}.get(
                    column, "image_column"
                )
                raise DataError(f"data.source.{field}: {path} has no column {column!r} (it has {', '.join(names)})")


def parquet_record_key(path: str, root: str, digest: str) -> str:
    """A Parquet record's key: its file relative to the source root, and its content's digest. Not
    the absolute path, so a record keeps its split when the data moves (another mount, a copy to S3)."""
    relative = path[len(root) :].lstrip("/") if path.startswith(root) else path
    return f"{relative or posixpath.basename(path)}#{digest}"


def _label(value: Any, source: ParquetSource) -> int:
    """A label cell as a class index; a ValueError says why it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"label column {source.label_column!r} holds {type(value).__name__} {value!r}, not a class")
    if not 0 <= int(value) < source.max_classes:
        raise ValueError(f"label {value} is outside [0, data.source.max_classes={source.max_classes})")
    return int(value)


def read_parquet_images(source: ParquetSource) -> ray.data.Dataset:
    columns = [source.image_column] + ([source.label_column] if source.label_column else [])
    check_parquet_columns(source, columns)
    dataset = ray.data.read_parquet(source.path, columns=columns, include_paths=True)
    _, root = filesystem(source.path)

    def load(row: dict[str, Any]) -> dict[str, Any]:
        data = row[source.image_column]
        digest = hashlib.sha1(data if isinstance(data, bytes) else repr(data).encode()).hexdigest()
        key = parquet_record_key(row["path"], root, digest)
        try:
            label = _label(row[source.label_column], source) if source.label_column else -1
            return raw_row(key, label, decode_image(data, source.channels, source.max_pixels))
        except ImageRejected as exc:
            return raw_row(key, -1, None, f"image column {source.image_column!r} refused: {exc}")
        except Exception as exc:  # a bad record is a reject, with its reason
            return raw_row(key, -1, None, f"unreadable record: {type(exc).__name__}: {exc}")

    return dataset.map(load)
