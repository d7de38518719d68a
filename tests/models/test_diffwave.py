"""DiffWave: the noise prediction learns a tone, and the sampler turns noise into clips of it."""

from __future__ import annotations

import math

import torch

from models import build_model, resolve_config
from models.diffwave import DiffWave

DATA = {"clip_samples": 256, "sample_rate": 4000, "num_classes": 2, "class_names": ["low", "high"]}


def test_diffwave_learns_two_tones_and_draws_each_when_asked():
    torch.manual_seed(0)
    model = build_model("diffwave", resolve_config("diffwave", "tiny", {"timesteps": 20}, DATA))
    assert isinstance(model, DiffWave) and model.metric_names() == ("eval/audio_fid",)
    t = torch.arange(256) / 4000
    tones = torch.stack([0.5 * torch.sin(2 * math.pi * f * t) for f in (250.0, 750.0)])[:, None]
    batch = {"audio": tones.repeat(4, 1, 1), "label": torch.tensor([0, 1] * 4)}
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    losses = []
    for _ in range(300):
        loss = model.loss("diffwave", batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-20:]) / 20 < 0.3 * sum(losses[:20]) / 20
    clips = model.eval().sample(2, torch.Generator().manual_seed(1), labels=torch.tensor([0, 1]))
    assert clips.shape == (2, 1, 256) and clips.abs().max() <= 1
    peaks = torch.fft.rfft(clips[:, 0]).abs().argmax(1) * 4000 / 256  # the strongest frequency of each clip
    assert peaks[0] < peaks[1], peaks  # the low class draws the lower tone
