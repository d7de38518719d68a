"""Scoring an audio model: a Fréchet distance between its clips and the val clips on the features
of a classifier trained on the data's own train clips (the audio counterpart of classifier-FID),
how often a conditional model draws the class it was asked for, and what the family adds (bits
per sample for WaveNet); for the model under evaluation, its first clips as WAV and spectrograms.

The classifier is the image yardstick's small CNN (pipelines/evaluate/classifier.py) over log
spectrograms. It is trained for each evaluation, not cached: on a few thousand clips it takes
seconds, and the model and the champion are scored by the same one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from data_prep.manifest import Manifest
from data_prep.modalities.audio.modality import audio_info
from data_prep.readers import read_split
from models.base import GenerativeModel
from pipelines.config import EvaluateConfig
from pipelines.evaluate.classifier import CLASSIFIER_ROWS, features_and_predictions, frechet_distance, train_classifier
from pipelines.evaluate.pictures import stack_pictures
from serving.audio import Clip, log_spectrogram

CLIPS_SAVED = 4
# The classifier sees each log spectrogram averaged down to this (frequency bands, time frames):
# a small picture, so it trains in seconds on CPU however long the clips are.
CLASSIFIER_GRID = (32, 16)


def classifier_input(audio: torch.Tensor) -> torch.Tensor:
    return F.adaptive_avg_pool2d(log_spectrogram(audio), CLASSIFIER_GRID)


def audio_scorer(manifest: Manifest, settings: EvaluateConfig) -> tuple[Any, dict[str, Any]]:
    info = audio_info(manifest)
    train = read_split(manifest, "train", limit=CLASSIFIER_ROWS)
    classifier = train_classifier(
        classifier_input(torch.from_numpy(train["audio"])),
        torch.from_numpy(train["label"]),
        max(2, manifest.num_classes),
        settings.classifier_epochs,
        settings.seed,
    )
    val = read_split(manifest, "val", limit=settings.num_samples)
    val_audio, val_labels = torch.from_numpy(val["audio"]), torch.from_numpy(val["label"])
    val_features, _ = features_and_predictions(classifier, classifier_input(val_audio))

    def score(model: GenerativeModel, artifacts: Path | None) -> dict[str, float]:
        device = next(model.parameters()).device
        generator = torch.Generator(device).manual_seed(settings.seed)
        clips = model.sample(len(val_audio), generator=generator).cpu()
        features, probabilities = features_and_predictions(classifier, classifier_input(clips))
        metrics = {"eval/audio_fid": frechet_distance(features, val_features)}
        requested = model.requested_labels(len(clips), clips.device)
        if requested is not None:
            metrics["eval/class_accuracy"] = float((probabilities.argmax(1) == requested.numpy()).mean())
        metrics.update(model.evaluation_metrics(val_audio.to(device), settings.iw_samples, generator, val_labels))
        if artifacts is not None:
            real, _ = features_and_predictions(
                classifier, classifier_input(torch.from_numpy(train["audio"][: len(clips)]))
            )
            metrics["eval/audio_fid_real_data"] = frechet_distance(real, val_features)
            save_clips(clips[:CLIPS_SAVED].numpy(), info.sample_rate, artifacts)
        return metrics

    return score, {"classifier_clips": len(train["audio"])}


def save_clips(clips: np.ndarray, sample_rate: int, artifacts: Path) -> None:
    """Each clip as `clips/clip_<i>.wav` and `.png` (its spectrogram), and the spectrograms one
    above the other as `samples.png`."""
    folder = artifacts / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    for index, samples in enumerate(clips):
        clip = Clip(samples[0], sample_rate)
        for suffix in (".wav", ".png"):
            (folder / f"clip_{index}{suffix}").write_bytes(clip.file_bytes(suffix))
    stack_pictures([folder / f"clip_{index}.png" for index in range(len(clips))], artifacts / "samples.png")
