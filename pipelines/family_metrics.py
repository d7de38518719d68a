"""Scores and pictures beyond classifier-FID that only some image families have: the ELBO and an
importance-weighted NLL for VAEs, reconstruction error for every autoencoder, class accuracy for
conditional generators, and latent interpolations for every model with a latent space."""

from __future__ import annotations

from pathlib import Path

import torch

from models.autoencoders import VAE, Autoencoding
from models.base import GenerativeModel
from models.captions import evaluation_prompt
from models.gan import GAN
from pipelines.grids import save_grid

SAMPLE_METRICS = ("eval/classifier_fid", "eval/class_coverage")


def is_conditional(family: type[GenerativeModel]) -> bool:
    return issubclass(family, GAN) and family.conditional


def metric_names(family: type[GenerativeModel]) -> tuple[str, ...]:
    """Every metric the evaluator (and each sweep trial) reports for an image family."""
    names = list(SAMPLE_METRICS)
    if is_conditional(family):
        names.append("eval/class_accuracy")
    if issubclass(family, Autoencoding):
        names.append("eval/reconstruction_mse")
    if issubclass(family, VAE):
        names += ["eval/elbo", "eval/elbo_per_pixel", "eval/nll_iw"]
    return tuple(names)


def save_class_grids(samples: torch.Tensor, requested: torch.Tensor, class_names: list[str],
                     metrics: dict[str, float], folder: Path) -> list[Path]:
    """One grid per requested class (`<label>_<name>.png`) and an index (README.md) of how often
    the classifier agreed with what each class was asked for."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = ["Samples asked for each class: by label, or for text-to-image models by the prompt",
            f"{evaluation_prompt('<class>')!r}.", "", "| label | class | classifier agrees |", "|---|---|---|"]
    saved = []
    for label in sorted(set(requested.tolist())):
        name = class_names[label] if label < len(class_names) else str(label)
        saved.append(save_grid(samples[requested.cpu() == label], folder / f"{label}_{_file_safe(name)}.png"))
        accuracy = metrics.get(f"eval/class_accuracy_{label}", float("nan"))
        rows.append(f"| {label} | {name} | {accuracy:.1%} |")
    (folder / "README.md").write_text("\n".join(rows) + "\n")
    return saved


def _file_safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)[:40]


@torch.no_grad()
def latent_metrics(model: GenerativeModel, images: torch.Tensor, iw_samples: int,
                   generator: torch.Generator) -> dict[str, float]:
    """Reconstruction error (mean squared error per pixel, in [-1, 1] units) for autoencoders;
    ELBO (nats per image and per pixel) and the k-sample importance-weighted NLL for VAEs."""
    metrics: dict[str, float] = {}
    if isinstance(model, Autoencoding):
        metrics["eval/reconstruction_mse"] = float((model.reconstruct(images) - images).pow(2).mean())
    if isinstance(model, VAE):
        elbo = model.elbo(images, generator).mean()
        metrics["eval/elbo"] = float(elbo)
        metrics["eval/elbo_per_pixel"] = float(elbo) / images[0].numel()
        nll = torch.cat([model.importance_weighted_nll(chunk, iw_samples, generator) for chunk in images.split(64)])
        metrics["eval/nll_iw"] = float(nll.mean())
    return metrics


def _interpolate(decode, start: torch.Tensor, end: torch.Tensor, steps: int) -> torch.Tensor:
    weights = torch.linspace(0, 1, steps, device=start.device)[None, :, None]
    return decode((start[:, None] + weights * (end - start)[:, None]).flatten(0, 1))


@torch.no_grad()
def save_latent_pictures(model: GenerativeModel, images: torch.Tensor, folder: Path,
                         generator: torch.Generator, rows: int = 8, steps: int = 10) -> list[Path]:
    """reconstructions.png (originals over their reconstructions) for autoencoders, and
    interpolation.png: `rows` straight lines in latent space, between the codes of two val images
    (autoencoders) or two random latents (generators), decoded at `steps` points each."""
    saved = []
    if isinstance(model, Autoencoding):
        originals = images[: 2 * rows]
        pairs = torch.stack([originals.view(2, rows, *images.shape[1:]),
                             model.reconstruct(originals).view(2, rows, *images.shape[1:])], dim=1)
        saved.append(save_grid(pairs.flatten(0, 2), folder / "reconstructions.png", columns=rows))
        start, end = model.encode(images[:rows]), model.encode(images[rows: 2 * rows])
        pictures = _interpolate(model.decode, start, end, steps)
    elif isinstance(model, GAN):
        start, end = (torch.randn((rows, model.config.latent_dim), generator=generator, device=images.device)
                      for _ in range(2))
        labels = torch.arange(rows, device=images.device).repeat_interleave(steps) % max(1, model.config.num_classes)
        pictures = _interpolate(lambda codes: model.decode(codes, labels), start, end, steps)  # one class a row
    else:
        return saved
    saved.append(save_grid(pictures, folder / "interpolation.png", columns=steps))
    return saved
