"""Clips made audible and visible: WAV files and spectrogram pictures, for `genpipe sample`, the
evaluation's artifacts and the audio classifier's input."""

from __future__ import annotations

import io
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import torch

from tokens.synth import wav_bytes
from typed_errors import OptionError

FFT_SIZE = 256
HOP = 64


def log_spectrogram(audio: torch.Tensor) -> torch.Tensor:
    """(N, 1, T) samples -> (N, 1, FFT_SIZE // 2 + 1, frames) log magnitudes: what the audio
    classifier sees and what spectrogram pictures show."""
    window = torch.hann_window(FFT_SIZE, device=audio.device)
    spectrum = torch.stft(audio[:, 0].float(), FFT_SIZE, HOP, window=window, return_complex=True).abs()
    return torch.log(spectrum + 1e-3).unsqueeze(1)


def spectrogram_png(audio: np.ndarray) -> bytes:
    """A clip's spectrogram as a PNG: time across, frequency up, louder brighter."""
    from PIL import Image

    magnitudes = log_spectrogram(torch.from_numpy(audio.reshape(1, 1, -1)))[0, 0].numpy()[::-1]
    low, high = np.percentile(magnitudes, 5), magnitudes.max()
    scaled = np.clip((magnitudes - low) / max(high - low, 1e-6), 0, 1)
    picture = Image.fromarray((scaled * 255).astype(np.uint8)).resize((scaled.shape[1] * 4, scaled.shape[0] * 2))
    buffer = io.BytesIO()
    picture.save(buffer, format="PNG")
    return buffer.getvalue()


@dataclass(frozen=True)
class Clip:
    """A generated clip: mono samples in [-1, 1] at `sample_rate`, and the files it becomes."""

    samples: np.ndarray
    sample_rate: int
    default_file: ClassVar[str] = "clip.wav"

    def file_bytes(self, suffix: str) -> bytes:
        """The clip as the file a suffix names: .wav, or .png (its spectrogram)."""
        if suffix.lower() == ".wav":
            return wav_bytes(self.samples, self.sample_rate)
        if suffix.lower() == ".png":
            return spectrogram_png(self.samples)
        raise OptionError("out", f"a clip is written as .wav or .png, not {suffix or 'no suffix'}")
