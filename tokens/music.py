"""Symbolic music as tokens: notes on a grid of `ticks_per_quarter`, written as REMI-like events
(Huang & Yang 2020: Bar, Position, then each note's Voice, Pitch and Duration).

Hand-written rather than miditok's REMI: that brings symusic (C++) and huggingface_hub into every
served model's environment; this vocabulary is ~170 ids, saved as one small JSON file beside the
model, and decoding needs nothing but Python. A bar token carries its length in quarters (a
chorale's pickup bar is short, a 3/4 bar is 3), so a decoder knows where the next bar starts
without a time-signature event.

Decoding is forgiving: ids out of order (a pitch with no duration after it, a position before any
bar) are skipped, so any sampled sequence becomes some music.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

MUSIC_TOKENIZER_FILE = "music_tokenizer.json"
KIND = "genpipe_music_remi"
LOWEST_PITCH, HIGHEST_PITCH = 21, 108  # the piano's range (MIDI numbers)
MAX_BAR_QUARTERS = 8  # a bar of up to 8 quarters (8/4); a note lasts at most that long
VOICES = 8  # parts beyond the 8th share the last voice


class MusicTokenizerError(ValueError):
    """A music tokenizer file that cannot be read; the message names it."""


@dataclass(frozen=True, order=True)
class Note:
    """One note: onset and duration in ticks of the grid, a MIDI pitch and its part (voice)."""

    onset: int
    pitch: int
    duration: int
    voice: int = 0


@dataclass(frozen=True)
class Bar:
    """A bar of the piece: where it starts and how long it is, in ticks."""

    start: int
    length: int


class MusicTokenizer:
    """Notes and bars -> ids and back. Ids: end of piece, then bars, positions, voices, pitches,
    durations, each a contiguous range."""

    def __init__(self, ticks_per_quarter: int = 4):
        if not 1 <= ticks_per_quarter <= 24:
            raise ValueError(f"ticks_per_quarter: {ticks_per_quarter} is not in 1..24")
        self.ticks_per_quarter = ticks_per_quarter
        self.max_ticks = MAX_BAR_QUARTERS * ticks_per_quarter
        self.eot_id = 0
        self._bar = 1  # Bar_q for q = 1..MAX_BAR_QUARTERS quarters
        self._position = self._bar + MAX_BAR_QUARTERS  # Position_k, k = 0..max_ticks - 1
        self._voice = self._position + self.max_ticks  # Voice_v
        self._pitch = self._voice + VOICES  # Pitch_p, p = LOWEST..HIGHEST
        self._duration = self._pitch + HIGHEST_PITCH - LOWEST_PITCH + 1  # Duration_d, d = 1..max_ticks
        self.vocab_size = self._duration + self.max_ticks

    # Encoding ------------------------------------------------------------------------------------

    def encode(self, notes: Iterable[Note], bars: Sequence[Bar]) -> list[int]:
        """A piece's ids (no end-of-piece id: the dataset puts one between pieces). Notes outside
        the piano's range are left out; a note past the last bar goes in bars of the last one's
        length; bars with no note keep their bar id (the rest is part of the music)."""
        notes = sorted(n for n in notes if LOWEST_PITCH <= n.pitch <= HIGHEST_PITCH)
        bars = self._covering(bars, notes[-1].onset if notes else 0)
        ids: list[int] = []
        index = 0
        for bar in bars:
            ids.append(self._bar + self._quarters(bar.length) - 1)
            position = None
            while index < len(notes) and notes[index].onset < bar.start + bar.length:
                note = notes[index]
                offset = min(max(0, note.onset - bar.start), self.max_ticks - 1)
                if offset != position:
                    ids.append(self._position + offset)
                    position = offset
                ids += [
                    self._voice + min(note.voice, VOICES - 1),
                    self._pitch + note.pitch - LOWEST_PITCH,
                    self._duration + min(max(note.duration, 1), self.max_ticks) - 1,
                ]
                index += 1
        return ids

    def _quarters(self, length: int) -> int:
        return min(max(round(length / self.ticks_per_quarter), 1), MAX_BAR_QUARTERS)

    def _covering(self, bars: Sequence[Bar], last_onset: int) -> list[Bar]:
        """The piece's bars on the grid (each a whole number of quarters), extended to the last note."""
        grid = [Bar(b.start, self._quarters(b.length) * self.ticks_per_quarter) for b in bars if b.length > 0]
        if not grid:
            grid = [Bar(0, 4 * self.ticks_per_quarter)]
        while grid[-1].start + grid[-1].length <= last_onset:
            grid.append(Bar(grid[-1].start + grid[-1].length, grid[-1].length))
        return grid

    # Decoding ------------------------------------------------------------------------------------

    def decode(self, ids: Iterable[int]) -> list[Note]:
        """The notes that `ids` spell; bars are laid end to end from tick 0, each as long as its id
        says. Stops at the first end-of-piece id after some music."""
        notes: list[Note] = []
        bar_start, bar_length = None, 0
        position = voice = 0
        pitch = None
        for raw in ids:
            i = int(raw)
            if i == self.eot_id:
                if notes:
                    break
                continue
            if self._bar <= i < self._position:
                bar_start = 0 if bar_start is None else bar_start + bar_length
                bar_length = (i - self._bar + 1) * self.ticks_per_quarter
                position, pitch = 0, None
            elif bar_start is None:
                continue  # nothing is placed before the first bar
            elif i < self._voice:
                position, pitch = i - self._position, None
            elif i < self._pitch:
                voice = i - self._voice
            elif i < self._duration:
                pitch = LOWEST_PITCH + i - self._pitch
            elif i < self.vocab_size and pitch is not None:
                notes.append(Note(bar_start + position, pitch, i - self._duration + 1, voice))
                pitch = None
        return notes

    def describe(self, ids: Iterable[int]) -> list[str]:
        """Each id's event name (Bar_4, Position_2, Voice_0, Pitch_60, Duration_4), for reading."""
        return [self._name(int(i)) for i in ids]

    def _name(self, i: int) -> str:
        if i == self.eot_id:
            return "EndOfPiece"
        ranges = (
            (self._position, "Bar", self._bar, 1),
            (self._voice, "Position", self._position, 0),
            (self._pitch, "Voice", self._voice, 0),
            (self._duration, "Pitch", self._pitch, LOWEST_PITCH),
            (self.vocab_size, "Duration", self._duration, 1),
        )
        for end, name, start, first in ranges:
            if i < end:
                return f"{name}_{i - start + first}"
        return f"Unknown_{i}"

    # Files ---------------------------------------------------------------------------------------

    def to_json(self) -> str:
        return json.dumps({"genpipe_tokenizer": KIND, "ticks_per_quarter": self.ticks_per_quarter})

    @classmethod
    def from_json(cls, text: str, origin: str = MUSIC_TOKENIZER_FILE) -> MusicTokenizer:
        try:
            data = json.loads(text)
            if data.get("genpipe_tokenizer") != KIND:
                raise ValueError(f"not a {KIND} tokenizer")
            return cls(int(data["ticks_per_quarter"]))
        except (ValueError, TypeError, KeyError, AttributeError) as exc:
            raise MusicTokenizerError(f"{origin}: not a music tokenizer file: {exc}") from None


# Krumhansl & Kessler's (1982) key profiles: how well each pitch class fits a major or minor key
# whose tonic is pitch class 0. A piece's key is the rotation its pitch classes correlate best with.
KEY_PROFILES = {
    "major": (6.35, 2.23, 3.48, 2.33, 4.38, 4.09, 2.52, 5.19, 2.39, 3.66, 2.29, 2.88),
    "minor": (6.33, 2.68, 3.52, 5.38, 2.60, 3.53, 2.54, 4.75, 3.98, 2.69, 3.34, 3.17),
}
# The scale of each mode; minor counts the raised leading tone too (harmonic minor).
SCALES = {"major": (0, 2, 4, 5, 7, 9, 11), "minor": (0, 2, 3, 5, 7, 8, 10, 11)}


def key_of(notes: Iterable[Note]) -> tuple[int, str]:
    """The most likely key (tonic pitch class, "major" or "minor") of `notes`: their duration-
    weighted pitch classes correlated with the 24 rotated key profiles (Krumhansl-Schmuckler)."""
    import numpy as np

    weights = np.zeros(12)
    for note in notes:
        weights[note.pitch % 12] += note.duration
    if weights.std() == 0:
        return 0, "major"
    fits = {
        (tonic, mode): np.corrcoef(weights, np.roll(profile, tonic))[0, 1]
        for mode, profile in KEY_PROFILES.items()
        for tonic in range(12)
    }
    return max(fits, key=lambda key: fits[key])
