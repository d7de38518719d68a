"""Notes made audible: a small additive synthesiser, and WAV files.

Hand-written (a few harmonics under a decaying envelope, per note): rendering with a real
instrument needs a soundfont, which cannot be downloaded here, and a sample only has to be
listenable, not beautiful. `wave` (the standard library) writes the file. It sits this low so
that data preparation (chorales rendered as a built-in audio set) and serving (a piece as WAV)
share it.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Sequence

import numpy as np

from tokens.music import Note

TEMPO_BPM = 90.0
SAMPLE_RATE = 22_050
HARMONICS = (1.0, 0.45, 0.2, 0.1)  # relative loudness of the 1st..4th partial


def render(notes: Sequence[Note], ticks_per_quarter: int, sample_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Mono float32 audio in [-1, 1]: each note a few harmonics under a decaying envelope."""
    seconds_per_tick = 60.0 / TEMPO_BPM / ticks_per_quarter
    end = max((n.onset + n.duration for n in notes), default=0) * seconds_per_tick + 0.5
    audio = np.zeros(int(end * sample_rate) + 1, dtype=np.float32)
    for note in notes:
        start = int(note.onset * seconds_per_tick * sample_rate)
        length = max(1, int(note.duration * seconds_per_tick * sample_rate))
        t = np.arange(length + int(0.05 * sample_rate), dtype=np.float32) / sample_rate
        frequency = 440.0 * 2.0 ** ((note.pitch - 69) / 12.0)
        tone = sum(w * np.sin(2 * np.pi * frequency * (k + 1) * t) for k, w in enumerate(HARMONICS))
        envelope = np.minimum(1.0, t / 0.01) * np.exp(-2.5 * t)
        envelope[length:] *= np.linspace(1.0, 0.0, len(t) - length)  # a 50 ms release
        part = (tone * envelope).astype(np.float32)
        audio[start : start + len(part)] += part[: len(audio) - start]
    peak = float(np.abs(audio).max()) if len(audio) else 0.0
    return audio / peak * 0.9 if peak > 0 else audio


def wav_bytes(audio: np.ndarray, sample_rate: int = SAMPLE_RATE) -> bytes:
    """16-bit PCM mono WAV of float audio in [-1, 1]."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes((np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes())
    return buffer.getvalue()
