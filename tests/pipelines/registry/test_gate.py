"""The champion/challenger decision on hand-made scores."""

from __future__ import annotations

import pytest

from pipelines.config import EvaluateConfig, GateConfig
from pipelines.evaluate.key import evaluation_key
from pipelines.registry.gate import decide

FID = "eval/classifier_fid"


def test_no_champion_means_promotion():
    decision = decide(GateConfig(), {FID: 40.0}, None, None)
    assert decision.promote and decision.reason == "no champion yet"


def test_lower_fid_wins_only_past_the_margin():
    gate = GateConfig(min_improvement=2.0)
    assert decide(gate, {FID: 37.0}, {FID: 40.0}, 3).promote
    kept = decide(gate, {FID: 39.0}, {FID: 40.0}, 3)
    assert not kept.promote and "does not beat the champion's 40" in kept.reason
    assert kept.tags()["genpipe.gate.champion_version"] == "3"
    assert kept.tags()["genpipe.gate.decision"] == "rejected"


def test_equal_scores_keep_the_champion():
    assert not decide(GateConfig(), {FID: 40.0}, {FID: 40.0}, 1).promote


def test_max_mode_for_metrics_where_higher_is_better():
    gate = GateConfig(metric="eval/class_coverage", mode="max")
    assert decide(gate, {"eval/class_coverage": 10}, {"eval/class_coverage": 9}, 1).promote
    assert not decide(gate, {"eval/class_coverage": 8}, {"eval/class_coverage": 9}, 1).promote


def test_unknown_metric_is_named():
    with pytest.raises(ValueError, match="register.gate.metric: 'eval/nope'"):
        decide(GateConfig(metric="eval/nope"), {FID: 1.0}, None, None)


def test_evaluation_key_changes_with_data_or_settings():
    base = evaluation_key("abc", EvaluateConfig())
    assert base == evaluation_key("abc", EvaluateConfig(num_cpus=1))  # resources do not change scores
    assert base != evaluation_key("abd", EvaluateConfig())
    assert base != evaluation_key("abc", EvaluateConfig(num_samples=100))
