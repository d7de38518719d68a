"""Scoring an image-to-image model (a family that `translates`): each direction's translations of
val images against the other domain's val images, with the same yardstick as every image family
(classifier-FID, coverage, precision, recall), label preservation (does the classifier still see
the input's class in its translation: `class_accuracy`), and, when the data was made by a known
map, the L1 distance to the true translation beside the identity mapping's (the trivial baseline).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from data_prep.columns import Columns
from data_prep.domains import apply_map
from data_prep.manifest import DomainInfo
from models.base import GenerativeModel
from pipelines.evaluate.classifier import DigitClassifier, score_samples
from pipelines.evaluate.pictures import save_grid

DIRECTIONS = {"a2b": (0, 1), "b2a": (1, 0)}  # (source domain, target domain)
SHOWN_PAIRS = 32


def side_by_side(inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """Input, translation, input, translation...: a grid of an even number of columns shows pairs."""
    return torch.stack([inputs, outputs], dim=1).flatten(0, 1)


def score_translations(
    model: GenerativeModel,
    classifier: DigitClassifier,
    val: Columns,
    domains: DomainInfo,
    count: int,
    generator: torch.Generator,
    artifacts: Path | None,
) -> dict[str, float]:
    """`eval/<direction>_<metric>` for both directions and `eval/<metric>`, their mean."""
    images, labels, domain = (torch.from_numpy(val[name]) for name in ("image", "label", "domain"))
    device = next(model.parameters()).device
    for side, name in enumerate(domains.names):
        if not (domain == side).any():
            raise ValueError(f"data.val_fraction: the val split holds no image of domain {name!r}")
    per_direction: dict[str, dict[str, float]] = {}
    for direction, (source, target) in DIRECTIONS.items():
        rows = (domain == source).nonzero().squeeze(1)[:count]
        inputs = images[rows]
        options = model.sample_options(len(inputs), input=inputs.to(device), direction=direction)
        translated = model.sample(len(inputs), generator, **options).cpu()
        scores = score_samples(classifier, translated, images[domain == target], labels[rows])
        scores = {name: value for name, value in scores.items() if not name.startswith("class_accuracy_")}
        if domains.b_from_a:
            truth = torch.from_numpy(apply_map(domains.b_from_a, inputs.numpy(), inverse=direction == "b2a"))
            scores["l1_to_truth"] = float((translated - truth).abs().mean())
            scores["identity_l1_to_truth"] = float((inputs - truth).abs().mean())
        per_direction[direction] = scores
        if artifacts is not None:
            name = "samples.png" if direction == "a2b" else f"translations_{direction}.png"
            pairs = side_by_side(inputs[:SHOWN_PAIRS], translated[:SHOWN_PAIRS])
            save_grid(pairs, artifacts / name, columns=8)
    metrics = {f"eval/{d}_{name}": value for d, scores in per_direction.items() for name, value in scores.items()}
    for name in per_direction["a2b"]:
        metrics[f"eval/{name}"] = float(np.mean([scores[name] for scores in per_direction.values()]))
    return metrics
