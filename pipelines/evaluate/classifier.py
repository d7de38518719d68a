"""The yardstick for every image family: classifier-FID, class coverage, precision and recall.

Inception features mean nothing on 8x8 digits and cannot be downloaded here, so a small CNN is
trained on the dataset's own train split (once per dataset fingerprint, cached next to the
shards as safetensors) and its penultimate features stand in for Inception's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from scipy import linalg
from torch import nn

from data_prep.manifest import Manifest
from data_prep.readers import read_arrays
from storage import exists, filesystem, join, write_bytes_atomic

CLASSIFIER_VERSION = "2"  # 2: trained on at most CLASSIFIER_ROWS rows
# Train rows the classifier learns from: the first shards' rows, read no further; tens of
# thousands are plenty for a small CNN, and a dataset of millions of images costs no more.
CLASSIFIER_ROWS = 50_000
FEATURE_DIM = 64


class DigitClassifier(nn.Module):
    """Two conv blocks and a 64-d feature layer; input (N, C, H, W) in [-1, 1] at any size."""

    def __init__(self, channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(channels, 32, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(32, 64, 3, padding=1),
            nn.GELU(),
            nn.AdaptiveAvgPool2d(4),
        )
        self.features = nn.Sequential(nn.Flatten(), nn.Linear(64 * 16, FEATURE_DIM), nn.GELU())
        self.head = nn.Linear(FEATURE_DIM, num_classes)

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.features(self.conv(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.embed(images))


def train_classifier(
    images: torch.Tensor, labels: torch.Tensor, num_classes: int, epochs: int, seed: int
) -> DigitClassifier:
    """The yardstick's CNN fitted on labelled images in [-1, 1]."""
    generator = torch.Generator().manual_seed(seed)
    classifier = DigitClassifier(images.shape[1], num_classes)
    optimizer = torch.optim.AdamW(classifier.parameters(), lr=3e-3)
    for _ in range(epochs):
        for rows in torch.randperm(len(images), generator=generator).split(64):
            # Light noise keeps the features meaningful on imperfect generated images.
            noisy = images[rows] + 0.05 * torch.randn(images[rows].shape, generator=generator)
            loss = F.cross_entropy(classifier(noisy), labels[rows])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return classifier.eval()


def load_or_train_classifier(manifest: Manifest, epochs: int, seed: int = 0) -> tuple[DigitClassifier, bool]:
    """The dataset's classifier, from the cache beside its shards or trained now; (model, cached)."""
    uri = join(manifest.uri, "classifier", f"v{CLASSIFIER_VERSION}-e{epochs}-s{seed}.safetensors")
    fs, path = filesystem(uri)
    classifier = DigitClassifier(manifest.images[0], manifest.num_classes)
    if exists(uri):
        with tempfile.TemporaryDirectory() as folder:
            fs.get(path, f"{folder}/c.safetensors")
            classifier.load_state_dict(load_file(f"{folder}/c.safetensors"))
        return classifier.eval(), True
    images, labels = (torch.from_numpy(a) for a in read_arrays(manifest, "train", limit=CLASSIFIER_ROWS))
    classifier = train_classifier(images, labels, manifest.num_classes, epochs, seed)
    with tempfile.TemporaryDirectory() as folder:
        local = Path(folder) / "c.safetensors"
        save_file(classifier.state_dict(), local)
        write_bytes_atomic(uri, local.read_bytes())
    return classifier, False


@torch.no_grad()
def features_and_predictions(classifier: DigitClassifier, images: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    feats, probs = [], []
    for chunk in images.split(512):
        embedded = classifier.embed(chunk.float())
        feats.append(embedded)
        probs.append(classifier.head(embedded).softmax(-1))
    return torch.cat(feats).double().numpy(), torch.cat(probs).numpy()


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^1/2), as in Heusel et al. (FID)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root, _ = linalg.sqrtm(cov_a @ cov_b, disp=False)
    if not np.isfinite(root).all():  # nearly singular product: regularise, as pytorch-fid does
        eps = np.eye(len(cov_a)) * 1e-6
        root = linalg.sqrtm((cov_a + eps) @ (cov_b + eps))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root.real))


def class_coverage(probabilities: np.ndarray, confidence: float = 0.5, min_share: float = 0.01) -> int:
    """How many classes the samples hit: a class counts when at least `min_share` of the samples
    are confidently (p >= `confidence`) classified as it. Mode collapse shows as a low count."""
    confident = probabilities.max(1) >= confidence
    counts = np.bincount(probabilities.argmax(1)[confident], minlength=probabilities.shape[1])
    return int((counts >= max(1, min_share * len(probabilities))).sum())


def knn_radii(features: torch.Tensor, k: int) -> torch.Tensor:
    """Each point's distance to its k-th nearest other point: the radius of its ball in the
    k-NN estimate of the set's manifold."""
    distances = torch.cdist(features, features)
    return distances.kthvalue(k + 1, dim=1).values  # the 1st nearest is the point itself


def within_manifold(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor) -> torch.Tensor:
    """For each point: does it fall inside at least one centre's ball?"""
    inside = [(torch.cdist(chunk, centres) <= radii).any(1) for chunk in points.split(1024)]
    return torch.cat(inside)


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """Improved precision and recall (Kynkäänniemi et al. 2019): precision is the share of
    generated samples inside the real data's k-NN manifold (fidelity), recall the share of real
    samples inside the generated samples' manifold (diversity). k = 3, as the paper recommends.

    Written here (not torchmetrics or the authors' TF code) because it is a few lines over the
    features this module already computes; both sets are cut to the same size, as in the paper,
    since a manifold of more points covers more."""
    count = min(len(real), len(fake))
    if count <= k:
        raise ValueError(f"evaluate.num_samples: precision/recall needs more than {k} samples and val images")
    real_t, fake_t = torch.from_numpy(real[:count]), torch.from_numpy(fake[:count])
    precision = within_manifold(fake_t, real_t, knn_radii(real_t, k)).double().mean()
    recall = within_manifold(real_t, fake_t, knn_radii(fake_t, k)).double().mean()
    return float(precision), float(recall)


def score_samples(
    classifier: DigitClassifier, samples: torch.Tensor, reference: torch.Tensor, requested: torch.Tensor | None = None
) -> dict[str, float]:
    """classifier-FID of `samples` against `reference` (the val split), class coverage, precision
    and recall; with the labels a conditional model was asked for, also how often the classifier
    sees them."""
    sample_feats, sample_probs = features_and_predictions(classifier, samples)
    reference_feats, _ = features_and_predictions(classifier, reference)
    precision, recall = precision_recall(reference_feats, sample_feats)
    scores = {
        "classifier_fid": frechet_distance(sample_feats, reference_feats),
        "class_coverage": class_coverage(sample_probs),
        "precision": precision,
        "recall": recall,
    }
    if requested is not None:
        wanted = requested.cpu().numpy()
        hits = sample_probs.argmax(1) == wanted
        scores["class_accuracy"] = float(hits.mean())
        for label in np.unique(wanted):  # does "seven" give sevens? one score per requested class
            scores[f"class_accuracy_{label}"] = float(hits[wanted == label].mean())
    return scores
