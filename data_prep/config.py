"""What a dataset is made of: the `data:` section of a pipeline config.

It lives here, not in pipelines/, so that data_prep can be used (and tested) on its own.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DigitsSource(Strict):
    """scikit-learn's 8x8 handwritten digits (1,797 images, ships with the package)."""

    kind: Literal["digits"] = "digits"


class ImageFolderSource(Strict):
    """PNG/JPEG files under `path`; the label is the name of the image's subfolder."""

    kind: Literal["image_folder"]
    path: str
    channels: Literal[1, 3] = 1


class ParquetSource(Strict):
    """Parquet files with encoded images (PNG/JPEG bytes) and an optional label column, or,
    with `text_column` set, one text document per row."""

    kind: Literal["parquet"]
    path: str
    image_column: str = "image"
    label_column: str | None = "label"
    text_column: str | None = Field(None, description="makes this a text source")
    channels: Literal[1, 3] = 1


class PythonStdlibSource(Strict):
    """The running Python's standard library `.py` files: a real code corpus that ships with
    every Python (tens of MB)."""

    kind: Literal["python_stdlib"] = "python_stdlib"
    include: str = Field("**/*.py", description="glob relative to the standard library folder")
    max_files: int | None = Field(None, gt=0, description="the first N files in sorted order")


class TextFilesSource(Strict):
    """UTF-8 text files matching a glob (any fsspec URI); one document per file."""

    kind: Literal["text_files"]
    path: str = Field(description="a glob such as data/**/*.md or s3://bucket/corpus/*.txt")


Source = Annotated[DigitsSource | ImageFolderSource | ParquetSource | PythonStdlibSource | TextFilesSource,
                   Field(discriminator="kind")]


class TokenizerConfig(Strict):
    kind: Literal["byte", "bpe"] = "byte"
    vocab_size: int = Field(4096, ge=300, le=65536, description="bpe only; byte is always 257")


def is_text(source: DigitsSource | ImageFolderSource | ParquetSource | PythonStdlibSource | TextFilesSource) -> bool:
    return isinstance(source, PythonStdlibSource | TextFilesSource) or (
        isinstance(source, ParquetSource) and source.text_column is not None)


class DataConfig(Strict):
    source: Source = Field(default_factory=DigitsSource)
    image_size: int | None = Field(None, gt=0, description="resize to a square of this size")
    val_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = 0
    num_shards: int = Field(2, gt=0)
    max_reject_fraction: float = Field(0.01, ge=0, le=1)
    seq_len: int = Field(256, gt=0, description="text: tokens a model sees per block (+1 for the targets)")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)

    @model_validator(mode="after")
    def _size_known(self) -> DataConfig:
        if self.image_size is None and self.source.kind != "digits" and not is_text(self.source):
            raise ValueError("image_size: required for image_folder and parquet image sources")
        return self

    @property
    def modality(self) -> str:
        return "text" if is_text(self.source) else "image"
