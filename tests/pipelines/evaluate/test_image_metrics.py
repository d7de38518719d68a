"""classifier-FID, class coverage, precision and recall, checked against cases with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.evaluate.classifier import class_coverage, frechet_distance, precision_recall


def test_frechet_distance_of_a_set_with_itself_is_zero():
    feats = np.random.default_rng(0).normal(size=(500, 8))
    assert frechet_distance(feats, feats) == pytest.approx(0, abs=1e-6)


def test_frechet_distance_of_a_shift_is_its_squared_length():
    rng = np.random.default_rng(1)
    feats = rng.normal(size=(2000, 4))
    shift = np.array([3.0, 0.0, 4.0, 0.0])
    assert frechet_distance(feats, feats + shift) == pytest.approx(25.0, rel=1e-6)


def test_frechet_distance_sees_a_change_of_spread():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(4000, 2)), 2 * rng.normal(size=(4000, 2))
    # Two isotropic Gaussians, sigma 1 and 2: Tr(I + 4I - 2*2I) = 2 per dimension pair -> 2.
    assert frechet_distance(a, b) == pytest.approx(2.0, rel=0.1)


def test_class_coverage_counts_confident_classes():
    probs = np.full((100, 10), 0.01)
    probs[:50, 3] = 0.91  # half confident threes
    probs[50:99, 7] = 0.91  # confident sevens
    probs[99, 1] = 0.91  # a single one: 1% of 100 samples counts
    assert class_coverage(probs) == 3
    probs[:, :] = 0.1  # nothing confident: nothing covered
    assert class_coverage(probs) == 0


def test_precision_and_recall_of_a_set_against_itself_are_one():
    feats = np.random.default_rng(3).normal(size=(400, 8))
    assert precision_recall(feats, feats) == (1.0, 1.0)


def test_a_collapsed_generator_has_precision_but_no_recall():
    rng = np.random.default_rng(4)
    real = rng.normal(size=(1000, 2))
    collapsed = 0.05 * rng.normal(size=(1000, 2))  # every sample near the real data's centre
    precision, recall = precision_recall(real, collapsed)
    assert precision > 0.95 and recall < 0.2


def test_samples_off_the_data_have_recall_but_no_precision():
    rng = np.random.default_rng(5)
    real = rng.normal(size=(1000, 2))
    # Spread over a far wider area: a few land on the data (so their balls, wide as the spread is
    # sparse, cover it), most do not.
    scattered = 6 * rng.normal(size=(1000, 2))
    precision, recall = precision_recall(real, scattered)
    assert precision < 0.3 and recall > 0.8


def test_precision_recall_uses_equal_counts_and_refuses_too_few():
    rng = np.random.default_rng(6)
    real, fake = rng.normal(size=(5000, 4)), rng.normal(size=(500, 4))
    precision, recall = precision_recall(real, fake)
    assert 0.6 < precision <= 1 and 0.6 < recall <= 1  # same distribution: both high
    with pytest.raises(ValueError, match="num_samples"):
        precision_recall(real[:3], fake[:3])
