"""The bases of every modality's configs: a source (what a `data.source` describes, reads and
names) and the prep settings (the `data:` fields that shape its shards).

`data_prep.config.DataConfig` is every modality's settings in one section, so a builder takes
its own modality's settings class and never the section that is composed of them."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from data_prep.manifest import DomainInfo


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceConfig(Strict):
    """A data source: what it is (for the fingerprint), its raw rows, its classes."""

    kind: str  # each kind narrows it to its own literal: the union's discriminator
    modality: ClassVar[str]  # the registry's name of the data it reads

    @property
    def modality_name(self) -> str:
        """The modality of this source's data: the class's, unless a field chooses it (Parquet)."""
        return self.modality

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
        """The raw rows its modality's builder takes (a Ray Dataset of images or documents, a series)."""
        raise NotImplementedError

    def expected_records(self, description: dict[str, Any]) -> int | None:
        """How many records `read` yields, where the description tells it without reading (a
        file a record); None when only reading tells (for the console's ETA)."""
        files = description.get("files")
        return len(files) if isinstance(files, list) else files if isinstance(files, int) else None

    def class_names(self) -> list[str]:
        return []  # integer labels as they are


class PrepSettings(Strict):
    """What every modality's shards are shaped by: the split and the shard size. Each modality
    subclasses it with its own fields; only they enter its datasets' fingerprint, so an image
    dataset's does not change when a text-only default does."""

    source: SourceConfig
    val_fraction: float = Field(0.2, gt=0, lt=1)
    shard_mb: float = Field(64, gt=0, description="train shards of at most this many MB (uncompressed)")
    num_shards: int | None = Field(None, gt=0, description="a fixed train shard count instead of shard_mb")
    max_reject_fraction: float = Field(0.01, ge=0, le=1)

    @property
    def modality(self) -> str:
        """The registry's name of the data (data_prep/modalities/registry.py)."""
        return self.source.modality_name

    @classmethod
    def shaping_fields(cls) -> frozenset[str]:
        """The fields that change the shards (the source is described on its own; the reject limit
        only decides whether a build is accepted)."""
        return frozenset(cls.model_fields) - {"source", "max_reject_fraction"}


class SequencePrep(PrepSettings):
    """The settings of a modality whose rows are windows of a sequence (text blocks, series windows)."""

    seq_len: int = Field(
        256, gt=0, description="text: tokens a model sees per block (+1 for the targets); series: values of context"
    )
