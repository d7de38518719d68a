"""The video families: ConvLSTM predicts from the past only and learns a motion, the video
diffusion model is conditioned on the frames just before the one it denoises, and both take
context and horizon as a request gives them, refusing what does not fit by name."""

from __future__ import annotations

import pytest
import torch

import models
from models.video_diffusion import VideoDiffusion
from typed_errors import OptionError

SHAPE = (1, 8, 8)
DATA = {"frame_shape": SHAPE, "clip_frames": 8, "context_frames": 4}


def build(family: str, **params) -> models.GenerativeModel:
    torch.manual_seed(0)
    return models.build_model(family, models.resolve_config(family, "tiny", params, DATA))


def moving_bar(batch: int, frames: int = 8) -> torch.Tensor:
    """A vertical bar moving one pixel right a frame from a random start, (B, T, 1, 8, 8) in [-1, 1]."""
    video = -torch.ones(batch, frames, *SHAPE)
    starts = torch.randint(0, 8, (batch,))
    for t in range(frames):
        video[torch.arange(batch), t, 0, :, (starts + t) % 8] = 1.0
    return video


def test_convlstm_predictions_depend_only_on_earlier_frames():
    model = build("convlstm").eval()
    context = torch.rand(2, 4, *SHAPE) * 2 - 1
    changed = context.clone()
    changed[:, 2] = -changed[:, 2]
    with torch.no_grad():
        before, after = model.convlstm(context, 3), model.convlstm(changed, 3)
    assert before.shape == (2, 4 - 1 + 3, *SHAPE)
    # Output i predicts frame i + 1 from frames 0..i: frame 2 changes outputs 2 onwards only.
    assert torch.equal(before[:, :2], after[:, :2]) and not torch.allclose(before[:, 2:], after[:, 2:])


def test_convlstm_learns_a_motion_better_than_holding_the_last_frame():
    model = build("convlstm", hidden_channels=(16,), downsample=0).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(150):
        loss = model.loss("convlstm", {"video": moving_bar(16)})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    clips = moving_bar(32)
    options = model.eval().sample_options(32, input=clips[:, :4], horizon=4)
    predicted = model.sample(32, **options)
    held = clips[:, 3:4].expand(-1, 4, -1, -1, -1)
    model_error, held_error = ((predicted - clips[:, 4:]) ** 2).mean(), ((held - clips[:, 4:]) ** 2).mean()
    assert model_error < 0.5 * held_error, (float(model_error), float(held_error))


def test_video_diffusion_denoises_a_frame_given_the_frames_just_before_it(monkeypatch):
    model = build("video-diffusion", condition_frames=2)
    seen = []
    monkeypatch.setattr(model, "run_network", lambda name, x, t, **_: seen.append(x) or torch.zeros_like(x[:, :1]))
    # Frame t holds the value t / 10 everywhere: the conditioning channels show which frames they are.
    video = (torch.arange(8).float() / 10).view(1, 8, 1, 1, 1).expand(64, 8, *SHAPE).clone()
    model.loss("unet", {"video": video})
    condition = seen[0][:, 1:].mean(dim=(2, 3)) * 10  # (B, 2): the frame numbers conditioned on
    assert torch.allclose(condition[:, 1] - condition[:, 0], torch.ones(64), atol=1e-4)  # consecutive
    assert condition.min() >= -1e-4 and condition.max() <= 6 + 1e-4  # frames 0..6: a later frame is the target
    assert len(condition[:, 0].round().unique()) > 1  # targets at several positions


@pytest.mark.parametrize("residual", [False, True])
def test_video_diffusion_draws_other_futures_from_other_noise(residual):
    model = build("video-diffusion", residual=residual).eval()
    context = moving_bar(2)[:, :4]
    first = model.sample(2, torch.Generator().manual_seed(0), context=context, horizon=2)
    again = model.sample(2, torch.Generator().manual_seed(0), context=context, horizon=2)
    other = model.sample(2, torch.Generator().manual_seed(1), context=context, horizon=2)
    assert first.shape == (2, 2, *SHAPE) and torch.equal(first, again) and not torch.equal(first, other)
    with pytest.raises(OptionError, match="at least 2 context frames"):
        model.sample(2, context=context[:, :1], horizon=2)


@pytest.mark.parametrize("family", ["convlstm", "video-diffusion"])
def test_requests_that_do_not_fit_are_refused_naming_the_option(family):
    model = build(family)
    clips = torch.zeros(2, 4, *SHAPE)
    with pytest.raises(OptionError) as missing:
        model.sample_options(2)
    assert missing.value.option == "input"
    for asked, option in [
        ({"input": torch.zeros(2, 4, 3, 8, 8)}, "input"),
        ({"input": clips, "horizon": 0}, "horizon"),
        ({"input": clips, "horizon": 2.5}, "horizon"),
        ({"input": clips, "label": "3"}, "label"),
    ]:
        with pytest.raises(OptionError) as refused:
            model.sample_options(2, **asked)
        assert refused.value.option == option
    with pytest.raises(OptionError) as count:
        model.sample_options(3, input=clips)
    assert count.value.option == "n"
    assert model.sample_options(2, input=clips.tolist())["horizon"] == 4  # the data's horizon by default


def test_configs_that_cannot_run_name_the_field():
    with pytest.raises(ValueError, match="context_frames"):
        models.resolve_config("convlstm", "tiny", {}, {**DATA, "context_frames": 8})
    with pytest.raises(ValueError, match="condition_frames"):
        models.resolve_config("video-diffusion", "tiny", {"condition_frames": 5}, DATA)
    with pytest.raises(ValueError, match="cannot be halved"):
        VideoDiffusion(models.resolve_config("video-diffusion", "tiny", {}, {**DATA, "frame_shape": (1, 9, 9)}))
