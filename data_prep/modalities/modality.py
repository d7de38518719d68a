"""What every modality provides: a `Modality` is looked up by name (`registry.modality_named`).

`prepare()` asks it to build the shards; the pipeline asks it what a model takes from the data and
which files travel with a trained model. Nothing outside a modality's folder branches on its name.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel

from data_prep.columns import Columns
from data_prep.errors import DataError
from data_prep.manifest import MEGABYTE, Manifest
from data_prep.modalities.base import PrepSettings

if TYPE_CHECKING:
    import pyarrow as pa

Settings = TypeVar("Settings", bound=PrepSettings)
Details = TypeVar("Details", bound=BaseModel)


def details_of(manifest: Manifest, modality: str, details: type[Details]) -> Details:
    """A dataset's modality-specific `details` as the modality's model; a DataError when the
    dataset holds another modality."""
    if manifest.modality != modality:
        raise DataError(f"{manifest.uri}: a {manifest.modality} dataset, not {modality}")
    return details.model_validate(manifest.details)


class Modality(ABC, Generic[Settings]):
    """One kind of data, end to end on the data side."""

    name: ClassVar[str]
    settings: type[Settings]  # the `data:` fields it reads: only they enter its fingerprint
    # `model_inputs` made up, to check a config's model section before the data is known: sizes
    # any family of the modality accepts (the data's own are checked where the config tells them).
    placeholder_inputs: ClassVar[dict[str, Any]]

    @abstractmethod
    def build(self, config: Settings, storage: str, key: str, description: dict[str, Any]) -> Manifest:
        """Read the source, write the shards under `<storage>/datasets/<key>/` and publish the manifest."""

    @abstractmethod
    def decode(self, table: pa.Table, manifest: Manifest) -> Columns:
        """A shard's table -> the columns a model's batches hold (NumPy arrays, one row per sample)."""

    @abstractmethod
    def summary(self, manifest: Manifest) -> dict[str, Any]:
        """What the prepare step reports beyond rows and rejects (JSON-able)."""

    @abstractmethod
    def model_inputs(self, manifest: Manifest) -> dict[str, Any]:
        """What a model of this modality takes from the data (image shape, vocabulary, ...)."""

    @abstractmethod
    def row_bytes(self, manifest: Manifest) -> int:
        """One row as `decode` gives it to a model, in bytes: what sizes the device cache."""

    def decoded_mb(self, manifest: Manifest, split: str) -> float:
        return manifest.splits[split].rows * self.row_bytes(manifest) / MEGABYTE

    def model_files(self, manifest: Manifest) -> dict[str, str]:
        """Files a trained model needs beside its weights ({file name: URI}), e.g. a tokenizer."""
        return {}

    def tokens_per_row(self, manifest: Manifest) -> int | None:
        """Tokens a model reads per row, for tokens/s and MFU; None where rows are not tokens."""
        return None
