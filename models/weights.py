"""Saving and loading a model as safetensors + JSON config: no pickle is ever loaded."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from models.base import GenerativeModel
from models.zoo import build_model

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"


def save_model(
    model: GenerativeModel, directory: str | Path, state_dict: dict[str, torch.Tensor] | None = None
) -> Path:
    """Write weights and config into `directory` (created); returns it."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    tensors = state_dict if state_dict is not None else model.state_dict()
    # safetensors refuses shared or non-contiguous storage; clone each tensor once.
    save_file({k: v.detach().to("cpu").contiguous().clone() for k, v in tensors.items()}, directory / WEIGHTS_FILE)
    spec = {"family": model.family, "config": model.config.model_dump(mode="json")}
    (directory / CONFIG_FILE).write_text(json.dumps(spec, indent=2))
    return directory


def load_model(directory: str | Path, device: str = "cpu") -> GenerativeModel:
    directory = Path(directory)
    spec = json.loads((directory / CONFIG_FILE).read_text())
    model = build_model(spec["family"], spec["config"])
    model.load_state_dict(load_file(directory / WEIGHTS_FILE, device=device))
    return model.eval()
