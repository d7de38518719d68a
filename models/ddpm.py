"""Denoising diffusion (Ho et al. 2020) with what made it scale: a cosine schedule, v-prediction,
an EMA of the weights, DDIM sampling, classifier-free guidance (Ho & Salimans 2022) over class
labels or text prompts, and, in `LatentDDPM`, diffusion in a VAE's latent space (Rombach et al.
2022, Stable Diffusion's recipe at small scale).

The model owns the noise schedule and the conditioning; `models.unet` is the network and
`models.samplers` the update rules, as diffusers separates models, schedulers and pipelines.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from models.autoencoders import AUTOENCODER_FAMILIES, VAE
from models.base import GenerativeModel, ModelConfig
from models.captions import captions_for, evaluation_prompt
from models.ema import EMA, AveragedNetworkHooks
from models.samplers import ancestral, ddim
from models.sampling_options import Conditioning, diffusion_options
from models.schedules import BetaSchedule, NoiseSchedule, Prediction, eps_from_x0, gather, targets, x0_and_eps
from models.text_encoder import TextEncoder, encode_prompts, null_prompts
from models.unet import UNet
from typed_errors import FieldError, OptionError


class DDPMConfig(ModelConfig):
    image_shape: tuple[int, int, int] = Field(description="(channels, height, width) of the data")
    base_channels: int = Field(32, gt=0)
    channel_mults: tuple[int, ...] = Field((1, 2), min_length=1)
    num_res_blocks: int = Field(1, gt=0)
    attention_resolutions: tuple[int, ...] = Field((4,), description="attend at feature maps this many pixels wide")
    attention_heads: int = Field(1, gt=0)
    dropout: float = Field(0.0, ge=0, lt=1)
    timesteps: int = Field(1000, gt=1)
    beta_schedule: BetaSchedule = "linear"
    prediction: Prediction = Field("epsilon", description="what the U-Net predicts: the noise or v")
    ema_decay: float = Field(0.999, ge=0, lt=1, description="0 turns the EMA off")
    sampler: Literal["ancestral", "ddim"] = "ancestral"
    sampling_steps: int = Field(50, gt=0, description="DDIM: timesteps visited (ancestral visits all)")
    ddim_eta: float = Field(0.0, ge=0, le=1)
    conditioning: Literal["none", "class", "text"] = "none"
    label_dropout: float = Field(0.1, ge=0, lt=1, description="share of training rows with the null condition")
    guidance_scale: float = Field(2.0, ge=0, description="classifier-free guidance at sampling; 1 = none")
    num_classes: int = Field(0, ge=0, description="from the data")
    class_names: list[str] = Field(default_factory=list, description="from the data: words for the captions")
    text_width: int = Field(128, gt=0)
    text_layers: int = Field(2, gt=0)
    text_heads: int = Field(4, gt=0)
    max_prompt_tokens: int = Field(48, gt=1, description="bytes of a prompt the text encoder reads (+1)")


CIFAR = {
    "base_channels": 128,
    "channel_mults": (1, 2, 2, 2),
    "num_res_blocks": 2,
    "attention_resolutions": (16,),
    "dropout": 0.1,
    "timesteps": 1000,
    "beta_schedule": "linear",
    "ema_decay": 0.9999,
    "sampler": "ddim",
    "sampling_steps": 100,
}


class DDPM(AveragedNetworkHooks, GenerativeModel):
    """A U-Net denoiser trained on the simple loss; samples by DDPM or DDIM, guided when conditioned."""

    config: DDPMConfig
    caption_ids: torch.Tensor  # a buffer: every phrasing of every class, tokenised

    family = "ddpm"
    averaged_network = "unet"
    config_class: ClassVar[type[ModelConfig]] = DDPMConfig
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        # ~0.4M parameters: about a second per epoch of digits on 2 CPU cores.
        "tiny": {
            "base_channels": 24,
            "channel_mults": (1, 2),
            "num_res_blocks": 1,
            "attention_resolutions": (4,),
            "timesteps": 200,
            "beta_schedule": "cosine",
            "ema_decay": 0.995,
            "text_width": 64,
        },
        # ~6M parameters: a GPU model for 16-32 px images.
        "small": {
            "base_channels": 64,
            "channel_mults": (1, 2, 2),
            "num_res_blocks": 2,
            "attention_resolutions": (16, 8),
            "dropout": 0.1,
            "timesteps": 1000,
            "beta_schedule": "linear",
            "ema_decay": 0.999,
        },
        # The DDPM paper's CIFAR-10 model at 32 px: 35.7M parameters.
        "cifar": CIFAR,
        # 360M parameters at 64 px (near ADM's ImageNet-64 shape): for GPUs, and ZeRO-3 across them.
        "large": {
            "base_channels": 224,
            "channel_mults": (1, 2, 3, 4),
            "num_res_blocks": 3,
            "attention_resolutions": (32, 16, 8),
            "attention_heads": 4,
            "dropout": 0.1,
            "timesteps": 1000,
            "beta_schedule": "cosine",
            "prediction": "v",
            "ema_decay": 0.9999,
            "sampler": "ddim",
            "sampling_steps": 100,
        },
    }
    clip_denoised = True  # pixels live in [-1, 1]; a latent space has no such bound
    # Measured on an H100 (benchmarks/RESULTS.md): a DeepSpeed bf16 engine (bf16 weights, fp32
    # master copies) ran the cifar U-Net 2.4x slower than fp32 weights under bf16 autocast; its
    # per-parameter optimizer bookkeeping costs more than the U-Net's hundreds of small tensors save.
    gpu_precision = "bf16-autocast"

    def __init__(self, config: DDPMConfig):
        super().__init__(config)
        channels, height, width = self.diffusion_shape()
        if height != width:
            raise FieldError("image_shape", f"the U-Net needs square images, got {height}x{width}")
        downsamples = len(config.channel_mults) - 1
        if height % (2**downsamples):
            raise FieldError("channel_mults", f"{height}px cannot be halved {downsamples} times")
        if config.conditioning != "none" and config.num_classes < 2:
            raise FieldError("conditioning", f"{config.conditioning} needs labelled data (num_classes >= 2)")
        text = (
            TextEncoder(config.text_width, config.text_layers, config.text_heads, config.max_prompt_tokens)
            if config.conditioning == "text"
            else None
        )
        self.unet = UNet(
            channels,
            height,
            config.base_channels,
            config.channel_mults,
            config.num_res_blocks,
            config.attention_resolutions,
            config.dropout,
            config.attention_heads,
            config.num_classes if config.conditioning == "class" else 0,
            text,
        )
        self.schedule = NoiseSchedule(config.beta_schedule, config.timesteps)
        self.ema = EMA(config.ema_decay) if config.ema_decay > 0 else None
        if text is not None:  # every phrasing of every class, tokenised once: (classes, phrasings, tokens)
            captions = torch.stack(
                [encode_prompts(captions_for(name), config.max_prompt_tokens) for name in self.class_names()]
            )
            self.register_buffer("caption_ids", captions, persistent=False)

    def diffusion_shape(self) -> tuple[int, int, int]:
        """The shape of what is diffused: the image itself here, a latent in `LatentDDPM`."""
        channels, height, width = self.config.image_shape
        return channels, height, width

    def class_names(self) -> list[str]:
        return self.config.class_names or [str(label) for label in range(self.config.num_classes)]

    def networks(self) -> dict[str, nn.Module]:
        return {"unet": self.unet}

    # --- training -------------------------------------------------------------------------------

    def q_sample(self, x0: torch.Tensor, t: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
        """x_t ~ q(x_t | x_0) = N(sqrt(alpha_bar_t) x_0, (1 - alpha_bar_t) I)."""
        s = self.schedule
        return gather(s.sqrt_alpha_bar, t, x0) * x0 + gather(s.sqrt_one_minus_alpha_bar, t, x0) * noise

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Images -> what is diffused (identity here)."""
        return images

    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return x

    def training_condition(self, labels: torch.Tensor) -> torch.Tensor | None:
        """The condition each row trains with: its label, or a random caption of it (text);
        `label_dropout` of the rows get the null condition, so the model also learns p(x)."""
        config = self.config
        if config.conditioning == "none":
            return None
        dropped = torch.rand(labels.shape, device=labels.device) < config.label_dropout
        if config.conditioning == "class":
            return torch.where(dropped, config.num_classes, labels)
        phrasing = torch.randint(self.caption_ids.shape[1], labels.shape, device=labels.device)
        ids = self.caption_ids[labels, phrasing]
        return torch.where(dropped[:, None], null_prompts(1, config.max_prompt_tokens, labels.device), ids)

    def loss(self, network: str, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """The simple loss: MSE between the target (noise or v) and the U-Net's output at a random t."""
        x0 = self.encode(batch["image"])
        t = torch.randint(0, self.config.timesteps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        condition = self.training_condition(batch["label"]) if "label" in batch else None
        inputs = (self.q_sample(x0, t, noise), t) + ((condition,) if condition is not None else ())
        output = self.run_network("unet", *inputs)
        return F.mse_loss(output, targets(self.schedule, x0, noise, t, self.config.prediction))

    # --- sampling -------------------------------------------------------------------------------

    def sample_options(
        self,
        n: int,
        prompt: str | None = None,
        label: str | None = None,
        guidance: float | None = None,
        sampler: str | None = None,
        steps: int | None = None,
        **other: Any,
    ) -> dict[str, Any]:
        """A prompt or a class (as the model is conditioned), the sampler, its steps, the guidance."""
        self.refuse_options(other)
        conditioning = Conditioning(
            self.family, self.config.conditioning, self.class_names(), self.config.max_prompt_tokens
        )
        return diffusion_options(conditioning, n, prompt, label, guidance, sampler, steps)

    def requested_labels(self, n: int, device: torch.device) -> torch.Tensor | None:
        """0, 1, ..., K-1, 0, ...: the classes a conditional model is asked for when sampling."""
        return None if self.config.conditioning == "none" else self._every_class(n, device)

    def _every_class(self, n: int, device: torch.device) -> torch.Tensor:
        return torch.arange(n, device=device) % self.config.num_classes

    def sampling_condition(
        self, n: int, device: torch.device, labels: torch.Tensor | None, prompts: list[str] | None
    ) -> tuple[torch.Tensor, torch.Tensor] | None:
        """(condition, null condition) for n samples, or None for an unconditional model.
        Without labels or prompts a conditional model is asked for every class in turn."""
        config = self.config
        if config.conditioning == "none":
            if labels is not None or prompts is not None:
                raise ValueError("this model is unconditional: it takes no labels or prompts")
            return None
        if config.conditioning == "class":
            if prompts is not None:
                raise ValueError("this model is conditioned on class labels, not on text prompts")
            labels = self._every_class(n, device) if labels is None else labels.to(device)
            if labels.min() < 0 or labels.max() >= config.num_classes:
                raise OptionError("labels", f"each must be in 0..{config.num_classes - 1}")
            return labels, torch.full_like(labels, config.num_classes)
        if prompts is None:
            names = self.class_names()
            wanted = self._every_class(n, device) if labels is None else labels
            prompts = [evaluation_prompt(names[label]) for label in wanted.tolist()]
        if len(prompts) != n:
            raise OptionError("prompts", f"{len(prompts)} given for {n} samples")
        return (
            encode_prompts(prompts, config.max_prompt_tokens).to(device),
            null_prompts(n, config.max_prompt_tokens, device),
        )

    def _predictor(self, conditions: tuple[torch.Tensor, torch.Tensor] | None, guidance_scale: float):
        """predict(x_t, t) -> (x0, eps): the U-Net's output, guided (conditional and null rows
        in one batch), read back as x0 and clipped to the data range."""

        def predict(x: torch.Tensor, t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            if conditions is None:
                output = self.run_network("unet", x, t)
            elif guidance_scale == 1.0:
                output = self.run_network("unet", x, t, conditions[0])
            else:
                both = self.run_network("unet", torch.cat([x, x]), torch.cat([t, t]), torch.cat(conditions))
                conditional, unconditional = both.chunk(2)
                output = unconditional + guidance_scale * (conditional - unconditional)
            x0, eps = x0_and_eps(self.schedule, x, t, output, self.config.prediction)
            if self.clip_denoised:
                x0 = x0.clamp(-1, 1)
                eps = eps_from_x0(self.schedule, x, t, x0)
            return x0, eps

        return predict

    @torch.no_grad()
    def sample(
        self,
        n: int,
        generator: torch.Generator | None = None,
        *,
        labels: torch.Tensor | None = None,
        prompts: list[str] | None = None,
        guidance_scale: float | None = None,
        sampler: str | None = None,
        steps: int | None = None,
    ) -> torch.Tensor:
        """n images in [-1, 1] from pure noise: by class (`labels`), by text (`prompts`), or every
        class in turn; the sampler, its steps and the guidance default to the model's config."""
        config = self.config
        device = next(self.unet.parameters()).device
        conditions = self.sampling_condition(n, device, labels, prompts)
        predict = self._predictor(conditions, config.guidance_scale if guidance_scale is None else guidance_scale)
        x = torch.randn((n, *self.diffusion_shape()), generator=generator, device=device)
        if (sampler or config.sampler) == "ddim":
            x = ddim(predict, self.schedule, x, steps or config.sampling_steps, config.ddim_eta, generator)
        else:
            x = ancestral(predict, self.schedule, x, generator)
        return self.decode(x)


VAE_FAMILIES = {cls.family: cls for cls in AUTOENCODER_FAMILIES if issubclass(cls, VAE)}


class LatentDDPMConfig(DDPMConfig):
    autoencoder: str = Field(description="models:/NAME@ALIAS (or /VERSION) of a registered VAE to diffuse in")
    autoencoder_spec: dict[str, Any] | None = Field(
        None, description="the VAE's family and config: read from the registry when training starts"
    )


class LatentDDPM(DDPM):
    """Diffusion in a frozen VAE's latent space: encode the images, denoise latents, decode.

    The VAE's code is a vector; it is diffused as a small map of (latent_dim / g^2, g, g) with
    g = 4, 2 or 1, whichever divides it. A VAE's KL term keeps its aggregate posterior close to
    N(0, I), so the codes need no rescaling (Stable Diffusion scales its by 0.18215 because its
    autoencoder's KL weight is tiny). The VAE's weights travel inside this model's weights.
    """

    config: LatentDDPMConfig

    family = "latent-ddpm"
    config_class = LatentDDPMConfig
    registered_parts = {"vae": "autoencoder"}
    presets = {
        "tiny": {
            "base_channels": 32,
            "channel_mults": (1, 2),
            "num_res_blocks": 1,
            "attention_resolutions": (4,),
            "timesteps": 200,
            "beta_schedule": "cosine",
            "ema_decay": 0.995,
        },
        "small": {
            "base_channels": 64,
            "channel_mults": (1, 2),
            "num_res_blocks": 2,
            "attention_resolutions": (4,),
            "dropout": 0.1,
            "timesteps": 1000,
            "beta_schedule": "cosine",
            "ema_decay": 0.999,
            "sampler": "ddim",
            "sampling_steps": 100,
        },
    }
    clip_denoised = False

    def __init__(self, config: LatentDDPMConfig):
        spec = config.autoencoder_spec
        if spec is None:
            raise FieldError("autoencoder_spec", f"unknown; it is read from {config.autoencoder} when training starts")
        super().__init__(config)
        vae_class = VAE_FAMILIES.get(spec["family"])
        if vae_class is None:
            raise FieldError("autoencoder", f"{config.autoencoder} is a {spec['family']} model, not a VAE")
        vae = vae_class(vae_class.config_class(**spec["config"]))
        if tuple(vae.config.image_shape) != tuple(config.image_shape):
            raise FieldError(
                "autoencoder",
                f"{config.autoencoder} reads {tuple(vae.config.image_shape)} "
                f"images, the data has {tuple(config.image_shape)}",
            )
        self.vae = vae.requires_grad_(False).eval()

    def diffusion_shape(self) -> tuple[int, int, int]:
        spec = self.config.autoencoder_spec
        assert spec is not None  # checked when the model was built
        latent_dim = spec["config"]["latent_dim"]
        grid = next(g for g in (4, 2, 1) if latent_dim % (g * g) == 0)
        return latent_dim // (grid * grid), grid, grid

    def train(self, mode: bool = True) -> LatentDDPM:
        super().train(mode)
        self.vae.eval()  # frozen: its batch norms keep their statistics
        return self

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """A sample of the VAE's posterior q(z | x), as a latent map."""
        mean, log_var = self.vae.posterior(images.float())
        z = mean + (0.5 * log_var).exp() * torch.randn_like(mean)
        return z.view(len(z), *self.diffusion_shape())

    @torch.no_grad()
    def decode(self, x: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(x.flatten(1).float())
