"""Scoring a video model: it is given the first `context_frames` of each val clip and predicts the
rest; per horizon step, the mean squared error and SSIM of its frames against the true ones
(pixels in [0, 1]), beside the copy-last-frame baseline (the last context frame, held); and the
Fréchet distance of its frames to the true future frames on the features of a classifier trained
on the data's own frames (classifier-FID: sharpness and plausibility, which MSE does not reward).
For the model under evaluation: the per-step table (`horizon.json`) and its first predictions as
GIFs beside the truth.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_prep.manifest import Manifest
from data_prep.modalities.video.modality import video_info
from data_prep.readers import read_split
from models.base import GenerativeModel
from pipelines.config import EvaluateConfig
from pipelines.evaluate.classifier import features_and_predictions, frechet_distance, train_classifier
from serving.video import Video, gif_bytes, png_bytes, side_by_side, truth_over_prediction

CLIPS_SAVED = 4
CLASSIFIER_FRAMES = 20_000  # train frames the yardstick learns from (a few per clip)
HORIZON_FILE = "horizon.json"


def frame_errors(predicted: torch.Tensor, truth: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Per horizon step, over clips: mean squared error and SSIM of (N, H, C, h, w) frames in
    [-1, 1], both on pixels in [0, 1] (the usual units of Moving MNIST results)."""
    from pytorch_msssim import ssim

    a, b = (predicted.float() + 1) / 2, (truth.float() + 1) / 2
    mse = ((a - b) ** 2).mean(dim=(0, 2, 3, 4)).numpy()
    side = min(a.shape[-2:])
    window = min(7, side if side % 2 else side - 1)  # pytorch_msssim's window must fit the frame and be odd
    per_frame = ssim(a.flatten(0, 1), b.flatten(0, 1), data_range=1.0, size_average=False, win_size=window)
    return mse, per_frame.view(a.shape[0], a.shape[1]).mean(dim=0).numpy()


def copy_last(context: torch.Tensor, horizon: int) -> torch.Tensor:
    """The baseline: the last context frame, held for the horizon."""
    return context[:, -1:].expand(-1, horizon, *context.shape[2:])


def frames_of(clips: torch.Tensor, labels: torch.Tensor, limit: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Up to `limit` frames (with their clip's label) drawn evenly from (N, T, C, H, W) clips."""
    frames, frame_labels = clips.flatten(0, 1), labels.repeat_interleave(clips.shape[1])
    if len(frames) > limit:
        rows = torch.randperm(len(frames), generator=torch.Generator().manual_seed(seed))[:limit]
        frames, frame_labels = frames[rows], frame_labels[rows]
    return frames, frame_labels


def video_scorer(manifest: Manifest, settings: EvaluateConfig) -> tuple[Any, dict[str, Any]]:
    info = video_info(manifest)
    train = read_split(manifest, "train", limit=max(settings.num_samples, CLASSIFIER_FRAMES // info.clip_frames))
    train_clips, train_labels = torch.from_numpy(train["video"]), torch.from_numpy(train["label"])
    classifier = train_classifier(
        *frames_of(train_clips, train_labels, CLASSIFIER_FRAMES, settings.seed),
        max(2, manifest.num_classes),
        settings.classifier_epochs,
        settings.seed,
    )
    val = torch.from_numpy(read_split(manifest, "val", limit=settings.num_samples)["video"])
    context, truth = val[:, : info.context_frames], val[:, info.context_frames :]
    horizon = truth.shape[1]
    true_features, _ = features_and_predictions(classifier, truth.flatten(0, 1))
    baseline_mse, baseline_ssim = frame_errors(copy_last(context, horizon), truth)

    def score(model: GenerativeModel, artifacts: Path | None) -> dict[str, float]:
        device = next(model.parameters()).device
        generator = torch.Generator(device).manual_seed(settings.seed)
        started = time.perf_counter()
        options = {"context": context.to(device), "horizon": horizon}  # what VideoFamily.sample takes
        predicted = model.sample(len(val), generator, **options).cpu()
        seconds = time.perf_counter() - started
        mse, ssim = frame_errors(predicted, truth)
        features, _ = features_and_predictions(classifier, predicted.flatten(0, 1))
        metrics = {
            "eval/frame_mse": float(mse.mean()),
            "eval/frame_ssim": float(ssim.mean()),
            "eval/frame_fid": frechet_distance(features, true_features),
            "eval/frame_mse_last_step": float(mse[-1]),
            "eval/frame_mse_copy_last": float(baseline_mse.mean()),
            "eval/frame_ssim_copy_last": float(baseline_ssim.mean()),
            "eval/frames_per_second": predicted.shape[0] * horizon / max(seconds, 1e-9),
        }
        if artifacts is not None:
            real, _ = features_and_predictions(classifier, train_clips[: len(val), info.context_frames :].flatten(0, 1))
            metrics["eval/frame_fid_real_data"] = frechet_distance(real, true_features)
            table = {
                "step": list(range(1, horizon + 1)),
                "mse": mse.tolist(),
                "ssim": ssim.tolist(),
                "mse_copy_last": baseline_mse.tolist(),
                "ssim_copy_last": baseline_ssim.tolist(),
            }
            (artifacts / HORIZON_FILE).write_text(json.dumps(table, indent=1))
            save_predictions(context[:CLIPS_SAVED], truth[:CLIPS_SAVED], predicted[:CLIPS_SAVED], artifacts)
        return metrics

    return score, {"classifier_frames": min(CLASSIFIER_FRAMES, train_clips.shape[0] * train_clips.shape[1])}


def save_predictions(context: torch.Tensor, truth: torch.Tensor, predicted: torch.Tensor, artifacts: Path) -> None:
    """Each clip as `videos/clip_<i>.gif` (the truth left, the prediction right, after the same
    context), all of them one above the other as `samples.gif`, and `samples.png`: per clip, the
    true frames over the predicted ones."""
    folder = artifacts / "videos"
    folder.mkdir(parents=True, exist_ok=True)
    pairs = []
    for index in range(len(context)):
        shown = [Video(context[index].numpy(), clip[index].numpy()).pixels() for clip in (truth, predicted)]
        pairs.append(side_by_side(*shown))
        (folder / f"clip_{index}.gif").write_bytes(gif_bytes(pairs[-1], Video.fps))
    (artifacts / "samples.gif").write_bytes(gif_bytes(np.concatenate(pairs, axis=1), Video.fps))
    (artifacts / "samples.png").write_bytes(png_bytes(truth_over_prediction(truth.numpy(), predicted.numpy())))
