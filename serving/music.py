"""Notes made audible and visible: a MIDI file (mido), a WAV (tokens/synth.py) and a piano-roll
picture; and drawing pieces from a language model of music."""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import torch

from models.base import GenerativeModel
from models.capabilities import language_model
from serving.drawing import check_token_options
from tokens.music import MusicTokenizer, Note
from tokens.synth import TEMPO_BPM, render, wav_bytes
from typed_errors import OptionError

MIDI_TICKS_PER_BEAT = 480
VOICE_COLOURS = ((214, 39, 40), (31, 119, 180), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75))


@dataclass(frozen=True)
class Piece:
    """A generated piece: its notes on the grid of `ticks_per_quarter`, and the files it becomes."""

    notes: list[Note]
    ticks_per_quarter: int
    default_file: ClassVar[str] = "piece.mid"

    def midi(self) -> bytes:
        return midi_bytes(self.notes, self.ticks_per_quarter)

    def wav(self) -> bytes:
        return wav_bytes(render(self.notes, self.ticks_per_quarter))

    def png(self) -> bytes:
        return piano_roll(self.notes)

    def file_bytes(self, suffix: str) -> bytes:
        """The piece as the file a suffix names: .mid/.midi, .wav or .png (its piano roll)."""
        writers = {".mid": self.midi, ".midi": self.midi, ".wav": self.wav, ".png": self.png}
        if suffix.lower() not in writers:
            raise OptionError("out", f"a piece is written as {', '.join(writers)}, not {suffix or 'no suffix'}")
        return writers[suffix.lower()]()


def draw_pieces(
    model: GenerativeModel,
    tokenizer: MusicTokenizer,
    n: int = 1,
    seed: int = 0,
    max_new_tokens: int = 512,
    temperature: float = 1.0,
    top_k: int | None = None,
    generator: torch.Generator | None = None,
) -> list[list[Note]]:
    """`n` new pieces, each started where the data starts one (after an end-of-piece id) and cut at
    the next end-of-piece; an OptionError names the option out of range."""
    check_token_options(n, max_new_tokens, temperature, top_k)
    device = next(model.parameters()).device
    generator = generator or torch.Generator(device).manual_seed(seed)
    start = torch.full((n, 1), tokenizer.eot_id, dtype=torch.long, device=device)
    ids = language_model(model).generate(start, max_new_tokens, temperature, top_k, generator)
    return [tokenizer.decode(row[1:].tolist()) for row in ids.cpu()]


def playable(notes: Sequence[Note]) -> list[Note]:
    """The notes one MIDI channel per voice can hold: of notes struck at once on one key and voice
    the longest, and a note that overlaps the next on its key and voice ends where that one starts
    (MIDI pairs each note-off with one note-on; a sampled piece may hold such overlaps)."""
    kept: list[Note] = []
    ordered = sorted(notes, key=lambda n: (n.voice, n.pitch, n.onset, n.duration))
    for index, note in enumerate(ordered):
        following = ordered[index + 1] if index + 1 < len(ordered) else None
        if following is not None and (following.voice, following.pitch) == (note.voice, note.pitch):
            if following.onset == note.onset:
                continue  # a longer one starts here too
            if following.onset < note.onset + note.duration:
                note = Note(note.onset, note.pitch, following.onset - note.onset, note.voice)
        kept.append(note)
    return sorted(kept)


def midi_bytes(notes: Sequence[Note], ticks_per_quarter: int, tempo_bpm: float = TEMPO_BPM) -> bytes:
    """A type-1 MIDI file: one track per voice, on its own channel (of the `playable` notes)."""
    import mido

    notes = playable(notes)

    scale = MIDI_TICKS_PER_BEAT // ticks_per_quarter if MIDI_TICKS_PER_BEAT % ticks_per_quarter == 0 else None
    midi = mido.MidiFile(type=1, ticks_per_beat=MIDI_TICKS_PER_BEAT if scale else ticks_per_quarter)
    scale = scale or 1
    conductor = mido.MidiTrack([mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(tempo_bpm), time=0)])
    midi.tracks.append(conductor)
    for voice in sorted({note.voice for note in notes}):
        events = []
        for note in notes:
            if note.voice == voice:
                events.append((note.onset * scale, 1, note.pitch))  # note-offs (0) sort before note-ons
                events.append(((note.onset + note.duration) * scale, 0, note.pitch))
        track, now = mido.MidiTrack(), 0
        for time, on, pitch in sorted(events):
            kind = "note_on" if on else "note_off"
            track.append(mido.Message(kind, note=pitch, velocity=80 if on else 0, channel=voice % 16, time=time - now))
            now = time
        midi.tracks.append(track)
    buffer = io.BytesIO()
    midi.save(file=buffer)
    return buffer.getvalue()


def notes_from_midi(data: bytes, ticks_per_quarter: int) -> list[Note]:
    """The notes of a MIDI file on the grid (each track or channel a voice), for reading back a sample."""
    import mido

    midi = mido.MidiFile(file=io.BytesIO(data))
    notes, grid = [], ticks_per_quarter / midi.ticks_per_beat
    for voice, track in enumerate(t for t in midi.tracks if any(m.type == "note_on" for m in t)):
        now, started = 0, {}
        for message in track:
            now += message.time
            if message.type == "note_on" and message.velocity > 0:
                started[message.note] = now
            elif message.type in ("note_off", "note_on") and message.note in started:
                onset = started.pop(message.note)
                duration = max(1, round((now - onset) * grid))
                notes.append(Note(round(onset * grid), message.note, duration, voice))
    return sorted(notes)


def piano_roll(notes: Sequence[Note], pixels_per_tick: int = 4, pixels_per_pitch: int = 4) -> bytes:
    """A PNG: time across, pitch up, a colour per voice."""
    from PIL import Image, ImageDraw

    if not notes:
        return _png(Image.new("RGB", (64, 32), "white"))
    low, high = min(n.pitch for n in notes) - 2, max(n.pitch for n in notes) + 2
    width = max(n.onset + n.duration for n in notes) * pixels_per_tick + 1
    picture = Image.new("RGB", (width, (high - low + 1) * pixels_per_pitch), "white")
    draw = ImageDraw.Draw(picture)
    for note in notes:
        x0, y0 = note.onset * pixels_per_tick, (high - note.pitch) * pixels_per_pitch
        x1, y1 = x0 + note.duration * pixels_per_tick - 1, y0 + pixels_per_pitch - 1
        draw.rectangle((x0, y0, x1, y1), fill=VOICE_COLOURS[note.voice % len(VOICE_COLOURS)])
    return _png(picture)


def _png(picture) -> bytes:
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()
