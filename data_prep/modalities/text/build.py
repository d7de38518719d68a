"""prepare for text: documents -> seeded split by document -> tokenizer (trained on a bounded,
seeded sample of the train split) -> token ids -> fixed-length blocks of seq_len + 1 tokens in
Parquet shards sized by bytes -> manifest.

Documents are tokenized, concatenated with an end-of-text token between them and cut into blocks
inside each Ray Data batch, and the blocks stream into shards (no split's ids are held whole); the
documents themselves are read from the source by each pass instead of being held.
The tail of a batch that does not fill a block is dropped (at most seq_len tokens per batch of
documents) and the manifest records how many tokens the blocks hold.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import ray.data
from ray.data.expressions import col

from data_prep.blocks import pack_blocks
from data_prep.errors import DataError
from data_prep.manifest import Manifest, TextInfo, dataset_uri, publish_new
from data_prep.modalities.text.settings import TextPrep
from data_prep.progress import counting, say
from data_prep.shards import new_write_id, record_rejects, write_split
from data_prep.text_tokenizer import TOKENIZER_FILE, TextTokenizer, train_tokenizer
from data_prep.transforms import seeded_fraction, split_of
from storage import join, write_bytes_atomic

# Documents tokenized and packed per Ray Data batch: a batch's ids are 4 bytes per token, so with
# documents of up to `chunk_mb` a batch stays in the hundreds of MB.
DOCUMENTS_PER_PACK = 16
SPLITS = ("train", "val")


def _texts(batch: pa.Table, split: str | None = None) -> list[str]:
    """The batch's usable documents (of `split`, when given): filtered here, inside the batch
    function, rather than by a Ray Data filter stage of its own."""
    keep = pc.equal(batch["error"], "")
    if split is not None:
        keep = pc.and_(keep, pc.equal(batch["split"], split))
    return batch.filter(keep).column("text").to_pylist()


def count_tokens(tokenizer_json: str):
    """A Ray Data batch function: the token count of each split's documents (ids are not kept)."""

    def count(batch: pa.Table) -> pa.Table:
        tokenizer = TextTokenizer.from_json(tokenizer_json)
        counts = {split: sum(len(ids) for ids in tokenizer.encode_batch(_texts(batch, split))) for split in SPLITS}
        return pa.table({"split": list(counts), "n_tokens": list(counts.values())})

    return count


def encode_and_pack(tokenizer_json: str, block_tokens: int, split: str):
    """A Ray Data batch function: the split's documents -> their ids, an end-of-text id after
    each, cut into blocks of `block_tokens` consecutive tokens (data_prep/blocks.py)."""

    def pack(batch: pa.Table) -> pa.Table:
        tokenizer = TextTokenizer.from_json(tokenizer_json)
        return pack_blocks(tokenizer.encode_batch(_texts(batch, split)), tokenizer.eot_id, block_tokens)

    return pack


def tokenizer_sample(train: Any, sample_mb: float) -> tuple[float, dict[str, Any]]:
    """The draw threshold under which train documents make a sample of about `sample_mb` of text,
    and what the sample is (for the manifest). Documents are taken in their seeded draw order."""
    ordered = train.sort_values("draw")
    within = ordered[ordered["n_bytes"].cumsum() <= sample_mb * 1e6]
    chosen = within if len(within) else ordered.head(1)  # one document, however large
    threshold = float(chosen["draw"].iloc[-1])
    return threshold, {"documents": len(chosen), "utf8_bytes": int(chosen["n_bytes"].sum()), "sample_mb": sample_mb}


def build_text(config: TextPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
    uri, write_id = dataset_uri(storage, key), new_write_id()
    seed, fraction = config.split_seed, config.val_fraction

    def label(row: dict[str, Any]) -> dict[str, Any]:
        key = row["key"]
        split, draw = split_of(key, seed, fraction), seeded_fraction(key, seed, salt="tokenizer-sample")
        return {**row, "split": split, "n_bytes": len(row["text"].encode("utf-8")), "draw": draw}

    def documents() -> ray.data.Dataset:
        """The source's documents, labelled, read afresh by each pass below: no pass holds the
        corpus (Ray Data streams its blocks through), so the object store's peak does not grow
        with it. The price: the source is read 3 times (byte tokens) or 5 (BPE: its sample and a
        token count), where holding it once cost a corpus of object store (spilled to disk)."""
        return config.source.read().map(label)

    say(f"reading {config.source.kind} documents (their split, size and tokenizer sample)")
    total = config.source.expected_records(description)
    index = counting(documents(), total, "documents").select_columns(["key", "split", "error", "n_bytes", "draw"])
    index = index.to_pandas()
    rejects_uri = join(uri, write_id, "rejects", "rejects.jsonl")
    rejected = record_rejects(index, rejects_uri, config.max_reject_fraction)
    kept = index[index["error"] == ""]
    for split in ("train", "val"):
        if not (kept["split"] == split).any():
            raise DataError(f"data.val_fraction: the {split} split has no documents ({len(index)} in all)")
    # The tokenizer learns from the train split only, so val measures what it has never seen, and
    # from a seeded sample of it: its cost and memory stay bounded however large the corpus is.
    threshold, sample = tokenizer_sample(kept[kept["split"] == "train"], config.tokenizer.sample_mb)
    train_texts = (
        row["text"]
        for row in documents()
        .filter(expr=(col("error") == "") & (col("split") == "train") & (col("draw") <= threshold))
        .iter_rows()
    )
    if config.tokenizer.kind != "byte":
        say(f"training the {config.tokenizer.kind} tokenizer on {sample['documents']} train documents")
    tokenizer = train_tokenizer(config.tokenizer, train_texts)
    tokenizer_json = tokenizer.to_json()
    tokenizer_path = f"{write_id}/{TOKENIZER_FILE}"
    write_bytes_atomic(join(uri, tokenizer_path), tokenizer_json.encode())

    utf8_bytes = kept.groupby("split")["n_bytes"].sum()
    if config.tokenizer.kind == "byte":
        tokens = utf8_bytes
    else:  # a pass that keeps only the counts: no split's ids are ever held whole
        counted = documents().map_batches(count_tokens(tokenizer_json), batch_size=64, batch_format="pyarrow")
        tokens = counted.to_pandas().groupby("split")["n_tokens"].sum()
    block_tokens = config.seq_len + 1
    splits, in_blocks = {}, {}
    for split, count in (("train", config.num_shards), ("val", None)):
        # Filtered first, so a batch holds DOCUMENTS_PER_PACK of the split's documents (a block's
        # tail is dropped per batch: val's few documents must not be spread over many batches).
        blocks = (
            documents()
            .filter(expr=(col("error") == "") & (col("split") == split))
            .map_batches(
                encode_and_pack(tokenizer_json, block_tokens, split),
                batch_size=DOCUMENTS_PER_PACK,
                batch_format="pyarrow",
            )
        )
        folder = join(uri, write_id, split)
        splits[split] = write_split(blocks, uri, folder, block_tokens * 4, config.shard_mb, count)
        if splits[split].rows == 0:
            raise DataError(
                f"data.seq_len: the {split} split has {int(tokens[split])} tokens, "
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
        tokens={s: int(tokens[s]) for s in ("train", "val")},
        utf8_bytes={s: int(utf8_bytes[s]) for s in ("train", "val")},
        tokens_in_blocks=in_blocks,
        tokenizer_sample=sample if config.tokenizer.kind == "bpe" else None,
    )
    described = dict(
        modality="text",
        schema_={"tokens": f"binary (int32 little-endian x {block_tokens})"},
        text=text,
        side_files={text.tokenizer: text.tokenizer_sha256},
    )
    return publish_new(
        key, uri, description, config.model_dump(mode="json"), splits, rejected, rejects_uri, **described
    )
