"""The evaluation key: two scores are comparable only when it is equal."""

from __future__ import annotations

import hashlib
import json

from pipelines.config import EvaluateConfig
from pipelines.evaluate.classifier import CLASSIFIER_VERSION


def evaluation_key(fingerprint: str, settings: EvaluateConfig) -> str:
    """Two scores are comparable only when this key is equal: same data, same evaluation."""
    material = {
        "dataset": fingerprint,
        "evaluate": settings.model_dump(mode="json", exclude={"num_cpus", "num_gpus"}),
        "classifier": CLASSIFIER_VERSION,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True).encode()).hexdigest()[:16]
