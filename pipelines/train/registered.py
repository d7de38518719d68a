"""Weights of registered models loaded into a model being trained: a warm start from the champion,
or a part that comes from the registry (a latent diffusion model's VAE)."""

from __future__ import annotations

import os
import tempfile

import torch
from safetensors.torch import load_file

from models.weights import WEIGHTS_FILE


def load_registered_weights(module: torch.nn.Module, model_uri: str, tracking_uri: str) -> None:
    """A registered model's weights into `module`: the whole model (warm start) or a part of it
    (a latent diffusion model's VAE). MLflow is imported here, by the runs that need it: a worker
    that never loads a registered model never imports it."""
    from pipelines.registry.versions import download

    with tempfile.TemporaryDirectory() as folder:
        module.load_state_dict(load_file(os.path.join(download(model_uri, tracking_uri, folder), WEIGHTS_FILE)))
