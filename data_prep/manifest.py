"""manifest.json: the record that makes a dataset exist, and its verification before reading.

Shards are written by Ray Data into a fresh `<write_id>/` folder (its writes are neither atomic
nor idempotent); the manifest, written last and atomically, names the exact files to read. A
dataset folder without a manifest is an unfinished write and is never read.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ValidationError, model_validator

from data_prep.errors import DataError
from storage import exists, filesystem, join, read_bytes, read_json, write_json_atomic

log = logging.getLogger("genpipe.data")
HASH_CHECK_MAX_BYTES = 2 << 30

MANIFEST = "manifest.json"
# Bump when a change to data_prep alters the shards' content: it invalidates every cached dataset.
MEGABYTE = 1 << 20
PREP_CODE_VERSION = "5"  # 2: shards sized by bytes and hashed while written; BPE on a sample; 3: pixel levels;
# 4: Parquet record keys relative to the source root (the split no longer depends on the mount);
# 5: image pixels stored as uint8 (a quarter of float32's bytes)


class Shard(BaseModel):
    path: str  # relative to the dataset folder
    rows: int
    bytes: int
    sha256: str


class Split(BaseModel):
    rows: int
    shards: list[Shard]


class TextInfo(BaseModel):
    """What a text dataset's blocks are: the tokenizer and the counts bits-per-byte needs."""

    seq_len: int  # each block holds seq_len + 1 tokens (inputs and shifted targets)
    vocab_size: int
    eot_id: int
    tokenizer: str  # relative to the dataset folder
    tokenizer_sha256: str
    documents: dict[str, int]
    tokens: dict[str, int]  # every token of the split's documents
    utf8_bytes: dict[str, int]
    tokens_in_blocks: dict[str, int]  # what training sees; the tail of a pack does not fill a block
    tokenizer_sample: dict[str, Any] | None = None  # the train documents BPE learned from

    def bytes_per_token(self, split: str) -> float:
        return self.utf8_bytes[split] / max(1, self.tokens[split])


class DomainInfo(BaseModel):
    """A translation dataset's two domains (rows carry `domain`: 0 is names[0])."""

    names: tuple[str, str]
    b_from_a: str | None = None  # the known map from A to B, when B was made from A


class SeriesInfo(BaseModel):
    """A time-series dataset: windows of seq_len + 1 normalised values, the normaliser, and the
    whole kept series (series.parquet: time, value, split) for plots and forecasts."""

    name: str
    seq_len: int  # context values per window; the last value of a window is its target
    mean: float  # of the train values: windows hold (value - mean) / std
    std: float
    split_index: int  # the first held-out value's position in the series
    split_time: float
    values: dict[str, int]  # values per split
    criterion_lags: dict[str, int]  # the AR order AIC and BIC pick on the train values
    last_values: list[float]  # the series' last seq_len values, normalised: where forecasts start
    series: str  # relative to the dataset folder
    series_sha256: str


class Manifest(BaseModel):
    fingerprint: str
    uri: str  # the dataset folder
    code_version: str
    created_at: str
    modality: str = "image"
    image_shape: tuple[int, int, int] | None = None
    pixel_levels: int = 256  # distinct intensities per pixel at the source (digits: 17)
    # The grid of the shards' uint8 pixels (data_prep/images.stored_levels); None: a dataset of
    # PREP_CODE_VERSION 4 or older, float32 pixels in [-1, 1] (a workflow prepared before resumes).
    stored_levels: int | None = None
    num_classes: int = 0
    class_names: list[str] = []
    text: TextInfo | None = None
    domains: DomainInfo | None = None
    series: SeriesInfo | None = None
    # A modality's own description of its data, read by its modality with its own pydantic class
    # (the built-in modalities keep theirs in the typed fields above).
    details: dict[str, Any] = {}
    # Files beside the shards that reading the dataset needs ({path in the dataset folder: sha256}):
    # a tokenizer, a series table. Checked with the shards (`damage`).
    side_files: dict[str, str] = {}
    schema_: dict[str, str]
    splits: dict[str, Split]
    rejects: dict[str, Any]
    source: dict[str, Any]
    prep_config: dict[str, Any]

    @model_validator(mode="before")
    @classmethod
    def _side_files_of_older_manifests(cls, raw: Any) -> Any:
        """A manifest written before `side_files` existed names its tokenizer or series file in its
        text or series info: listed here, so every dataset's side files are checked alike."""
        if not isinstance(raw, dict) or "side_files" in raw:
            return raw
        side = {}
        if isinstance(raw.get("text"), dict):
            side[raw["text"]["tokenizer"]] = raw["text"]["tokenizer_sha256"]
        if isinstance(raw.get("series"), dict):
            side[raw["series"]["series"]] = raw["series"]["series_sha256"]
        return {**raw, "side_files": side}

    @property
    def images(self) -> tuple[int, int, int]:
        """The images' (channels, height, width); a DataError for a text or series dataset."""
        if self.image_shape is None:
            raise DataError(f"{self.uri}: a {self.modality} dataset has no image shape")
        return self.image_shape

    @property
    def tokens(self) -> TextInfo:
        """The token blocks' description; a DataError for an image dataset."""
        if self.text is None:
            raise DataError(f"{self.uri}: an image dataset has no tokens")
        return self.text

    @property
    def tokenizer_uri(self) -> str:
        if self.text is None:
            raise DataError(f"{self.uri}: an image dataset has no tokenizer")
        return join(self.uri, self.text.tokenizer)

    def shard_uris(self, split: str) -> list[str]:
        return [join(self.uri, shard.path) for shard in self.splits[split].shards]


def dataset_uri(storage: str, fingerprint: str) -> str:
    return join(storage, "datasets", fingerprint)


def publish(manifest: Manifest) -> None:
    write_json_atomic(join(manifest.uri, MANIFEST), manifest.model_dump(mode="json"))


def publish_new(
    key: str,
    uri: str,
    description: dict[str, Any],
    prep_config: dict[str, Any],
    splits: dict[str, Split],
    rejected: int,
    rejects_uri: str,
    **described: Any,
) -> Manifest:
    """A dataset just built, published (its manifest written last): what every build records, and
    the modality's own fields in `described` (its schema, its info, its side files)."""
    manifest = Manifest(
        fingerprint=key,
        uri=uri,
        code_version=PREP_CODE_VERSION,
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        splits=splits,
        rejects={"count": rejected, "uri": rejects_uri if rejected else None},
        source=description,
        prep_config=prep_config,
        **described,
    )
    publish(manifest)
    return manifest


def read_manifest(folder: str) -> Manifest:
    """The manifest in the dataset `folder`, located where it was found, not where it was written:
    a storage copied or synced elsewhere (a folder to S3, one node's disk to another's) keeps its
    datasets."""
    return Manifest.model_validate(read_json(join(folder, MANIFEST))).model_copy(update={"uri": folder.rstrip("/")})


def find_manifest(storage: str, fingerprint: str) -> Manifest | None:
    """The cached dataset of `fingerprint` when it is whole; None when there is none, or when it
    is damaged: then its manifest is set aside (`manifest.damaged-<time>.json`, with the reason)
    so the dataset is prepared again rather than failing every later run in train."""
    folder = dataset_uri(storage, fingerprint)
    uri = join(folder, MANIFEST)
    if not exists(uri):
        return None
    try:
        manifest = read_manifest(folder)
        problem = damage(manifest)
    except (ValueError, ValidationError) as exc:  # not JSON, or not a manifest
        manifest, problem = None, f"{uri}: unreadable manifest ({type(exc).__name__})"
    if problem is None:
        return manifest
    log.warning("cached dataset %s is damaged, preparing it again: %s", fingerprint, problem)
    fs, path = filesystem(uri)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    write_json_atomic(join(dataset_uri(storage, fingerprint), f"manifest.damaged-{stamp}.json"), {"reason": problem})
    fs.rm_file(path)
    return None


def damage(manifest: Manifest) -> str | None:
    """Why a dataset cannot be used, or None: a shard missing or resized, and (for datasets up to
    HASH_CHECK_MAX_BYTES, which a cache hit can afford to read) a shard or tokenizer whose sha256
    is not the manifest's."""
    try:
        load_verified(manifest.uri)
    except DataError as exc:
        return str(exc)
    files = [
        (join(manifest.uri, shard.path), shard.sha256) for split in manifest.splits.values() for shard in split.shards
    ]
    files += [(join(manifest.uri, path), sha256) for path, sha256 in manifest.side_files.items()]
    if sum(shard.bytes for split in manifest.splits.values() for shard in split.shards) > HASH_CHECK_MAX_BYTES:
        return None  # each shard is still checked as it is read (data_prep/readers.py)
    for uri, expected in files:
        try:
            digest = hashlib.sha256(read_bytes(uri)).hexdigest()
        except FileNotFoundError:
            return f"{uri}: missing"
        if digest != expected:
            return f"{uri}: sha256 {digest[:12]}..., the manifest says {expected[:12]}..."
    return None


def load_verified(uri: str) -> Manifest:
    """The manifest of the dataset at `uri`, after checking every shard is there at its size.

    Sizes, not hashes: cheap enough to run before every training, and they catch the common
    faults (a missing, truncated or replaced file); each shard's sha256 is checked as it is read
    (data_prep/readers.py).
    """
    manifest_uri = join(uri, MANIFEST)
    if not exists(manifest_uri):
        raise DataError(f"{manifest_uri}: no manifest; the dataset was never (fully) prepared")
    manifest = read_manifest(uri)
    fs, root = filesystem(uri)
    # One listing of the dataset folder rather than a stat per shard: on S3 a paginated LIST of
    # 1,000 keys a request instead of one HEAD per shard (~15,000 for a 1 TB corpus).
    sizes = {path.rstrip("/"): info.get("size") for path, info in fs.find(root, detail=True).items()}
    for split in manifest.splits:
        for shard, shard_uri in zip(manifest.splits[split].shards, manifest.shard_uris(split), strict=True):
            size = sizes.get(filesystem(shard_uri)[1].rstrip("/"))
            if size is None:
                raise DataError(f"{shard_uri}: shard listed in the manifest is missing")
            if size != shard.bytes:
                raise DataError(f"{shard_uri}: {size} bytes, the manifest says {shard.bytes}")
    return manifest
