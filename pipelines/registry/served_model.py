"""Logging a model's weights as an MLflow Model that carries its own code.

The model's code is the zoo (`models/`), the pyfunc that serves it (`serving/`) and the text
tokenizer (`tokens/`), logged as MLflow `code_paths`; its requirements are what those import
(torch, numpy, pandas, safetensors, pydantic; tokenizers for text), pinned to the versions that
trained it. So `mlflow.pyfunc.load_model`, `mlflow models serve` and the platforms that deploy
MLflow Models need neither genpipe nor Ray, DeepSpeed or s3fs.
"""

from __future__ import annotations

import inspect
import os
import tempfile
from importlib.metadata import version
from pathlib import Path
from typing import Any

import models
import serving
import tokens
import typed_errors
from models.weights import load_model
from serving.pyfunc import ANSWERS, ENTRY_SCRIPT, WEIGHTS_ARTIFACT, signature_and_example

CODE_PACKAGES = (models, serving, tokens, typed_errors)
SERVING_REQUIREMENTS = ("torch", "numpy", "pandas", "safetensors", "pydantic")


def requirements(modality: str) -> list[str]:
    """The served model's pip requirements (MLflow adds its own), pinned to what is installed here;
    a local build label (`2.5.1+cpu`) is dropped, as pip cannot find it on an index."""
    names = [*SERVING_REQUIREMENTS, *ANSWERS[modality].requirements]
    return [f"{name}=={version(name).split('+')[0]}" for name in names]


def code_paths() -> list[str]:
    """The packages a served model imports, as folders MLflow copies into the model."""
    return [str(Path(inspect.getfile(package)).parent) for package in CODE_PACKAGES]


def log_served_model(
    weights_folder: str, mlflow_client: Any, experiment_id: str, run_id: str, name: str, tags: dict[str, str]
) -> str:
    """Log the weights as an MLflow Model (a LoggedModel of the run's experiment, an output of the
    run); returns its model id. The caller has pointed MLflow's process-wide URIs at the server."""
    import mlflow.pyfunc
    from mlflow.entities import LoggedModelOutput

    model = load_model(weights_folder)
    signature, example = signature_and_example(model)
    logged = mlflow_client.create_logged_model(
        experiment_id, name=name, source_run_id=run_id, tags=tags, model_type=model.family
    )
    with tempfile.TemporaryDirectory() as folder:
        entry = os.path.join(folder, "genpipe_model.py")
        Path(entry).write_text(ENTRY_SCRIPT)
        mlflow.pyfunc.log_model(
            python_model=entry,
            artifacts={WEIGHTS_ARTIFACT: weights_folder},
            code_paths=code_paths(),
            signature=signature,
            input_example=example,
            pip_requirements=requirements(model.data_modality),
            model_id=logged.model_id,
        )
    mlflow_client.log_outputs(run_id, [LoggedModelOutput(logged.model_id, step=0)])
    return logged.model_id
