"""The evaluation key: two scores are comparable only when it is equal."""

from __future__ import annotations

import hashlib
import json

from pipelines.config import EvaluateConfig
from pipelines.evaluate.classifier import CLASSIFIER_VERSION

# Bumped when the metrics computed change, so a champion scored before is scored again: 2 added
# precision and recall.
SCORES_VERSION = "2"


def evaluation_key(fingerprint: str, settings: EvaluateConfig) -> str:
    """Two scores are comparable only when this key is equal: same data, same evaluation."""
    material = {
        "dataset": fingerprint,
        "evaluate": settings.model_dump(mode="json", exclude={"num_cpus", "num_gpus"}),
        "classifier": CLASSIFIER_VERSION,
        "scores": SCORES_VERSION,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
