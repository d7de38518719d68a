"""Scoring a language model of music: bits per token on the val blocks, then pieces it writes
against held-out music (pipelines/evaluate/music_metrics.py), and for the model under evaluation
its first pieces as MIDI, WAV and piano rolls."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch

from data_prep.manifest import Manifest
from data_prep.modalities.music.modality import music_info
from data_prep.readers import read_split
from models.base import GenerativeModel
from pipelines.config import EvaluateConfig
from pipelines.evaluate.music_metrics import compare
from pipelines.evaluate.pictures import stack_pictures
from pipelines.evaluate.text_metrics import token_loss
from serving.music import Piece, draw_pieces
from storage import join, read_bytes
from tokens.music import MusicTokenizer, Note

MAX_PIECES = 64  # generated per evaluation: the statistics settle well before (benchmarks/music_bench.py)
PIECES_SAVED = 4  # written as MIDI, WAV and a piano roll


def held_out_pieces(manifest: Manifest, settings: EvaluateConfig) -> tuple[MusicTokenizer, list[list[Note]], int]:
    """The dataset's tokenizer, the notes of its first val blocks (what pieces are compared with)
    and the grid's ticks per quarter."""
    tokenizer, blocks = _tokenizer_and_val_blocks(manifest, settings)
    return tokenizer, _decoded(tokenizer, blocks), music_info(manifest).ticks_per_quarter


def _tokenizer_and_val_blocks(manifest: Manifest, settings: EvaluateConfig) -> tuple[MusicTokenizer, torch.Tensor]:
    info = music_info(manifest)
    tokenizer = MusicTokenizer.from_json(read_bytes(join(manifest.uri, info.tokenizer)).decode())
    return tokenizer, torch.from_numpy(read_split(manifest, "val", limit=settings.num_samples)["tokens"])


def _decoded(tokenizer: MusicTokenizer, blocks: torch.Tensor) -> list[list[Note]]:
    return [tokenizer.decode(block.tolist()) for block in blocks[:MAX_PIECES]]


def music_scorer(manifest: Manifest, settings: EvaluateConfig) -> tuple[Any, dict[str, Any]]:
    info = music_info(manifest)
    tokenizer, blocks = _tokenizer_and_val_blocks(manifest, settings)  # read once: scored and compared with
    held_out = _decoded(tokenizer, blocks)
    count = min(settings.num_samples, MAX_PIECES)

    def score(model: GenerativeModel, artifacts: Path | None) -> dict[str, float]:
        loss = token_loss(model, blocks)
        metrics = {"eval/val_loss": loss, "eval/bits_per_token": loss / math.log(2)}
        metrics["eval/bits_per_note"] = metrics["eval/bits_per_token"] * info.tokens_per_note("val")
        generator = torch.Generator(next(model.parameters()).device).manual_seed(settings.seed)
        pieces = draw_pieces(
            model, tokenizer, count, 0, info.seq_len, settings.temperature, settings.top_k, generator=generator
        )
        metrics.update({f"eval/{k}": v for k, v in compare(pieces, held_out, info.ticks_per_quarter).items()})
        if artifacts is not None:
            train = read_split(manifest, "train", limit=len(held_out))["tokens"]
            real = compare([tokenizer.decode(b.tolist()) for b in train], held_out, info.ticks_per_quarter)
            metrics.update({f"eval/{k}_real_data": v for k, v in real.items() if k != "empty_share"})
            save_pieces(pieces[:PIECES_SAVED], info.ticks_per_quarter, artifacts)
        return metrics

    return score, {"val_blocks": len(blocks)}


def save_pieces(pieces: list[list[Note]], ticks_per_quarter: int, artifacts: Path) -> None:
    """Each piece as `pieces/piece_<i>.mid`, `.wav` and `.png` (its piano roll), and their piano
    rolls one above the other as `samples.png` (the evaluation's picture, as an image model's grid)."""
    folder = artifacts / "pieces"
    folder.mkdir(parents=True, exist_ok=True)
    for index, notes in enumerate(pieces):
        piece = Piece(notes, ticks_per_quarter)
        for suffix in (".mid", ".wav", ".png"):
            (folder / f"piece_{index}{suffix}").write_bytes(piece.file_bytes(suffix))
    stack_pictures([folder / f"piece_{index}.png" for index in range(len(pieces))], artifacts / "samples.png")
