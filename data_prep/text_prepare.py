"""prepare for text: documents -> seeded split by document -> tokenizer (trained on a bounded,
seeded sample of the train split) -> token ids -> fixed-length blocks of seq_len + 1 tokens in
Parquet shards sized by bytes -> manifest.

Documents are concatenated with an end-of-text token between them and cut into blocks inside each
Ray Data batch; the tail of a batch that does not fill a block is dropped (at most seq_len tokens
per batch of documents) and the manifest records how many tokens the blocks hold.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

import numpy as np
from ray.data.expressions import col

from data_prep.config import DataConfig
from data_prep.errors import DataError
from data_prep.manifest import PREP_CODE_VERSION, Manifest, TextInfo, dataset_uri, publish
from data_prep.shards import new_write_id, record_rejects, shard_count, write_split
from data_prep.text_tokenizer import TOKENIZER_FILE, TextTokenizer, train_tokenizer
from data_prep.transforms import seeded_fraction, split_of
from storage import join, write_bytes_atomic

DOCUMENTS_PER_PACK = 256
TOKEN_DTYPE = "<i4"


def tokenize_batch(tokenizer_json: str):
    """A Ray Data batch function: text -> token ids (int32 bytes), token and UTF-8 byte counts."""

    def tokenize(batch: dict[str, np.ndarray]) -> dict[str, Any]:
        tokenizer = TextTokenizer.from_json(tokenizer_json)
        encoded = tokenizer.encode_batch([str(text) for text in batch["text"]])
        return {
            "split": batch["split"],
            "ids": [np.asarray(ids, dtype=TOKEN_DTYPE).tobytes() for ids in encoded],
            "n_tokens": np.array([len(ids) for ids in encoded], dtype=np.int64),
            "n_bytes": np.array([len(str(text).encode("utf-8")) for text in batch["text"]], dtype=np.int64),
        }

    return tokenize


def pack_batch(block_tokens: int, eot_id: int):
    """A Ray Data batch function: documents -> blocks of `block_tokens` consecutive tokens."""

    def pack(batch: dict[str, np.ndarray]) -> dict[str, list[bytes]]:
        eot = np.array([eot_id], dtype=TOKEN_DTYPE)
        stream = np.concatenate([part for ids in batch["ids"] for part in (np.frombuffer(ids, TOKEN_DTYPE), eot)])
        count = len(stream) // block_tokens
        blocks = stream[: count * block_tokens].reshape(count, block_tokens)
        return {"tokens": [block.tobytes() for block in blocks]}

    return pack


def tokenizer_sample(train: Any, sample_mb: float) -> tuple[float, dict[str, Any]]:
    """The draw threshold under which train documents make a sample of about `sample_mb` of text,
    and what the sample is (for the manifest). Documents are taken in their seeded draw order."""
    ordered = train.sort_values("draw")
    within = ordered[ordered["chars"].cumsum() <= sample_mb * 1e6]
    chosen = within if len(within) else ordered.head(1)  # one document, however large
    threshold = float(chosen["draw"].iloc[-1])
    return threshold, {"documents": len(chosen), "chars": int(chosen["chars"].sum()), "sample_mb": sample_mb}


def build_text(config: DataConfig, storage: str, key: str, description: dict[str, Any]) -> Manifest:
    uri, write_id = dataset_uri(storage, key), new_write_id()
    seed, fraction = config.split_seed, config.val_fraction

    def label(row: dict[str, Any]) -> dict[str, Any]:
        key = row["key"]
        split, draw = split_of(key, seed, fraction), seeded_fraction(key, seed, salt="tokenizer-sample")
        return {**row, "split": split, "chars": len(row["text"]), "draw": draw}

    documents = config.source.read().map(label).materialize()

    index = documents.select_columns(["key", "split", "error", "chars", "draw"]).to_pandas()
    rejects_uri = join(uri, write_id, "rejects", "rejects.jsonl")
    rejected = record_rejects(index, rejects_uri, config.max_reject_fraction)
    kept = index[index["error"] == ""]
    for split in ("train", "val"):
        if not (kept["split"] == split).any():
            raise DataError(f"data.val_fraction: the {split} split has no documents ({len(index)} in all)")
    usable = documents.filter(expr=col("error") == "")

    # The tokenizer learns from the train split only, so val measures what it has never seen, and
    # from a seeded sample of it: its cost and memory stay bounded however large the corpus is.
    threshold, sample = tokenizer_sample(kept[kept["split"] == "train"], config.tokenizer.sample_mb)
    train_texts = (
        row["text"] for row in usable.filter(expr=(col("split") == "train") & (col("draw") <= threshold)).iter_rows()
    )
    tokenizer = train_tokenizer(config.tokenizer, train_texts)
    tokenizer_json = tokenizer.to_json()
    tokenizer_path = f"{write_id}/{TOKENIZER_FILE}"
    write_bytes_atomic(join(uri, tokenizer_path), tokenizer_json.encode())

    encoded = usable.map_batches(tokenize_batch(tokenizer_json), batch_size=64, batch_format="numpy").materialize()
    counts = encoded.select_columns(["split", "n_tokens", "n_bytes"]).to_pandas().groupby("split").sum()
    block_tokens = config.seq_len + 1
    splits, in_blocks = {}, {}
    for split, override in (("train", config.num_shards), ("val", None)):
        shards = shard_count(int(counts.loc[split, "n_tokens"]) * 4, config.shard_mb, override)
        blocks = (
            encoded.filter(expr=col("split") == split)
            .map_batches(
                pack_batch(block_tokens, tokenizer.eot_id), batch_size=DOCUMENTS_PER_PACK, batch_format="numpy"
            )
            .repartition(shards)
        )
        splits[split] = write_split(blocks, uri, join(uri, write_id, split))
        if splits[split].rows == 0:
            raise DataError(
                f"data.seq_len: the {split} split has {int(counts.loc[split, 'n_tokens'])} tokens, "
                f"not enough for one block of seq_len + 1 = {block_tokens}"
            )
        in_blocks[split] = splits[split].rows * block_tokens

    documents_per_split = kept["split"].value_counts()
    text = TextInfo(
        seq_len=config.seq_len,
        vocab_size=tokenizer.vocab_size,
        eot_id=tokenizer.eot_id,
        tokenizer=tokenizer_path,
        tokenizer_sha256=hashlib.sha256(tokenizer_json.encode()).hexdigest(),
        documents={s: int(documents_per_split.get(s, 0)) for s in ("train", "val")},
        tokens={s: int(counts.loc[s, "n_tokens"]) for s in ("train", "val")},
        utf8_bytes={s: int(counts.loc[s, "n_bytes"]) for s in ("train", "val")},
        tokens_in_blocks=in_blocks,
        tokenizer_sample=sample if config.tokenizer.kind == "bpe" else None,
    )
    manifest = Manifest(
        fingerprint=key,
        uri=uri,
        code_version=PREP_CODE_VERSION,
        modality="text",
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        schema_={"tokens": f"binary (int32 little-endian x {block_tokens})"},
        splits=splits,
        rejects={"count": rejected, "uri": rejects_uri if rejected else None},
        text=text,
        source=description,
        prep_config=config.model_dump(mode="json"),
    )
    publish(manifest)
    return manifest
