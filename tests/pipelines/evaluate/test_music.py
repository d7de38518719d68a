"""Music's evaluation parts: the statistics compare what they say they compare, and a piece
becomes a MIDI file that reads back, a WAV a player opens and a piano roll."""

from __future__ import annotations

import io
import wave

import numpy as np
import pytest
from PIL import Image

from pipelines.evaluate.music_metrics import compare, in_key_share, intervals, pitch_classes
from serving.music import Piece, midi_bytes, notes_from_midi, playable
from tokens.music import Note
from tokens.synth import render
from typed_errors import OptionError

C_MAJOR = (60, 62, 64, 65, 67, 69, 71, 72)


def scale_piece(pitches=C_MAJOR, shift: int = 0, voice: int = 0, step: int = 4) -> list[Note]:
    return [Note(i * step, p + shift, step, voice) for i, p in enumerate(pitches)]


def test_a_set_compared_with_itself_is_at_distance_zero_and_a_transposed_one_is_not():
    pieces = [scale_piece(), scale_piece(voice=1, step=2)]
    same = compare(pieces, pieces, ticks_per_quarter=4)
    assert same["pitch_class_distance"] == 0 and same["interval_distance"] == 0
    assert same["note_density_distance"] == 0 and same["empty_share"] == 0
    moved = compare([scale_piece(shift=1)], pieces, ticks_per_quarter=4)
    assert moved["pitch_class_distance"] > 0.5  # C# major shares two pitch classes with C major
    assert moved["interval_distance"] == 0  # the same steps, a semitone up
    denser = compare([scale_piece(step=1)], [scale_piece(step=4)], ticks_per_quarter=4)
    assert denser["note_density_distance"] == pytest.approx(4.0 - 1.0)  # notes per quarter: 4 against 1


def test_histograms_count_what_they_name():
    assert pitch_classes([scale_piece()])[0] == pytest.approx(2 / 8)  # C twice among 8 notes
    steps = intervals([[Note(0, 60, 1), Note(1, 64, 1), Note(2, 40, 1)]])  # +4, then -24 clipped to -12
    assert steps[12 + 4] == 0.5 and steps[0] == 0.5


def test_a_scale_is_in_its_key_and_a_chromatic_run_is_not():
    assert in_key_share(scale_piece()) == 1.0
    assert in_key_share(scale_piece(shift=3)) == 1.0  # E-flat major is found as easily
    chromatic = in_key_share([Note(i, 60 + i, 1) for i in range(12)])
    assert chromatic == pytest.approx(8 / 12, abs=1 / 12)  # at most a minor key's 8 pitch classes
    assert in_key_share([]) == 0.0
    empty = compare([[], scale_piece()], [scale_piece()], ticks_per_quarter=4)
    assert empty["empty_share"] == 0.5 and empty["in_key_share"] == 0.5


def test_a_piece_becomes_midi_that_reads_back_wav_and_a_piano_roll():
    notes = sorted(scale_piece() + scale_piece(shift=-12, voice=1, step=8)[:4])
    data = midi_bytes(notes, ticks_per_quarter=4)
    assert data[:4] == b"MThd" and notes_from_midi(data, ticks_per_quarter=4) == notes
    piece = Piece(notes, ticks_per_quarter=4)
    with wave.open(io.BytesIO(piece.file_bytes(".wav"))) as sound:
        seconds = sound.getnframes() / sound.getframerate()
        frames = np.frombuffer(sound.readframes(sound.getnframes()), dtype="<i2")
    assert sound.getnchannels() == 1 and seconds == pytest.approx(8 * 60 / 90 + 0.5, abs=0.05)  # 8 quarters at 90 bpm
    assert 0.5 < np.abs(frames).max() / 32767 <= 0.9  # normalised, not clipped
    roll = Image.open(io.BytesIO(piece.file_bytes(".PNG")))
    assert roll.width == 32 * 4 + 1 and roll.height == (72 - 48 + 5) * 4
    with pytest.raises(OptionError, match=r"\.mid, \.midi, \.wav, \.png, not \.mp3"):
        piece.file_bytes(".mp3")


def test_overlapping_notes_on_one_key_become_notes_a_midi_file_holds():
    struck = [Note(0, 60, 8, 0), Note(2, 60, 4, 0), Note(2, 60, 2, 0), Note(2, 60, 4, 1), Note(4, 64, 4, 0)]
    held = [Note(0, 60, 2, 0), Note(2, 60, 4, 0), Note(2, 60, 4, 1), Note(4, 64, 4, 0)]
    assert playable(struck) == held and playable([]) == []
    assert notes_from_midi(midi_bytes(struck, ticks_per_quarter=4), ticks_per_quarter=4) == held


def test_silence_renders_to_a_short_quiet_file():
    assert np.abs(render([], ticks_per_quarter=4)).max() == 0
