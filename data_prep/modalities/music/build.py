"""prepare for music: score files -> notes (music21) -> event ids (tokens/music.py) -> a seeded
split by piece -> blocks of seq_len + 1 ids in Parquet shards sized by bytes -> manifest.

The pieces are parsed once and their ids held (a chorale is ~3,500 ids, 14 KB): parsing is the
costly part, and a music corpus is small next to its text counterpart.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pyarrow as pa

from data_prep.blocks import TOKEN_DTYPE, pack_blocks
from data_prep.errors import DataError
from data_prep.manifest import Manifest, dataset_uri, publish_new
from data_prep.modalities.music.modality import MusicInfo
from data_prep.modalities.music.scores import ScoreError, parse_score
from data_prep.modalities.music.settings import MusicPrep
from data_prep.progress import counting, say
from data_prep.shards import new_write_id, record_rejects, write_split
from data_prep.transforms import split_of
from storage import join, write_bytes_atomic
from tokens.music import MUSIC_TOKENIZER_FILE, MusicTokenizer

# Pieces packed per Ray Data batch (~14 KB of ids each): each batch is one block of the shards'
# stream, and a streamed repartition splits large blocks but never joins small ones.
PIECES_PER_PACK = 256
SPLITS = ("train", "val")


def tokenize(ticks_per_quarter: int, seed: int, val_fraction: float):
    """A Ray Data row function: a score's bytes -> its ids (int32 bytes), counts and split."""

    def encode(row: dict[str, Any]) -> dict[str, Any]:
        out = {"key": row["key"], "split": split_of(row["key"], seed, val_fraction), "error": row["error"]}
        out.update(ids=b"", n_notes=0, n_tokens=0)
        if row["error"]:
            return out
        try:
            notes, bars = parse_score(row["data"], row["suffix"], ticks_per_quarter)
        except ScoreError as exc:
            return {**out, "error": str(exc)}
        ids = np.asarray(MusicTokenizer(ticks_per_quarter).encode(notes, bars), dtype=TOKEN_DTYPE)
        return {**out, "ids": ids.tobytes(), "n_notes": len(notes), "n_tokens": len(ids)}

    return encode


def pack(eot_id: int, block_tokens: int):
    def blocks(batch: pa.Table) -> pa.Table:
        pieces = [np.frombuffer(ids, dtype=TOKEN_DTYPE) for ids in batch.column("ids").to_pylist()]
        return pack_blocks(pieces, eot_id, block_tokens)

    return blocks


def build_music(config: MusicPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
    uri, write_id = dataset_uri(storage, key), new_write_id()
    tokenizer = MusicTokenizer(config.ticks_per_quarter)
    say(f"reading {config.source.kind} scores (notes on a grid of {config.ticks_per_quarter} per quarter)")
    total = config.source.expected_records(description)
    encode = tokenize(config.ticks_per_quarter, config.split_seed, config.val_fraction)
    pieces = counting(config.source.read().map(encode), total, "pieces").materialize()
    index = pieces.select_columns(["key", "split", "error", "n_notes", "n_tokens"]).to_pandas()
    rejects_uri = join(uri, write_id, "rejects", "rejects.jsonl")
    rejected = record_rejects(index, rejects_uri, config.max_reject_fraction)
    kept = index[index["error"] == ""]
    for split in SPLITS:
        if not (kept["split"] == split).any():
            raise DataError(f"data.val_fraction: the {split} split has no pieces ({len(index)} in all)")
    tokenizer_json = tokenizer.to_json()
    tokenizer_path = f"{write_id}/{MUSIC_TOKENIZER_FILE}"
    write_bytes_atomic(join(uri, tokenizer_path), tokenizer_json.encode())

    block_tokens = config.seq_len + 1
    splits, in_blocks = {}, {}
    for split, count in (("train", config.num_shards), ("val", None)):
        blocks = pieces.filter(lambda row, split=split: row["error"] == "" and row["split"] == split).map_batches(
            pack(tokenizer.eot_id, block_tokens), batch_size=PIECES_PER_PACK, batch_format="pyarrow"
        )
        splits[split] = write_split(blocks, uri, join(uri, write_id, split), block_tokens * 4, config.shard_mb, count)
        if splits[split].rows == 0:
            tokens = int(kept.loc[kept["split"] == split, "n_tokens"].sum())
            raise DataError(
                f"data.seq_len: the {split} split has {tokens} tokens, not enough for one block of "
                f"seq_len + 1 = {block_tokens}"
            )
        in_blocks[split] = splits[split].rows * block_tokens

    by_split = kept.groupby("split")
    info = MusicInfo(
        seq_len=config.seq_len,
        vocab_size=tokenizer.vocab_size,
        eot_id=tokenizer.eot_id,
        ticks_per_quarter=config.ticks_per_quarter,
        tokenizer=tokenizer_path,
        tokenizer_sha256=hashlib.sha256(tokenizer_json.encode()).hexdigest(),
        pieces={s: int(by_split.size().get(s, 0)) for s in SPLITS},
        notes={s: int(by_split["n_notes"].sum().get(s, 0)) for s in SPLITS},
        tokens={s: int(by_split["n_tokens"].sum().get(s, 0)) for s in SPLITS},
        tokens_in_blocks=in_blocks,
    )
    described = dict(
        modality="music",
        schema_={"tokens": f"binary (int32 little-endian x {block_tokens})"},
        details=info.model_dump(),
        side_files={info.tokenizer: info.tokenizer_sha256},
    )
    return publish_new(
        key, uri, description, config.model_dump(mode="json"), splits, rejected, rejects_uri, **described
    )
