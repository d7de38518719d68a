"""Audio sources: each kind's config (a `data.source` of the audio modality) and how it reads
its recordings, as a Ray Dataset of `{key, audio, rate, label, error}` rows: mono float32 samples
at the file's own rate (the builder resamples and cuts them), the class, or why the file cannot
be used (a reject with its reason), never a crash.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
from pydantic import Field

from data_prep.files import file_stamps, glob_files
from data_prep.modalities.base import SourceConfig
from data_prep.modalities.music.sources import Music21CorpusSource, corpus_files
from data_prep.modalities.text.sources import glob_root
from storage import filesystem

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".aiff", ".aif")
MAX_AUDIO_MB = 256  # a larger file is a reject: cut it first
RENDER_RATE = 16_000  # chorales are rendered at this rate, then resampled like any file


class AudioSourceConfig(SourceConfig):
    """A source of recordings."""

    modality: ClassVar[str] = "audio"


class AudioFilesSource(AudioSourceConfig):
    """WAV, FLAC, OGG or AIFF files matching a glob (any fsspec URI), any rate, mono or stereo
    (mixed down); each file's class is the folder it sits in."""

    kind: Literal["audio_files"]
    path: str = Field(description="a glob such as sounds/*/*.wav (class folders) or s3://bucket/clips/**/*.flac")

    def describe(self) -> dict[str, Any]:
        fs, pattern = filesystem(self.path)
        return {**self.model_dump(), "files": file_stamps(fs, glob_root(pattern), glob_files(self.path))}

    def read(self) -> Any:
        import ray.data

        fs, pattern = filesystem(self.path)
        root = glob_root(pattern)
        scheme = self.path.split("://")[0] + "://" if "://" in self.path else ""
        items = [{"key": p[len(root) :].lstrip("/"), "uri": scheme + p} for p in glob_files(self.path)]
        return ray.data.from_items(items).map(read_audio_file)

    def class_names(self) -> list[str]:
        return []  # the builder names the classes from the folders it kept


class ChoraleAudioSource(AudioSourceConfig):
    """Bach chorales from music21's corpus rendered by genpipe's synthesiser (tokens/synth.py), each
    labelled by its key's mode (major or minor): a labelled audio set that needs no download."""

    kind: Literal["chorale_audio"] = "chorale_audio"
    max_files: int | None = Field(40, gt=0, description="the first N chorales in sorted order")

    def describe(self) -> dict[str, Any]:
        return {**self.model_dump(), **Music21CorpusSource(max_files=self.max_files).describe(), "kind": self.kind}

    def read(self) -> Any:
        import ray.data

        root, files = corpus_files(Music21CorpusSource(max_files=self.max_files))
        items = [{"key": str(p.relative_to(root)), "uri": str(p)} for p in files]
        return ray.data.from_items(items).map(render_chorale)


def audio_row(key: str, audio: np.ndarray | None = None, rate: int = 0, label: str = "", error: str = "") -> dict:
    samples = np.zeros(0, dtype=np.float32) if audio is None else audio.astype(np.float32)
    return {"key": key, "audio": samples.tobytes(), "rate": rate, "label": label, "error": error}


def read_audio_file(row: dict[str, Any]) -> dict[str, Any]:
    """A file's samples, mixed to mono, or why they cannot be read."""
    import soundfile

    key = row["key"]
    label = Path(key).parent.name
    if Path(key).suffix.lower() not in AUDIO_SUFFIXES:
        return audio_row(
            key, error=f"not an audio file ({Path(key).suffix or 'no suffix'}; reads {', '.join(AUDIO_SUFFIXES)})"
        )
    fs, path = filesystem(row["uri"])
    try:
        if fs.size(path) > MAX_AUDIO_MB * 1_000_000:
            return audio_row(key, error=f"over {MAX_AUDIO_MB} MB: cut it into shorter files")
        with fs.open(path, "rb") as handle:
            data = handle.read()
        samples, rate = soundfile.read(io.BytesIO(data), dtype="float32", always_2d=True)
    except (OSError, RuntimeError, ValueError, TypeError) as exc:  # soundfile's LibsndfileError is a RuntimeError
        return audio_row(key, error=f"not audio soundfile can read: {type(exc).__name__}: {str(exc)[:200]}")
    if len(samples) == 0:
        return audio_row(key, error="no samples")
    return audio_row(key, samples.mean(axis=1), int(rate), label)


def render_chorale(row: dict[str, Any]) -> dict[str, Any]:
    """A chorale's notes played by the synthesiser, labelled by its key's mode."""
    from data_prep.modalities.music.scores import ScoreError, parse_score
    from tokens.music import key_of
    from tokens.synth import render

    key = row["key"]
    data = Path(row["uri"]).read_bytes()
    try:
        notes, _ = parse_score(data, Path(key).suffix, ticks_per_quarter=4)
    except ScoreError as exc:
        return audio_row(key, error=str(exc))
    return audio_row(key, render(notes, 4, RENDER_RATE), RENDER_RATE, key_of(notes)[1])
