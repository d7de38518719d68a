"""The `python_function` flavor of a registered model, written as models-from-code.

MLflow keeps a three-line script (`ENTRY_SCRIPT`) that builds `GenerativePyfunc`, not a pickle of
it; the weights stay safetensors in the model's `weights` artifact and are read by `load_context`.
So `mlflow.pyfunc.load_model("models:/NAME@champion")` and `mlflow models serve` work with
MLFLOW_ALLOW_PICKLE_DESERIALIZATION=false, wherever the model's own requirements are installed.

One request row asks for samples:
- image families: `n` images (and optionally `seed`, `label`, `prompt`, `guidance`, `sampler`,
  `steps`, and `options`: the family's own sampling options as a JSON object); the answer is every
  row's images, concatenated, as a float32 array (N, C, H, W) in [-1, 1];
- text families: a completion of `prompt` (optionally `max_new_tokens`, `temperature`, `top_k`,
  `seed`); the answer has one `completion` per row;
- music (a language model of music): `n` pieces (optionally `max_new_tokens`, `temperature`,
  `top_k`, `seed`); the answer has one row per piece: `midi` (a MIDI file, base64) and `notes`;
- audio families: `n` clips (optionally `seed`, `label`), float32 (N, 1, samples) in [-1, 1];
- video families: `n` predictions (`options`: {"input": context clips (N, T, C, H, W) in [-1, 1],
  "horizon": 10}), float32 (N, horizon, C, H, W) in [-1, 1];
- forecasters: `n` sampled paths past the end of the series (`options`: {"horizon": 30}), float32
  (N, horizon) in the data's units.
"""

from __future__ import annotations

import base64
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from mlflow.models.signature import ModelSignature
from mlflow.pyfunc import PythonModel
from mlflow.types import ColSpec, Schema, TensorSpec

from models.base import GenerativeModel
from models.weights import load_model
from serving.drawing import draw_completions, draw_images
from serving.music import draw_pieces, midi_bytes, playable
from tokens.music import MUSIC_TOKENIZER_FILE, MusicTokenizer
from tokens.text_tokenizer import TOKENIZER_FILE, TextTokenizer

WEIGHTS_ARTIFACT = "weights"  # the artifact (a folder: safetensors + config) the model loads from
ENTRY_SCRIPT = """\
from mlflow.models import set_model

from serving.pyfunc import GenerativePyfunc

set_model(GenerativePyfunc())
"""

IMAGE_REQUEST = Schema(
    [
        ColSpec("long", "n"),
        ColSpec("long", "seed", required=False),
        ColSpec("string", "label", required=False),
        ColSpec("string", "prompt", required=False),
        ColSpec("double", "guidance", required=False),
        ColSpec("string", "sampler", required=False),
        ColSpec("long", "steps", required=False),
        ColSpec("string", "options", required=False),
    ]
)
TEXT_REQUEST = Schema(
    [
        ColSpec("string", "prompt"),
        ColSpec("long", "max_new_tokens", required=False),
        ColSpec("double", "temperature", required=False),
        ColSpec("long", "top_k", required=False),
        ColSpec("long", "seed", required=False),
    ]
)
MUSIC_REQUEST = Schema(
    [
        ColSpec("long", "n"),
        ColSpec("long", "max_new_tokens", required=False),
        ColSpec("double", "temperature", required=False),
        ColSpec("long", "top_k", required=False),
        ColSpec("long", "seed", required=False),
    ]
)
TEXT_EXAMPLE_TOKENS = 16


def _given(row: dict[str, Any]) -> dict[str, Any]:
    """A request row without the columns left empty (missing, None or NaN), numpy scalars as Python's."""
    values = {}
    for key, value in row.items():
        if value is None or (isinstance(value, float) and math.isnan(value)):
            continue
        values[key] = value.item() if isinstance(value, np.generic) else value
    return values


class Completions:
    """A text model's answers: one `completion` per request row, decoded with the data's tokenizer."""

    requirements = ("tokenizers",)  # pip packages beyond serving's own

    def __init__(self, model: GenerativeModel, folder: Path):
        self.model, self.tokenizer = model, TextTokenizer.read(folder / TOKENIZER_FILE)

    def answer(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        return pd.DataFrame({"completion": [draw_completions(self.model, self.tokenizer, **row)[0] for row in rows]})

    @staticmethod
    def signature(model: GenerativeModel) -> tuple[ModelSignature, pd.DataFrame]:
        example = pd.DataFrame({"prompt": ["The "], "max_new_tokens": [TEXT_EXAMPLE_TOKENS], "seed": [0]})
        return ModelSignature(TEXT_REQUEST, Schema([ColSpec("string", "completion")])), example


class Pieces:
    """A music model's answers: each request row's `n` pieces, one answer row per piece, as MIDI."""

    requirements = ("mido",)

    def __init__(self, model: GenerativeModel, folder: Path):
        self.model = model
        self.tokenizer = MusicTokenizer.from_json((folder / MUSIC_TOKENIZER_FILE).read_text())

    def answer(self, rows: list[dict[str, Any]]) -> pd.DataFrame:
        midi, notes = [], []
        for row in rows:
            for piece in draw_pieces(self.model, self.tokenizer, **row):
                midi.append(base64.b64encode(midi_bytes(piece, self.tokenizer.ticks_per_quarter)).decode())
                notes.append(len(playable(piece)))  # as the MIDI file holds them
        return pd.DataFrame({"midi": midi, "notes": notes})

    @staticmethod
    def signature(model: GenerativeModel) -> tuple[ModelSignature, pd.DataFrame]:
        answer = Schema([ColSpec("string", "midi"), ColSpec("long", "notes")])
        example = pd.DataFrame({"n": [1], "max_new_tokens": [TEXT_EXAMPLE_TOKENS], "seed": [0]})
        return ModelSignature(MUSIC_REQUEST, answer), example


class Arrays:
    """An image model's (or a forecaster's) answers: every row's samples, concatenated, as float32."""

    requirements: tuple[str, ...] = ()

    def __init__(self, model: GenerativeModel, folder: Path):
        self.model = model

    def answer(self, rows: list[dict[str, Any]]) -> np.ndarray:
        batches = []
        for row in rows:
            family_options = json.loads(row.pop("options", "{}"))
            batches.append(draw_images(self.model, **row, **family_options).numpy().astype(np.float32))
        return np.concatenate(batches)

    @staticmethod
    def signature(model: GenerativeModel) -> tuple[ModelSignature, pd.DataFrame]:
        needed = model.example_options(2)  # an image-to-image model's inputs, as a request sends them
        shape = tuple(draw_images(model, 2, **needed).shape[1:])
        answer = Schema([TensorSpec(np.dtype(np.float32), (-1, *shape))])
        options = {"options": [json.dumps(needed)]} if needed else {}
        return ModelSignature(IMAGE_REQUEST, answer), pd.DataFrame({"n": [2], "seed": [0], **options})


# How a served model answers, by its family's modality (the names of data_prep's registry).
ANSWERS: dict[str, type[Completions] | type[Arrays] | type[Pieces]] = {
    "image": Arrays,
    "text": Completions,
    "series": Arrays,
    "music": Pieces,
    "audio": Arrays,  # clips (N, 1, samples) in [-1, 1]
    "video": Arrays,  # predicted frames (N, horizon, C, H, W) in [-1, 1]
}


class GenerativePyfunc(PythonModel):
    """Samples from a genpipe model, one request row at a time."""

    def load_context(self, context: Any) -> None:
        folder = Path(context.artifacts[WEIGHTS_ARTIFACT])
        model = load_model(folder)
        self.answers = ANSWERS[model.data_modality](model, folder)

    # A DataFrame hint: MLflow takes the request's schema from the signature logged with the model.
    def predict(self, context: Any, model_input: pd.DataFrame, params: dict[str, Any] | None = None) -> Any:
        return self.answers.answer([_given(row) for row in model_input.to_dict("records")])


def signature_and_example(model: GenerativeModel) -> tuple[ModelSignature, pd.DataFrame]:
    """What a request and an answer look like for `model`, and a request to show (and check) it."""
    return ANSWERS[model.data_modality].signature(model)
