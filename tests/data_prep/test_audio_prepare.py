"""prepare for audio on a real local Ray: a folder of recordings (any rate, mono or stereo, WAV or
FLAC, a class per folder) becomes clips at one rate, split by recording, with rejects and their
reasons; the chorales rendered by the synthesiser are a labelled set of their own."""

from __future__ import annotations

import json

import numpy as np
import pytest
import soundfile

from data_prep.config import DataConfig
from data_prep.errors import DataError
from data_prep.modalities.audio.modality import audio_info
from data_prep.prepare import prepare
from data_prep.readers import read_split
from storage import read_bytes

pytestmark = pytest.mark.slow

TONES = {"low": 220.0, "high": 660.0}


def tone(frequency: float, seconds: float, rate: int, channels: int = 1) -> np.ndarray:
    wave = 0.5 * np.sin(2 * np.pi * frequency * np.arange(int(seconds * rate)) / rate).astype(np.float32)
    return np.stack([wave] * channels, axis=1)


def recordings(folder, per_class: int = 5):
    """Each class's tone at several rates and formats (stereo WAV, mono FLAC), and files that are not usable."""
    for name, frequency in TONES.items():
        (folder / name).mkdir(parents=True)
        for i in range(per_class):
            rate, channels, suffix = ((44_100, 2, "wav"), (8_000, 1, "flac"), (22_050, 1, "wav"))[i % 3]
            soundfile.write(folder / name / f"take_{i}.{suffix}", tone(frequency, 1.0 + 0.25 * i, rate, channels), rate)
    (folder / "low" / "broken.wav").write_bytes(b"RIFF not really a wave file")
    soundfile.write(folder / "high" / "blip.wav", tone(660.0, 0.1, 8000), 8000)
    (folder / "high" / "notes.txt").write_text("not audio")
    return folder


def audio_config(source: dict, **extra) -> DataConfig:
    settings = {"sample_rate": 4000, "clip_seconds": 0.5, "val_fraction": 0.3, "max_reject_fraction": 0.25}
    return DataConfig.model_validate({"source": source, **settings, **extra})


def test_recordings_become_clips_at_one_rate_with_their_rejects(ray_session, tmp_path):
    folder = recordings(tmp_path / "sounds")
    manifest, _ = prepare(audio_config({"kind": "audio_files", "path": f"{folder}/*/*"}), str(tmp_path / "store"))
    info = audio_info(manifest)
    assert manifest.class_names == ["high", "low"] and info.clip_samples == 2000 and info.sample_rate == 4000
    assert info.files["train"] + info.files["val"] == 10 and min(info.files.values()) > 0
    # take_i lasts 1 + i/4 s: 2, 2, 3, 3, 4 half-second clips per class.
    assert info.clips["train"] + info.clips["val"] == 2 * (2 + 2 + 3 + 3 + 4)
    rejects = [json.loads(line) for line in read_bytes(manifest.rejects["uri"]).decode().splitlines()]
    reasons = {row["key"]: row["reason"] for row in rejects}
    assert set(reasons) == {"low/broken.wav", "high/blip.wav", "high/notes.txt"}
    assert reasons["low/broken.wav"].startswith("not audio soundfile can read")
    assert reasons["high/blip.wav"].startswith("0.10 s long: shorter than one clip of data.clip_seconds=0.5")
    assert reasons["high/notes.txt"].startswith("not an audio file (.txt")
    # Each clip is its class's tone, resampled: the strongest frequency is the tone's.
    clips = read_split(manifest, "train")
    for audio, label in zip(clips["audio"], clips["label"], strict=True):
        spectrum = np.abs(np.fft.rfft(audio[0]))
        expected = TONES[manifest.class_names[label]]
        assert abs(np.argmax(spectrum) * 4000 / 2000 - expected) <= 4, (expected, np.argmax(spectrum))
        assert 0.45 < np.abs(audio).max() < 0.55  # the level survives resampling and the int16 round trip


def test_a_folder_of_unusable_files_fails_naming_the_limit(ray_session, tmp_path):
    folder = tmp_path / "sounds" / "noise"
    folder.mkdir(parents=True)
    soundfile.write(folder / "ok.wav", tone(440.0, 2.0, 8000), 8000)
    (folder / "bad.wav").write_bytes(b"nope")
    with pytest.raises(DataError, match="max_reject_fraction"):
        prepare(audio_config({"kind": "audio_files", "path": f"{folder}/*"}), str(tmp_path / "store"))


def test_chorales_rendered_by_the_synthesiser_are_labelled_by_mode(ray_session, tmp_path):
    config = audio_config({"kind": "chorale_audio", "max_files": 6}, val_fraction=0.34)
    manifest, _ = prepare(config, str(tmp_path / "store"))
    info = audio_info(manifest)
    assert set(manifest.class_names) <= {"major", "minor"} and manifest.rejects["count"] == 0
    assert info.files["train"] + info.files["val"] == 6 and info.clips["train"] > 6 * 10  # chorales last ~20 s and more
