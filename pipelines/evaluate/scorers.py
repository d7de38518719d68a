"""Scorers: a model in, its metrics out (and, for the model under evaluation, its pictures).

The same scorer scores the champion, so both are judged alike. Images: classifier-FID, class
coverage, precision and recall of its samples (of its translations, for an image-to-image model:
pipelines/evaluate/translation.py) and whatever the family adds (`evaluation_metrics`,
`evaluation_pictures`). Text: val loss, perplexity and bits per byte, and completions of fixed
prompts. Series: one-step forecasts of the held-out tail (pipelines/evaluate/forecasts.py).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from data_prep.manifest import Manifest
from data_prep.readers import read_arrays, read_split, read_tokens
from data_prep.text_tokenizer import load_tokenizer
from models.base import GenerativeModel
from pipelines.config import EvaluateConfig
from pipelines.evaluate.audio import audio_scorer
from pipelines.evaluate.classifier import DigitClassifier, load_or_train_classifier, score_samples
from pipelines.evaluate.forecasts import series_scorer
from pipelines.evaluate.music import music_scorer
from pipelines.evaluate.pictures import save_class_grids, save_grid
from pipelines.evaluate.text_metrics import score_text
from pipelines.evaluate.translation import score_translations
from pipelines.evaluate.video import video_scorer
from serving.drawing import complete

# A scorer turns a model into metrics, and (for the model under evaluation) writes its artifacts
# into a folder: the same function scores the champion, so both are judged alike.
Scorer = Callable[[GenerativeModel, Path | None], dict[str, float]]
# Val images classifier-FID compares samples with: the first shards' rows, read no further.
REFERENCE_ROWS = 10_000
TABLE_FILE = "completions.json"  # a text model's completions, logged as an MLflow table


def image_scorer(manifest: Manifest, settings: EvaluateConfig) -> tuple[Scorer, dict[str, Any]]:
    classifier, cached = load_or_train_classifier(manifest, settings.classifier_epochs, settings.seed)
    val = read_split(manifest, "val", limit=max(REFERENCE_ROWS, settings.num_samples))
    val_images = torch.from_numpy(val["image"])

    def score(model: GenerativeModel, artifacts: Path | None) -> dict[str, float]:
        device = next(model.parameters()).device
        generator = torch.Generator(device).manual_seed(settings.seed)
        if model.translates:
            if manifest.domains is None:
                raise ValueError(f"model.family: {model.family} translates between two domains; {manifest.uri} has one")
            metrics = score_translations(
                model, classifier, val, manifest.domains, settings.num_samples, generator, artifacts
            )
        else:
            metrics = _score_samples(model, classifier, val_images, manifest, settings, generator, artifacts)
        val_on_device = val_images[: settings.num_samples].to(device)
        val_labels = torch.from_numpy(val["label"][: settings.num_samples])
        metrics.update(model.evaluation_metrics(val_on_device, settings.iw_samples, generator, val_labels))
        if artifacts is not None:
            for name, (pictures, columns) in model.evaluation_pictures(val_on_device, generator).items():
                save_grid(pictures, artifacts / name, columns=columns)
            # The floor to read the score against: real train images scored the same way.
            train_images = torch.from_numpy(read_arrays(manifest, "train", limit=settings.num_samples)[0])
            metrics["eval/classifier_fid_real_data"] = score_samples(classifier, train_images, val_images)[
                "classifier_fid"
            ]
        return metrics

    return score, {"classifier_cached": cached}


def _score_samples(
    model: GenerativeModel,
    classifier: DigitClassifier,
    val_images: torch.Tensor,
    manifest: Manifest,
    settings: EvaluateConfig,
    generator: torch.Generator,
    artifacts: Path | None,
) -> dict[str, float]:
    """A generative model's samples against the val images (and their grids)."""
    samples = model.sample(settings.num_samples, generator=generator).cpu()
    # A conditional model's sample() asks for every class in turn: score them against those.
    requested = model.requested_labels(len(samples), samples.device)
    metrics = {f"eval/{k}": v for k, v in score_samples(classifier, samples, val_images, requested).items()}
    if artifacts is not None:
        save_grid(samples[: settings.grid_size], artifacts / "samples.png")
        if requested is not None:
            save_class_grids(samples, requested, manifest.class_names, metrics, artifacts / "samples_by_class")
    return metrics


def scorer_for(manifest: Manifest, settings: EvaluateConfig) -> tuple[Scorer, dict[str, Any]]:
    """The scorer of the dataset's modality (one per name in data_prep's modality registry)."""
    return EVALUATIONS[manifest.modality].scorer(manifest, settings)


def text_scorer(manifest: Manifest, settings: EvaluateConfig) -> tuple[Scorer, dict[str, Any]]:
    blocks = torch.from_numpy(read_tokens(manifest, "val", limit=settings.num_samples))
    tokenizer = load_tokenizer(manifest.tokenizer_uri)
    bytes_per_token = manifest.tokens.bytes_per_token("val")

    def score(model: GenerativeModel, artifacts: Path | None) -> dict[str, float]:
        metrics = {f"eval/{k}": v for k, v in score_text(model, blocks, bytes_per_token).items()}
        if artifacts is not None:
            generator = torch.Generator(next(model.parameters()).device).manual_seed(settings.seed)
            options = (settings.max_new_tokens, settings.temperature, settings.top_k, generator)
            completions = [complete(model, tokenizer, prompt, *options) for prompt in settings.prompts]
            pairs = zip(settings.prompts, completions, strict=True)
            sections = [f"## {prompt!r}\n\n```\n{text}\n```\n" for prompt, text in pairs]
            (artifacts / "samples.md").write_text("\n".join(sections))
            table = {"prompt": list(settings.prompts), "completion": completions}
            (artifacts / TABLE_FILE).write_text(json.dumps(table))
        return metrics

    return score, {"val_blocks": len(blocks)}


def _series_scorer(manifest: Manifest, settings: EvaluateConfig) -> tuple[Scorer, dict[str, Any]]:
    return series_scorer(manifest, settings.num_samples, settings.seed)


def _shared_classifier(manifest: Manifest, settings: EvaluateConfig) -> None:
    load_or_train_classifier(manifest, settings.classifier_epochs, settings.seed)


@dataclass(frozen=True)
class Evaluation:
    """How one modality is scored: its scorer, what the evaluate step says it does, and what its
    scorer shares across a sweep's trials (trained once beside the shards, not raced for)."""

    scorer: Callable[[Manifest, EvaluateConfig], tuple[Scorer, dict[str, Any]]]
    description: str
    shared: Callable[[Manifest, EvaluateConfig], None] | None = None


# The one evaluation of each modality of data_prep/modalities/registry.py, by its name.
EVALUATIONS: dict[str, Evaluation] = {
    "image": Evaluation(image_scorer, "the classifier, then the model's samples", _shared_classifier),
    "text": Evaluation(text_scorer, "bits per byte on the val blocks, then completions"),
    "series": Evaluation(_series_scorer, "forecasts against the held-out tail"),
    "music": Evaluation(music_scorer, "bits per token on the val blocks, then pieces against held-out music"),
    "audio": Evaluation(audio_scorer, "an audio classifier, then the model's clips against the val clips"),
    "video": Evaluation(video_scorer, "a frame classifier, then the model's predictions of the val clips' futures"),
}
