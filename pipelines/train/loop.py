"""The optimizer-step loop that both `train` (each Ray Train worker) and `tune` (each Ray Tune
trial) run over a process's rows of the train split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch

from models.base import GenerativeModel
from pipelines.train.settings import LoopSettings


@dataclass
class LossWindow:
    """Each network's loss summed on the device over a logging window: read (one sync) only when
    the window is logged, never per micro-batch."""

    names: list[str]
    steps: int = 0
    sums: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.steps, self.sums = 0, dict.fromkeys(self.names, 0.0)

    def add(self, name: str, loss: torch.Tensor, weight: float) -> None:
        self.sums[name] = self.sums[name] + loss.detach() * weight

    def totals(self) -> list[float]:
        return [float(total) for total in self.sums.values()]


@dataclass
class Fit:
    """What one process trains: the model, its engines, its rows of the train split."""

    model: GenerativeModel
    engines: dict[str, Any]
    shard: dict[str, torch.Tensor]
    settings: LoopSettings

    @property
    def rows(self) -> int:
        return len(next(iter(self.shard.values())))

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: values[rows] for key, values in self.shard.items()}

    def steps(self, start: int, stop: int, window: LossWindow) -> Iterator[int]:
        """Run optimizer steps start+1 .. stop, yielding each step number once it is done.

        Every epoch is a seeded permutation of the shard, so a resumed run sees the same batches.
        Extra updates of a network in one step (a WGAN critic's) draw seeded random rows."""
        train, rank, steps_per_epoch = self.settings.train, self.settings.rank, self.settings.steps_per_epoch
        micro, device = train.batch_size, next(iter(self.shard.values())).device
        extra_rows = torch.Generator().manual_seed(train.seed * 31 + rank + start)
        step = start
        while step < stop:
            epoch = step // steps_per_epoch
            order = torch.randperm(
                self.rows, generator=torch.Generator().manual_seed(train.seed + 7919 * epoch + rank)
            ).to(device)
            for index in range(step % steps_per_epoch, steps_per_epoch):
                self.model.start_step(step)
                first = index * micro * train.grad_accum_steps
                for name, engine in self.engines.items():
                    updates = self.model.updates_per_step(name)
                    for update in range(updates):
                        # DeepSpeed counts the micro-batches and steps the optimizer on the last of them.
                        for accumulated in range(train.grad_accum_steps):
                            if update == 0:
                                start_row = first + accumulated * micro
                                rows = order[start_row : start_row + micro]
                            else:
                                rows = torch.randint(self.rows, (micro,), generator=extra_rows).to(device)
                            loss = self.model.loss(name, self.batch(rows))
                            engine.backward(loss)
                            engine.step()
                            window.add(name, loss, 1 / (train.grad_accum_steps * updates))
                        self.model.after_update(name)  # the optimizer stepped on the last micro-batch
                step += 1
                window.steps += 1
                yield step
                if step >= stop:
                    return
