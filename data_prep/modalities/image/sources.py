"""Image sources: each kind's config (a `data.source` of the image modality) and how it reads its
records, as a Ray Dataset of raw rows.

A raw row is `{key, label, pixels, height, width, error}`: `pixels` are float32 (C, H, W) bytes in
[0, 1] and `error` is "" or the reason the record cannot be used (it becomes a reject, not a
crash). Ray is imported when a source is read, so a config loads without it.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union

import numpy as np
import pyarrow as pa
from fsspec.implementations.local import LocalFileSystem
from pydantic import Field, model_validator

from data_prep.domains import DomainMap, mapped_row, tag_domain
from data_prep.files import check_parquet_columns, describe_files, list_files, parquet_record_key
from data_prep.images import DEFAULT_MAX_PIXELS, ImageRejected, decode_image, to_bytes
from data_prep.manifest import DomainInfo
from data_prep.modalities.base import SourceConfig
from data_prep.modalities.text.sources import TextSourceConfig, read_parquet_text
from storage import filesystem
from typed_errors import FieldError

if TYPE_CHECKING:
    from ray.data import Dataset


class ImageSourceConfig(SourceConfig):
    """A source of images: their channels, their side when the source fixes it, their levels."""

    modality: ClassVar[str] = "image"
    native_size: ClassVar[int | None] = None  # the images' side, when the source fixes it
    # Distinct intensities a pixel can take at the source (8-bit files: 256): what likelihood
    # models discretise to, and what their bits per dimension are counted against.
    native_levels: ClassVar[int] = 256

    @property
    def image_channels(self) -> int:
        return int(getattr(self, "channels", 1))

    @property
    def image_side(self) -> int | None:
        """The images' side when the source fixes it (digits: 8), else None."""
        return self.native_size

    @property
    def pixel_levels(self) -> int:
        return self.native_levels


class DigitsSource(ImageSourceConfig):
    """scikit-learn's 8x8 handwritten digits (1,797 images, ships with the package)."""

    kind: Literal["digits"] = "digits"
    native_size: ClassVar[int | None] = 8
    native_levels: ClassVar[int] = 17  # ink counts 0..16

    def describe(self) -> dict[str, Any]:
        import sklearn

        return {"kind": "digits", "sklearn": sklearn.__version__}

    def read(self) -> Any:
        return read_digits()

    def class_names(self) -> list[str]:
        return [str(digit) for digit in range(10)]


class SampleImageCropsSource(ImageSourceConfig):
    """Random square crops of scikit-learn's two sample photographs (china.jpg and flower.jpg,
    427x640 RGB, shipped with the package): a small colour dataset for 16-64 px models, labelled by
    the photograph each crop comes from."""

    kind: Literal["sample_image_crops"]
    crop: int = Field(32, ge=4, le=427, description="the crops' side in pixels")
    count: int = Field(2000, gt=0, le=100_000)
    seed: int = 0
    channels: Literal[1, 3] = 3

    @property
    def image_side(self) -> int | None:
        return self.crop

    def describe(self) -> dict[str, Any]:
        import sklearn

        return {**self.model_dump(), "sklearn": sklearn.__version__}

    def expected_records(self, description: dict[str, Any]) -> int | None:
        return self.count

    def read(self) -> Any:
        return read_sample_image_crops(self)

    def class_names(self) -> list[str]:
        return ["china", "flower"]


class ImageFolderSource(ImageSourceConfig):
    """PNG/JPEG files under `path`; the label is the name of the image's subfolder."""

    kind: Literal["image_folder"]
    path: str
    channels: Literal[1, 3] = 1
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="larger images are rejects, never decoded")

    def describe(self) -> dict[str, Any]:
        return describe_files(self.model_dump(), self.path, by_folder=True)

    def read(self) -> Any:
        return read_image_folder(self)

    def class_names(self) -> list[str]:
        _, root = filesystem(self.path)  # the subfolders that hold images, sorted: label i is the i-th
        return sorted({posixpath.relpath(p, root).split("/")[0] for p in list_files(self.path, by_folder=True)})


class ParquetSource(ImageSourceConfig):
    """Parquet files with encoded images (PNG/JPEG bytes) and an optional label column, or,
    with `text_column` set, one text document per row."""

    kind: Literal["parquet"]
    path: str
    image_column: str = "image"
    label_column: str | None = "label"
    text_column: str | None = Field(None, description="makes this a text source")
    channels: Literal[1, 3] = 1
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="larger images are rejects, never decoded")
    max_classes: int = Field(1000, gt=0, description="a label outside [0, max_classes) is a reject")

    @property
    def modality_name(self) -> str:
        return "image" if self.text_column is None else TextSourceConfig.modality

    def describe(self) -> dict[str, Any]:
        return describe_files(self.model_dump(), self.path, by_folder=False)  # alike for text and images

    def expected_records(self, description: dict[str, Any]) -> int | None:
        return None  # rows, not files: only the files' footers tell

    def read(self) -> Any:
        if self.text_column is not None:
            return read_parquet_text(self.path, self.text_column)
        return read_parquet_images(self)


ImageSource = Annotated[
    Union[DigitsSource, SampleImageCropsSource, ImageFolderSource, ParquetSource],  # noqa: UP007 (a discriminated union)
    Field(discriminator="kind"),
]


class DomainsSource(ImageSourceConfig):
    """Two image domains for unpaired translation (data_prep/domains.py): `a` and `b`, two image
    sources, or `a` alone with `b_from_a`, a known map that turns half of a's records into B."""

    kind: Literal["domains"]
    a: ImageSource
    b: ImageSource | None = None
    b_from_a: DomainMap | None = Field(None, description="invert, rotate90 or flip: B is A's images under it")
    names: tuple[str, str] = Field(("a", "b"), description="the domains' names, as samples and metrics show them")

    @model_validator(mode="after")
    def _one_way_to_b(self) -> DomainsSource:
        if (self.b is None) == (self.b_from_a is None):
            raise FieldError("b", "give domain b as a source (b) or as a map of a (b_from_a), one of them")
        for field, source in (("a", self.a), ("b", self.b)):
            if source is not None and source.modality_name != "image":
                raise FieldError(f"{field}", "a domain holds images, not text")
        if self.b is not None and self.b.image_channels != self.a.image_channels:
            raise FieldError("b.channels", "both domains need the same channels")
        return self

    @property
    def image_channels(self) -> int:
        return self.a.image_channels

    @property
    def pixel_levels(self) -> int:
        return max(self.a.pixel_levels, self.b.pixel_levels if self.b is not None else 0)

    @property
    def image_side(self) -> int | None:
        """The side both domains fix (digits, and a map of them); None when they differ."""
        sides = {self.a.image_side, self.a.image_side if self.b is None else self.b.image_side}
        return sides.pop() if len(sides) == 1 else None

    @property
    def domains(self) -> DomainInfo | None:
        return DomainInfo(names=self.names, b_from_a=self.b_from_a)

    def locations(self) -> dict[str, str]:
        sides = {"a": self.a, "b": self.b}
        return {
            f"{side}.{field}": uri
            for side, source in sides.items()
            if source
            for field, uri in source.locations().items()
        }

    def describe(self) -> dict[str, Any]:
        b = {"b": self.b.describe()} if self.b is not None else {"b_from_a": self.b_from_a}
        return {"kind": "domains", "a": self.a.describe(), **b, "names": list(self.names)}

    def read(self) -> Any:
        if self.b is None:
            name = str(self.b_from_a)
            return self.a.read().map(lambda row: mapped_row(row, name, seed=0))
        a_rows = self.a.read().map(lambda row: tag_domain(row, 0))
        return a_rows.union(self.b.read().map(lambda row: tag_domain(row, 1)))

    def class_names(self) -> list[str]:
        """Class names shared by both domains (a map of one source shares them); else the
        integer labels as they are."""
        names = self.a.class_names()
        return names if self.b is None or self.b.class_names() == names else []


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


def read_digits() -> Dataset:
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = (digits.images / 16.0).astype(np.float32)[:, None]  # (N, 1, 8, 8) in [0, 1]
    return _in_memory_rows("digits", images, digits.target)


def read_sample_image_crops(source: SampleImageCropsSource) -> Dataset:
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


def _in_memory_rows(prefix: str, images: np.ndarray, labels: np.ndarray) -> Dataset:
    """Raw rows of images (N, C, H, W) in [0, 1] held in memory (a dataset that ships with a package)."""
    import ray.data

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


def read_image_folder(source: ImageFolderSource) -> Dataset:
    import ray.data

    fs, root = filesystem(source.path)
    names = source.class_names()
    items = []
    for path in list_files(source.path, by_folder=True):
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


def _label(value: Any, source: ParquetSource) -> int:
    """A label cell as a class index; a ValueError says why it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise ValueError(f"label column {source.label_column!r} holds {type(value).__name__} {value!r}, not a class")
    if not 0 <= int(value) < source.max_classes:
        raise ValueError(f"label {value} is outside [0, data.source.max_classes={source.max_classes})")
    return int(value)


def read_parquet_images(source: ParquetSource) -> Dataset:
    import ray.data

    columns = [source.image_column] + ([source.label_column] if source.label_column else [])
    check_parquet_columns(
        source.path,
        {"image_column": source.image_column, **({"label_column": source.label_column} if source.label_column else {})},
    )
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
