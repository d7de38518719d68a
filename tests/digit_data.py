"""scikit-learn's digits as tensors, a tiny model of any family built on them, and the training
loop's order of updates with plain Adam: what the in-process model tests share."""

from __future__ import annotations

import torch
from sklearn.datasets import load_digits

import models

DIGITS = load_digits()
IMAGES = torch.tensor(DIGITS.images, dtype=torch.float32)[:, None] / 8 - 1
LABELS = torch.tensor(DIGITS.target)
CLASS_NAMES = [str(digit) for digit in range(10)]


def build(family: str, **params) -> models.GenerativeModel:
    torch.manual_seed(0)
    data = {"image_shape": (1, 8, 8), "num_classes": 10, "class_names": CLASS_NAMES, "pixel_levels": 17}
    return models.build_model(family, models.resolve_config(family, "tiny", params, data))


def train_briefly(
    model: models.GenerativeModel,
    steps: int,
    lr: float = 1e-3,
    betas: tuple[float, float] = (0.5, 0.999),
    columns: dict[str, torch.Tensor] | None = None,
) -> dict[str, list[float]]:
    """Each network in turn, a critic `updates_per_step` times, the model told after each update;
    batches of `columns` (the digits' images and labels by default)."""
    columns = columns or {"image": IMAGES, "label": LABELS}
    rows_in_all = len(next(iter(columns.values())))
    optimizers = {
        name: torch.optim.Adam(net.parameters(), lr=lr, betas=betas) for name, net in model.networks().items()
    }
    losses: dict[str, list[float]] = {name: [] for name in optimizers}
    generator = torch.Generator().manual_seed(0)
    for step in range(steps):
        model.start_step(step)
        for name, optimizer in optimizers.items():
            for _ in range(model.updates_per_step(name)):
                rows = torch.randint(rows_in_all, (64,), generator=generator)
                loss = model.loss(name, {key: values[rows] for key, values in columns.items()})
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                model.after_update(name)
            losses[name].append(loss.item())
    return losses
