"""The optimizer-step loop that both `train` (each Ray Train worker) and `tune` (each Ray Tune
trial) run, and the DeepSpeed checkpoint of a model's networks they both write and resume from."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from models.base import GenerativeModel
from models.weights import save_model
from pipelines.config import TrainConfig
from pipelines.deepspeed_setup import build_engine, full_state_dict
from pipelines.storage import read_bytes

MODEL_DIR = "model"  # inside the final checkpoint: safetensors weights + config.json
MODEL_STATE_FILE = "model_state.safetensors"  # beside the networks' checkpoints: e.g. the EMA


def build_engines(model: GenerativeModel, train: TrainConfig, total_steps: int, on_gpu: bool) -> dict[str, Any]:
    """One DeepSpeed engine (and optimizer, LR schedule) per network, routed into the model. A
    network updated several times per step (a WGAN critic) has that many more scheduler steps."""
    engines = {}
    for name, network in model.networks().items():
        engine = build_engine(network, train, total_steps * model.updates_per_step(name), on_gpu,
                              model.gpu_precision)
        if train.compile:
            engine.compile()
        model.use_network(name, engine)
        engines[name] = engine
    return engines


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
    train: TrainConfig
    rank: int
    steps_per_epoch: int

    @property
    def rows(self) -> int:
        return len(next(iter(self.shard.values())))

    def batch(self, rows: torch.Tensor) -> dict[str, torch.Tensor]:
        return {key: values[rows] for key, values in self.shard.items()}

    def steps(self, start: int, stop: int, window: LossWindow) -> Iterator[int]:
        """Run optimizer steps start+1 .. stop, yielding each step number once it is done.

        Every epoch is a seeded permutation of the shard, so a resumed run sees the same batches.
        Extra updates of a network in one step (a WGAN critic's) draw seeded random rows."""
        train, micro, device = self.train, self.train.batch_size, next(iter(self.shard.values())).device
        extra_rows = torch.Generator().manual_seed(train.seed * 31 + self.rank + start)
        step = start
        while step < stop:
            epoch = step // self.steps_per_epoch
            order = torch.randperm(self.rows, generator=torch.Generator().manual_seed(
                train.seed + 7919 * epoch + self.rank)).to(device)
            for index in range(step % self.steps_per_epoch, self.steps_per_epoch):
                self.model.start_step(step)
                first = index * micro * train.grad_accum_steps
                for name, engine in self.engines.items():
                    updates = self.model.updates_per_step(name)
                    for update in range(updates):
                        # DeepSpeed counts the micro-batches and steps the optimizer on the last of them.
                        for accumulated in range(train.grad_accum_steps):
                            if update == 0:
                                start_row = first + accumulated * micro
                                rows = order[start_row: start_row + micro]
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


def restore(fit: Fit, folder: str) -> int:
    """Load every network's DeepSpeed checkpoint from `folder`, and the model's own training state
    (an EMA); returns the step it was taken at."""
    step = 0
    for name, engine in fit.engines.items():
        _, client_state = engine.load_checkpoint(os.path.join(folder, name))
        step = client_state["step"]
    state_file = os.path.join(folder, MODEL_STATE_FILE)
    if os.path.exists(state_file):
        fit.model.load_checkpoint_state(load_file(state_file))
    return step


def write_checkpoint(folder: str, fit: Fit, step: int, with_model: bool,
                     extra_files: dict[str, str] | None = None) -> None:
    """A DeepSpeed checkpoint of every network into `folder`; `with_model` adds the consolidated
    model (one safetensors file, loadable without DeepSpeed) and `extra_files` (a tokenizer)
    beside it. Under ZeRO-3 gathering the weights is a collective: every rank calls this."""
    for name, engine in fit.engines.items():
        engine.save_checkpoint(os.path.join(folder, name), tag=f"step{step}", client_state={"step": step})
    model_state = fit.model.checkpoint_state()  # the same on every rank: rank 0 writes it
    if model_state and fit.rank == 0:
        save_file({k: v.detach().cpu().contiguous() for k, v in model_state.items()},
                  os.path.join(folder, MODEL_STATE_FILE))
    if with_model:
        weights = fit.model.exported_state(full_state_dict(fit.model, fit.train.zero_stage))
        if fit.rank == 0:
            model_dir = save_model(fit.model, os.path.join(folder, MODEL_DIR), weights)
            for file_name, uri in (extra_files or {}).items():
                (model_dir / file_name).write_bytes(read_bytes(uri))
