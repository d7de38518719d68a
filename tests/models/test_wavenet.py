"""WaveNet: mu-law levels, a causal network whose cached generation computes what the whole
network computes, an exact likelihood in bits per sample, and class-conditioned clips."""

from __future__ import annotations

import math

import pytest
import torch

from models import build_model, resolve_config
from models.wavenet import WaveNet, mu_law_decode, mu_law_encode
from typed_errors import OptionError

DATA = {"clip_samples": 400, "sample_rate": 4000, "num_classes": 2, "class_names": ["major", "minor"]}


def tiny(**params) -> WaveNet:
    torch.manual_seed(0)
    model = build_model("wavenet", resolve_config("wavenet", "tiny", params, DATA))
    assert isinstance(model, WaveNet)
    return model


def test_mu_law_keeps_quiet_samples_finer_than_loud_ones():
    audio = torch.linspace(-1, 1, 10001)
    error = (mu_law_decode(mu_law_encode(audio)) - audio).abs()
    assert mu_law_encode(audio).min() == 0 and mu_law_encode(audio).max() == 255
    assert error[4900:5100].max() < 0.001 and error.max() < 0.04  # companding: fine near 0


def test_the_network_is_causal_and_cached_steps_compute_what_it_computes():
    model = tiny().eval()
    levels, labels = torch.randint(0, 256, (2, 300)), torch.tensor([0, 1])
    with torch.no_grad():
        full = model.wavenet(levels, labels)
        changed = levels.clone()
        changed[:, 200] = (changed[:, 200] + 128) % 256
        after = model.wavenet(changed, labels)
        assert torch.equal(full[:, :, :200], after[:, :, :200]) and not torch.equal(full[:, :, 200], after[:, :, 200])
        cached, windowed = model._cached_steps(2, labels), model._windowed_steps(2, labels, torch.device("cpu"))
        for t in range(300):
            assert torch.allclose(cached(levels[:, t]), full[:, :, t], atol=1e-5)
            assert torch.allclose(windowed(levels[:, t]), full[:, :, t], atol=1e-5)


def test_training_on_a_tone_brings_bits_per_sample_far_under_eight():
    model = tiny()
    t = torch.arange(400) / 4000
    tones = torch.stack([0.5 * torch.sin(2 * math.pi * f * t) for f in (220.0, 330.0)])[:, None]
    batch = {"audio": tones, "label": torch.tensor([0, 1])}
    start = model.evaluation_metrics(tones, 1, torch.Generator(), batch["label"])["eval/bits_per_sample"]
    assert start == pytest.approx(8, abs=0.5)  # near a uniform guess at initialisation
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model.loss("wavenet", batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert model.evaluation_metrics(tones, 1, torch.Generator(), batch["label"])["eval/bits_per_sample"] < 4


def test_clips_are_drawn_per_class_and_a_bad_label_is_named():
    model = tiny().eval()
    clips = model.sample(3, torch.Generator().manual_seed(0), length=50)
    assert clips.shape == (3, 1, 50) and clips.abs().max() <= 1
    assert model.requested_labels(3, torch.device("cpu")).tolist() == [0, 1, 0]
    assert model.sample_options(2, label="minor")["labels"].tolist() == [1, 1]
    with pytest.raises(OptionError, match="'dorian' is none of the model's classes"):
        model.sample_options(2, label="dorian")
    with pytest.raises(OptionError, match="unconditional"):
        tiny(conditional=False).sample_options(2, label="minor")
    with pytest.raises(OptionError, match="takes no prompt"):
        model.sample_options(2, prompt="a fugue")
