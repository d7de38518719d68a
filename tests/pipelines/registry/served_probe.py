"""Run by the fresh-environment test with that environment's Python, outside the repository: load
each MLflow Model folder given, ask it for its input example, print one JSON line per model, and
name the heavy modules that loading pulled in (none may be genpipe's orchestration)."""

from __future__ import annotations

import base64
import json
import sys

import mlflow.pyfunc
import numpy as np

HEAVY = ("pipelines", "data_prep", "storage", "ray", "deepspeed", "s3fs")

for folder in sys.argv[1:]:
    model = mlflow.pyfunc.load_model(folder)
    answer = model.predict(model.input_example)
    if isinstance(answer, np.ndarray):
        print(json.dumps({"model": folder, "shape": list(answer.shape), "finite": bool(np.isfinite(answer).all())}))
    elif "midi" in answer:  # a music model's pieces
        print(json.dumps({"model": folder, "midi": base64.b64decode(answer["midi"][0])[:4].decode()}))
    else:
        print(json.dumps({"model": folder, "completion": str(answer["completion"][0])}))
print(json.dumps({"imported": sorted(name for name in HEAVY if name in sys.modules)}))
