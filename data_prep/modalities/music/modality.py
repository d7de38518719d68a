"""The music modality: pieces as REMI-like event ids (tokens/music.py) packed into blocks of
seq_len + 1, the same blocks a language model (GPT, LSTM, GRU) reads from a text dataset."""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np
import pyarrow as pa
from pydantic import BaseModel

from data_prep.columns import Columns, fixed_width
from data_prep.manifest import Manifest
from data_prep.modalities.modality import Modality, details_of
from data_prep.modalities.music.settings import MusicPrep
from storage import join
from tokens.music import MUSIC_TOKENIZER_FILE


class MusicInfo(BaseModel):
    """What a music dataset's blocks are (the manifest's `details`)."""

    seq_len: int  # each block holds seq_len + 1 ids
    vocab_size: int
    eot_id: int  # between pieces
    ticks_per_quarter: int
    tokenizer: str  # relative to the dataset folder
    tokenizer_sha256: str
    pieces: dict[str, int]
    notes: dict[str, int]
    tokens: dict[str, int]  # every id of the split's pieces
    tokens_in_blocks: dict[str, int]  # what training sees

    def tokens_per_note(self, split: str) -> float:
        return self.tokens[split] / max(1, self.notes[split])


def music_info(manifest: Manifest) -> MusicInfo:
    return details_of(manifest, "music", MusicInfo)


class MusicModality(Modality[MusicPrep]):
    name: ClassVar[str] = "music"
    settings = MusicPrep
    placeholder_inputs: ClassVar[dict[str, Any]] = {"vocab_size": 257}

    def build(self, config: MusicPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
        from data_prep.modalities.music.build import build_music  # Ray Data and music21, when built

        return build_music(config, storage, key, description)

    def decode(self, table: pa.Table, manifest: Manifest) -> Columns:
        """`tokens` (N, seq_len + 1) int32: a block's inputs and, shifted by one, its targets."""
        width = music_info(manifest).seq_len + 1
        return {"tokens": fixed_width(table.column("tokens"), "<i4", (width,)).astype(np.int32)}

    def row_bytes(self, manifest: Manifest) -> int:
        return (music_info(manifest).seq_len + 1) * 4

    def summary(self, manifest: Manifest) -> dict[str, Any]:
        info = music_info(manifest)
        return {"pieces": info.pieces, "notes": info.notes, "tokens": info.tokens_in_blocks}

    def model_inputs(self, manifest: Manifest) -> dict[str, Any]:
        # `modality` tells a language model that its ids are music: it is saved with the model, so
        # a served model answers with MIDI and the evaluator scores notes.
        return {"vocab_size": music_info(manifest).vocab_size, "modality": "music"}

    def model_files(self, manifest: Manifest) -> dict[str, str]:
        return {MUSIC_TOKENIZER_FILE: join(manifest.uri, music_info(manifest).tokenizer)}

    def tokens_per_row(self, manifest: Manifest) -> int | None:
        return music_info(manifest).seq_len
