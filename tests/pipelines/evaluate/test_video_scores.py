"""The video scores: MSE and SSIM per horizon step, and the copy-last-frame baseline they are read against."""

from __future__ import annotations

import numpy as np
import torch

from pipelines.evaluate.video import copy_last, frame_errors, frames_of


def moving_square(frames: int = 6) -> torch.Tensor:
    video = -torch.ones(4, frames, 1, 16, 16)
    for t in range(frames):
        video[:, t, :, 4:8, t + 2 : t + 6] = 1.0
    return video


def test_a_perfect_prediction_scores_zero_error_and_full_similarity():
    video = moving_square()
    mse, ssim = frame_errors(video, video)
    assert mse.shape == ssim.shape == (6,)
    assert np.allclose(mse, 0) and np.allclose(ssim, 1, atol=1e-5)


def test_holding_the_last_frame_of_a_moving_square_gets_worse_with_the_horizon():
    video = moving_square(8)
    context, future = video[:, :3], video[:, 3:]
    held = copy_last(context, 5)
    assert torch.equal(held[:, 0], context[:, -1]) and torch.equal(held[:, 4], context[:, -1])
    mse, ssim = frame_errors(held, future)
    assert (np.diff(mse) >= 0).all() and mse[0] > 0
    assert 1 > ssim[0] > ssim[1] > ssim[2]  # while the held square still overlaps the moving one
    # In [0, 1] pixels: the square (16 pixels) moved one column: 4 pixels differ by 1 on each side.
    assert np.isclose(mse[0], 8 / 256)
    # A still video is predicted perfectly by holding its last frame.
    still = video[:, :1].expand(-1, 8, -1, -1, -1)
    assert np.allclose(frame_errors(copy_last(still[:, :3], 5), still[:, 3:])[0], 0)


def test_frames_for_the_classifier_keep_their_clip_label():
    clips = torch.arange(3).float().view(3, 1, 1, 1, 1).expand(3, 5, 1, 2, 2)
    frames, labels = frames_of(clips, torch.tensor([7, 8, 9]), limit=100, seed=0)
    assert frames.shape == (15, 1, 2, 2) and torch.equal(labels, torch.tensor([7] * 5 + [8] * 5 + [9] * 5))
    few, few_labels = frames_of(clips, torch.tensor([7, 8, 9]), limit=4, seed=0)
    assert len(few) == 4
    assert all(int(label) == 7 + int(frame.max()) for frame, label in zip(few, few_labels, strict=True))
