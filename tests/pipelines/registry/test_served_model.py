"""Every family of the zoo as an MLflow Model: logged from its safetensors weights as a pyfunc from
code, loaded back with pickle deserialization disabled, and asked for samples with the input
example logged beside it (and, for image families, with a request of its own)."""

from __future__ import annotations

import json

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

import models
from data_prep.text_tokenizer import TOKENIZER_FILE, TextTokenizer
from models.weights import save_model
from pipelines.registry import tracking
from pipelines.registry.served_model import log_served_model
from pipelines.registry.versions import WEIGHTS_ARTIFACT

IMAGE_SHAPE = (1, 8, 8)
CLASSES = [str(digit) for digit in range(10)]
BYTES = TextTokenizer()
DATA = {"image_shape": IMAGE_SHAPE, "num_classes": len(CLASSES), "class_names": CLASSES, "context_len": 8}


def smallest(family: str) -> models.GenerativeModel:
    """The family's first preset, sized for the data here (a latent model gets a tiny VAE's spec)."""
    cls = models.family_class(family)
    params: dict = {"vocab_size": BYTES.vocab_size} if cls.modality == "text" else {}
    if "block_size" in cls.config_class.model_fields:
        params["block_size"] = 16
    for field in cls.registered_parts.values():
        vae = models.build_model("vae", models.resolve_config("vae", "tiny", {}, DATA))
        params |= {field: "models:/served-vae/1", f"{field}_spec": {"family": "vae", "config": vae.config.model_dump()}}
    if "timesteps" in cls.config_class.model_fields:
        params["timesteps"] = 20  # a short schedule: the example is sampled when the model is logged
    preset = next(iter(cls.presets))
    return models.build_model(family, models.resolve_config(family, preset, params, DATA))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    folder = tmp_path_factory.mktemp("served")
    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = tracking.client(uri)
    experiment = client.create_experiment("served", artifact_location=str(folder / "artifacts"))
    return uri, client, experiment, folder


@pytest.mark.parametrize("family", list(models.FAMILIES))
def test_every_family_serves_samples_without_pickle(family, store, monkeypatch):
    uri, client, experiment, folder = store
    model = smallest(family)
    weights = folder / family / WEIGHTS_ARTIFACT
    save_model(model, weights)
    if model.modality == "text":
        (weights / TOKENIZER_FILE).write_text(BYTES.to_json())
    run_id = client.create_run(experiment).info.run_id
    with tracking.pointed_at(uri):
        model_id = log_served_model(str(weights), client, experiment, run_id, family, {})
        monkeypatch.setenv("MLFLOW_ALLOW_PICKLE_DESERIALIZATION", "false")
        served = mlflow.pyfunc.load_model(f"models:/{model_id}")
        answer = served.predict(served.input_example)
        if model.modality != "text":
            needed = model.example_options(3)  # an image-to-image model's inputs
            options = {"options": [json.dumps(needed)]} if needed else {}
            asked = served.predict(pd.DataFrame({"n": [3], "seed": [1], **options}))
    assert client.get_logged_model(model_id).source_run_id == run_id
    if model.modality == "text":
        assert list(answer.columns) == ["completion"] and answer["completion"][0].startswith("The ")
        return
    if model.modality == "series":  # forecast paths (n, horizon) in the data's units
        assert answer.dtype == np.float32 and answer.shape == (2, model.config.horizon)
        assert asked.shape == (3, model.config.horizon) and np.isfinite(asked).all()
        return
    assert answer.dtype == np.float32 and answer.shape == (2, *IMAGE_SHAPE)
    assert asked.shape == (3, *IMAGE_SHAPE) and -1 <= asked.min() <= asked.max() <= 1
