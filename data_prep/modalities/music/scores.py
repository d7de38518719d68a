"""A score file's bytes -> notes and bars on the grid, through music21 (MusicXML, MIDI, Humdrum,
ABC): each part a voice, tied notes merged, grace notes (no duration) left out."""

from __future__ import annotations

import os
import tempfile
from fractions import Fraction

from tokens.music import Bar, Note


class ScoreError(ValueError):
    """A file music21 cannot make notes of; the message says why (a reject's reason)."""


def parse_score(data: bytes, suffix: str, ticks_per_quarter: int) -> tuple[list[Note], list[Bar]]:
    """The piece's notes and its bars (from the first part's measures; none for a file without them)."""
    import music21

    # music21 reads compressed MusicXML (.mxl) from a file only: the bytes go through one.
    with tempfile.NamedTemporaryFile(suffix=suffix, delete=False) as handle:
        handle.write(data)
    try:
        parsed = music21.converter.parse(handle.name)
    except Exception as exc:  # music21 raises many kinds; its message says what is wrong
        raise ScoreError(f"not a score music21 can read: {type(exc).__name__}: {str(exc)[:200]}") from None
    finally:
        os.unlink(handle.name)
    if isinstance(parsed, music21.stream.Opus):  # a file of several pieces: the first
        parsed = parsed.scores[0] if parsed.scores else parsed
    parsed = parsed.stripTies()
    parts = list(getattr(parsed, "parts", None) or [parsed])  # a bare part (an ABC tune) is one voice

    def ticks(value: float | Fraction) -> int:
        return round(float(value) * ticks_per_quarter)

    notes = []
    for voice, part in enumerate(parts):
        for element in part.flatten().notes:
            duration = ticks(element.quarterLength)
            if duration <= 0:
                continue  # a grace note
            for pitch in element.pitches:
                notes.append(Note(ticks(element.offset), int(pitch.midi), duration, voice))
    if not notes:
        raise ScoreError("no notes")
    measures = parts[0].getElementsByClass(music21.stream.Measure)
    bars = [Bar(ticks(m.offset), ticks(m.duration.quarterLength)) for m in measures]
    return sorted(notes), bars
