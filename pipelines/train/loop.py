"""The optimizer-step loop that both `train` (each Ray Train worker) and `tune` (each Ray Tune
trial) run over a process's rows of the train split."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from data_prep.sample_order import Cursor, rank_batches, step_start
from models.base import GenerativeModel
from pipelines.train.feed import Feed
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


Batch = dict[str, torch.Tensor]


@dataclass
class StepBatches:
    """What one optimizer step of one process reads: the micro-batches every network's first
    update shares, and each network's extra updates' micro-batches (a WGAN critic's)."""

    step: int  # the step's number once done (1-based)
    cursor: Cursor  # where the data stands after it
    shared: list[Batch]
    extra: dict[str, list[Batch]]


def step_seed(seed: int, rank: int, step: int) -> int:
    """The torch seed of one step on one rank: a resumed run draws the same noise as an
    uninterrupted one, whatever step it was stopped at."""
    return (seed * 1_000_003 + rank * 7_919 + step) % 2**63


@dataclass
class Fit:
    """What one process trains: the model, its engines, its feed of the train split, and the
    data cursor (saved in every checkpoint)."""

    model: GenerativeModel
    engines: dict[str, Any]
    feed: Feed
    settings: LoopSettings
    cursor: Cursor = field(default_factory=Cursor)

    def _plan(self, cursor: Cursor, start: int, stop: int) -> Iterator[StepBatches]:
        """The batches of steps start+1 .. stop. A step reads the next `world x batch x accum`
        positions of the epoch (this rank every world-th of them: its lanes); an epoch ends when
        too few are left for a whole step. Extra updates draw seeded positions of this rank's
        lanes from the current windows."""
        train, rank, world = self.settings.train, self.settings.rank, self.settings.world_size
        micro, accum, order = train.batch_size, train.grad_accum_steps, self.feed.order
        per_step = world * micro * accum
        for step in range(start, stop):
            cursor = step_start(cursor, per_step, order.total)
            shared = [
                self.feed.columns(order.rows(cursor.epoch, positions))
                for positions in rank_batches(cursor, rank, world, micro, accum)
            ]
            draws = np.random.default_rng([train.seed, rank, step, 3])
            extra = {
                name: [
                    self.feed.columns(order.rows(cursor.epoch, order.rank_draws(cursor, rank, world, draws, micro)))
                    for _ in range((self.model.updates_per_step(name) - 1) * accum)
                ]
                for name in self.engines
            }
            cursor = Cursor(cursor.epoch, cursor.position + per_step)
            yield StepBatches(step + 1, cursor, shared, extra)

    def steps(self, start: int, stop: int, window: LossWindow) -> Iterator[int]:
        """Run optimizer steps start+1 .. stop from the saved cursor, yielding each step number
        once it is done."""
        accum = self.settings.train.grad_accum_steps
        for planned in self.feed.prefetched(self._plan(self.cursor, start, stop)):
            torch.manual_seed(step_seed(self.settings.train.seed, self.settings.rank, planned.step))
            self.model.start_step(planned.step - 1)
            for name, engine in self.engines.items():
                updates = self.model.updates_per_step(name)
                batches = planned.shared + planned.extra[name]
                for update in range(updates):
                    # DeepSpeed counts the micro-batches and steps the optimizer on the last of them.
                    for batch in batches[update * accum : (update + 1) * accum]:
                        loss = self.model.loss(name, batch)
                        engine.backward(loss)
                        engine.step()
                        window.add(name, loss, 1 / (accum * updates))
                    self.model.after_update(name)  # the optimizer stepped on the last micro-batch
            self.cursor = planned.cursor
            window.steps += 1
            yield planned.step
