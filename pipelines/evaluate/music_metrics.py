"""Musical statistics of generated pieces against held-out ones (after Yang & Lerch 2020, "On the
evaluation of generative models in music"): how far apart the two sets' pitch-class histograms,
melodic-interval histograms and note densities are, and how much of each piece stays in its key.

Each statistic compares sets of note sequences of about the same length (samples of seq_len ids
against val blocks of seq_len + 1), so a distance of the held-out set to the train set is the floor
to read a model's against (the evaluator logs it as `..._real_data`).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.stats import wasserstein_distance

from tokens.music import SCALES, Note, key_of

MAX_INTERVAL = 12  # a leap beyond an octave counts as an octave
Piece = Sequence[Note]


def pitch_classes(pieces: Sequence[Piece]) -> np.ndarray:
    """The share of all notes in each of the 12 pitch classes."""
    counts = np.bincount([n.pitch % 12 for piece in pieces for n in piece], minlength=12).astype(float)
    return counts / max(1.0, counts.sum())


def intervals(pieces: Sequence[Piece]) -> np.ndarray:
    """The share of melodic steps (within each voice, note to next note) of each size in semitones,
    -12..12 (leaps beyond an octave clipped)."""
    steps = []
    for piece in pieces:
        for voice in {n.voice for n in piece}:
            line = [n.pitch for n in sorted(piece) if n.voice == voice]
            steps += np.clip(np.diff(line), -MAX_INTERVAL, MAX_INTERVAL).tolist()
    counts = np.bincount(np.asarray(steps, dtype=int) + MAX_INTERVAL, minlength=2 * MAX_INTERVAL + 1).astype(float)
    return counts / max(1.0, counts.sum())


def note_densities(pieces: Sequence[Piece], ticks_per_quarter: int) -> np.ndarray:
    """Notes per quarter note of each piece (onset of the first to end of the last; 0 for none)."""
    densities = []
    for piece in pieces:
        span = max((n.onset + n.duration for n in piece), default=0) - min((n.onset for n in piece), default=0)
        densities.append(len(piece) / max(1.0, span / ticks_per_quarter))
    return np.asarray(densities, dtype=float)


def in_key_share(piece: Piece) -> float:
    """The share of the piece's notes in the scale of its most likely key (tokens/music.key_of); 0
    for no notes."""
    if not piece:
        return 0.0
    tonic, mode = key_of(piece)
    in_scale = {(tonic + step) % 12 for step in SCALES[mode]}
    return sum(n.pitch % 12 in in_scale for n in piece) / len(piece)


def total_variation(p: np.ndarray, q: np.ndarray) -> float:
    """Half the L1 distance of two histograms: 0 alike, 1 nothing in common."""
    return float(0.5 * np.abs(p - q).sum())


def compare(pieces: Sequence[Piece], reference: Sequence[Piece], ticks_per_quarter: int) -> dict[str, float]:
    """`pieces` against `reference`: three distances (0 is alike) and the pieces' mean in-key share."""
    mine, theirs = note_densities(pieces, ticks_per_quarter), note_densities(reference, ticks_per_quarter)
    return {
        "pitch_class_distance": total_variation(pitch_classes(pieces), pitch_classes(reference)),
        "interval_distance": total_variation(intervals(pieces), intervals(reference)),
        "note_density_distance": float(wasserstein_distance(mine, theirs)),
        "in_key_share": float(np.mean([in_key_share(p) for p in pieces])) if pieces else 0.0,
        "empty_share": float(np.mean([not p for p in pieces])) if pieces else 1.0,
    }
