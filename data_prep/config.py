"""What a dataset is made of: the `data:` section of a pipeline config.

It lives here, not in pipelines/, so that data_prep can be used (and tested) on its own. Each
source kind is a class that describes itself, reads its rows and names its classes; `SOURCES` is
the one registry of kinds. The readers are imported when used, so a config loads without Ray.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, ClassVar, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_prep.domains import DomainMap
from data_prep.images import DEFAULT_MAX_PIXELS
from data_prep.manifest import DomainInfo


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Strict):
    """A data source: what it is (for the fingerprint), its raw rows (a Ray Dataset), its classes."""

    kind: str  # each kind narrows it to its own literal: the union's discriminator

    modality: ClassVar[str] = "image"
    native_size: ClassVar[int | None] = None  # the images' side, when the source fixes it
    # Distinct intensities a pixel can take at the source (8-bit files: 256): what likelihood
    # models discretise to, and what their bits per dimension are counted against.
    native_levels: ClassVar[int] = 256

    @property
    def is_text(self) -> bool:
        return self.modality == "text"

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

    @property
    def domains(self) -> DomainInfo | None:
        """A translation dataset's two domains; None for one domain."""
        return None

    def describe(self) -> dict[str, Any]:
        """What the data is, cheaply: file names, sizes and stamps, never contents."""
        raise NotImplementedError

    def locations(self) -> dict[str, str]:
        """The paths or globs the source reads, by field: checked before anything starts."""
        path = getattr(self, "path", None)
        return {"path": path} if isinstance(path, str) else {}

    def read(self) -> Any:
        """The raw rows as a Ray Dataset: images as data_prep.sources.raw_row, text as documents."""
        raise NotImplementedError

    def class_names(self) -> list[str]:
        return []  # integer labels as they are


class DigitsSource(SourceConfig):
    """scikit-learn's 8x8 handwritten digits (1,797 images, ships with the package)."""

    kind: Literal["digits"] = "digits"
    native_size: ClassVar[int | None] = 8
    native_levels: ClassVar[int] = 17  # ink counts 0..16

    def describe(self) -> dict[str, Any]:
        import sklearn

        return {"kind": "digits", "sklearn": sklearn.__version__}

    def read(self) -> Any:
        from data_prep.sources import read_digits

        return read_digits()

    def class_names(self) -> list[str]:
        return [str(digit) for digit in range(10)]


class SampleImageCropsSource(SourceConfig):
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

    def read(self) -> Any:
        from data_prep.sources import read_sample_image_crops

        return read_sample_image_crops(self)

    def class_names(self) -> list[str]:
        return ["china", "flower"]


class ImageFolderSource(SourceConfig):
    """PNG/JPEG files under `path`; the label is the name of the image's subfolder."""

    kind: Literal["image_folder"]
    path: str
    channels: Literal[1, 3] = 1
    max_pixels: int = Field(DEFAULT_MAX_PIXELS, gt=0, description="larger images are rejects, never decoded")

    def describe(self) -> dict[str, Any]:
        from data_prep.sources import describe_files

        return describe_files(self)

    def read(self) -> Any:
        from data_prep.sources import read_image_folder

        return read_image_folder(self)

    def class_names(self) -> list[str]:
        from data_prep.sources import folder_class_names

        return folder_class_names(self)


class ParquetSource(SourceConfig):
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
    def is_text(self) -> bool:
        return self.text_column is not None

    def describe(self) -> dict[str, Any]:
        from data_prep.sources import describe_files

        return describe_files(self)  # listed and stamped alike for text and images

    def read(self) -> Any:
        if self.is_text:
            from data_prep.text_sources import read_parquet_text

            return read_parquet_text(self)
        from data_prep.sources import read_parquet_images

        return read_parquet_images(self)


class PythonStdlibSource(SourceConfig):
    """The running Python's standard library `.py` files: a real code corpus that ships with
    every Python (tens of MB)."""

    modality: ClassVar[str] = "text"
    kind: Literal["python_stdlib"] = "python_stdlib"
    include: str = Field("**/*.py", description="glob relative to the standard library folder")
    max_files: int | None = Field(None, gt=0, description="the first N files in sorted order")

    def describe(self) -> dict[str, Any]:
        from data_prep.text_sources import describe_stdlib

        return describe_stdlib(self)

    def read(self) -> Any:
        from data_prep.text_sources import read_stdlib

        return read_stdlib(self)


class TextFilesSource(SourceConfig):
    """UTF-8 text files matching a glob (any fsspec URI); one document per file."""

    modality: ClassVar[str] = "text"
    kind: Literal["text_files"]
    path: str = Field(description="a glob such as data/**/*.md or s3://bucket/corpus/*.txt")
    chunk_mb: float = Field(4, gt=0, description="a larger file becomes documents of this size, cut at lines")

    def describe(self) -> dict[str, Any]:
        from data_prep.text_sources import describe_text_files

        return describe_text_files(self)

    def read(self) -> Any:
        from data_prep.text_sources import read_text_files

        return read_text_files(self)


class SeriesSource(SourceConfig):
    """A time series: one column of numbers in time order. It is read whole on the driver (a
    series of millions of values is tens of MB), not through Ray Data."""

    modality: ClassVar[str] = "series"
    start: float | None = Field(None, description="the first time kept (inclusive)")
    end: float | None = Field(None, description="the last time kept (inclusive)")

    @model_validator(mode="after")
    def _range_in_order(self) -> SeriesSource:
        if self.start is not None and self.end is not None and self.start > self.end:
            raise ValueError(f"end: {self.end} is before start {self.start}")
        return self


class StatsmodelsSeriesSource(SeriesSource):
    """A series that ships with statsmodels: yearly sunspots (1700-2008), weekly CO2 at Mauna Loa
    (1958-2001, as decimal years) or a quarterly US macro series (1959-2009)."""

    kind: Literal["statsmodels"] = "statsmodels"
    dataset: Literal["sunspots", "co2", "macrodata"] = "sunspots"
    column: str | None = Field(None, description="default: SUNACTIVITY, co2 or realgdp")

    def describe(self) -> dict[str, Any]:
        import statsmodels

        return {**self.model_dump(mode="json"), "statsmodels": statsmodels.__version__}

    def read(self) -> Any:
        from data_prep.series_sources import read_statsmodels

        return read_statsmodels(self)


class SeriesFileSource(SeriesSource):
    """A numeric column of a CSV or Parquet file (any fsspec URI), optionally with a time column."""

    kind: Literal["series_file"]
    path: str = Field(description="a .csv or .parquet file, local or s3://...")
    column: str = Field(description="the values")
    time_column: str | None = Field(None, description="numeric times; default: the row number")

    def describe(self) -> dict[str, Any]:
        from data_prep.series_sources import describe_series_file

        return describe_series_file(self)

    def read(self) -> Any:
        from data_prep.series_sources import read_series_file

        return read_series_file(self)


ImageSource = Annotated[
    Union[DigitsSource, SampleImageCropsSource, ImageFolderSource, ParquetSource],  # noqa: UP007 (a discriminated union)
    Field(discriminator="kind"),
]


class DomainsSource(SourceConfig):
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
            raise ValueError("b: give domain b as a source (b) or as a map of a (b_from_a), one of them")
        for field, source in (("a", self.a), ("b", self.b)):
            if source is not None and source.is_text:
                raise ValueError(f"{field}: a domain holds images, not text")
        if self.b is not None and self.b.image_channels != self.a.image_channels:
            raise ValueError("b.channels: both domains need the same channels")
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
        from data_prep.domains import mapped_row, tag_domain

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


# The registry of source kinds: a new kind is one class above and one entry here.
SOURCES: tuple[type[SourceConfig], ...] = (
    DigitsSource,
    SampleImageCropsSource,
    ImageFolderSource,
    ParquetSource,
    PythonStdlibSource,
    TextFilesSource,
    DomainsSource,
    StatsmodelsSeriesSource,
    SeriesFileSource,
)
SOURCE_KINDS = frozenset(get_args(cls.model_fields["kind"].annotation)[0] for cls in SOURCES)
if TYPE_CHECKING:
    Source = SourceConfig
else:
    Source = Annotated[Union[SOURCES], Field(discriminator="kind")]  # noqa: UP007 (built from the registry)


class TokenizerConfig(Strict):
    kind: Literal["byte", "bpe"] = "byte"
    vocab_size: int = Field(4096, ge=300, le=65536, description="bpe only; byte is always 257")
    sample_mb: float = Field(
        256, gt=0, description="bpe only: learns its merges from a seeded sample of this much train text"
    )


class DataConfig(Strict):
    source: Source = Field(default_factory=DigitsSource)
    image_size: int | None = Field(None, gt=0, description="resize to a square of this size")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    shard_mb: float = Field(64, gt=0, description="train shards of at most this many MB (uncompressed)")
    num_shards: int | None = Field(None, gt=0, description="a fixed train shard count instead of shard_mb")
    max_reject_fraction: float = Field(0.01, ge=0, le=1)
    seq_len: int = Field(
        256, gt=0, description="text: tokens a model sees per block (+1 for the targets); series: values of context"
    )
    split_at: float | None = Field(
        None, description="series: the first time of the held-out tail (default: the last val_fraction)"
    )
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)

    @model_validator(mode="after")
    def _size_known(self) -> DataConfig:
        if self.image_size is None and self.source.image_side is None and self.modality == "image":
            raise ValueError("image_size: required for image_folder and parquet image sources")
        return self

    @property
    def modality(self) -> str:
        return "text" if self.source.is_text else self.source.modality
