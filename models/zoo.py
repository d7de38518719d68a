"""The zoo's registry: every family by name, and building a model from a family and a config.

A new family is a module in models/ and one entry in `ZOO` below (models/README.md).
"""

from __future__ import annotations

from typing import Any

import torch

from models.autoencoders import AUTOENCODER_FAMILIES
from models.base import GenerativeModel, ModelConfig
from models.convlstm import ConvLSTM
from models.cyclegan import CycleGAN
from models.ddpm import DDPM, LatentDDPM
from models.diffwave import DiffWave
from models.ebm import EBM, JEM
from models.flows import Glow, RealNVP
from models.gan import GAN_FAMILIES
from models.gpt import GPT
from models.pixelcnn import PixelCNN
from models.recurrent import GRULanguageModel, LSTMLanguageModel
from models.series import AR, LSTMForecaster
from models.stylegan import StyleGAN
from models.video_diffusion import VideoDiffusion
from models.wavenet import WaveNet

# One line per family: the order is the order `genpipe models` lists them in.
ZOO: tuple[type[GenerativeModel], ...] = (
    DDPM,
    LatentDDPM,
    GPT,
    LSTMLanguageModel,
    GRULanguageModel,
    *GAN_FAMILIES,
    StyleGAN,
    CycleGAN,
    *AUTOENCODER_FAMILIES,
    PixelCNN,
    RealNVP,
    Glow,
    EBM,
    JEM,
    AR,
    LSTMForecaster,
    WaveNet,
    DiffWave,
    ConvLSTM,
    VideoDiffusion,
)
FAMILIES: dict[str, type[GenerativeModel]] = {cls.family: cls for cls in ZOO}


def family_class(family: str) -> type[GenerativeModel]:
    try:
        return FAMILIES[family]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; the zoo has: {', '.join(FAMILIES)}") from None


def resolve_config(family: str, preset: str, overrides: dict[str, Any], data: dict[str, Any]) -> ModelConfig:
    """Preset, then the data's shape, then the user's overrides, validated by the family."""
    cls = family_class(family)
    if preset not in cls.presets:
        raise ValueError(f"{family} has no preset {preset!r}; presets: {', '.join(cls.presets)}")
    fields = cls.config_class.model_fields
    from_data = {key: value for key, value in data.items() if key in fields}
    return cls.config_class(**{**cls.presets[preset], **from_data, **overrides})


def build_model(family: str, config: ModelConfig | dict[str, Any]) -> GenerativeModel:
    cls = family_class(family)
    if isinstance(config, dict):
        config = cls.config_class(**config)
    return cls(config)


def check_runs_on(family: str, preset: str, params: dict[str, Any], data: dict[str, Any]) -> None:
    """Build the model for `data` on PyTorch's meta device and run each network's loss on a batch
    of two images: a size the network cannot take (too small to halve, a kernel larger than the
    image) shows in milliseconds, with no memory and no arithmetic, instead of in the train step.
    Raises what the family raises: pydantic's ValidationError, or the error of the forward pass."""
    cls = family_class(family)
    if any(f"{field}_spec" not in params for field in cls.registered_parts.values()):
        return  # a part read from the registry when training starts: its shape is not known yet
    config = resolve_config(family, preset, params, data)
    with torch.device("meta"):
        model = build_model(family, config).train()
        rows = torch.arange(2)
        batch = {"image": torch.zeros(2, *data["image_shape"]), "label": rows, "domain": rows % 2}
        for name in model.networks():
            model.loss(name, batch)
