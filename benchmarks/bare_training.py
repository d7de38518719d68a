"""What the model benchmarks share: a built-in config's dataset prepared by genpipe's own
`prepare`, and a model trained in this process as the pipeline's loop would train it (AdamW,
linear warm-up then cosine decay, gradient clipping at 1): they compare models, not the loop."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

from data_prep.manifest import Manifest
from models.base import GenerativeModel


def prepared_builtin(config_name: str, storage: str) -> Manifest:
    """The dataset of a built-in config's `data:` section, prepared in `storage` (or found there)."""
    import ray

    from data_prep.prepare import prepare
    from pipelines.config import load_config

    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    return prepare(load_config(config_name).data, storage)[0]


def train_steps(
    model: GenerativeModel,
    batch: Callable[[torch.Generator], dict[str, torch.Tensor]],
    steps: int,
    seed: int,
    learning_rate: float = 3e-3,
    weight_decay: float = 0.0,
    warmup: int = 20,
) -> GenerativeModel:
    """`steps` updates of the model's one network on batches drawn by `batch(generator)`."""
    torch.manual_seed(seed)
    (name,) = model.networks()
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, betas=(0.9, 0.99), weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min(1.0, (s + 1) / warmup) * 0.5 * (1 + math.cos(math.pi * min(1.0, s / steps)))
    )
    order = torch.Generator().manual_seed(seed)
    model.train()
    for _ in range(steps):
        loss = model.loss(name, batch(order))
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    return model.eval()
