"""How a group of workers shares a model (`train.strategy`): every worker holding everything
(data parallel, DeepSpeed ZeRO stage 0) or ZeRO sharding optimizer state (1), gradients too (2)
or the weights as well (3).

`auto` takes the least sharding under which the model's training state fits a worker's memory:
sharding only pays for itself when memory needs it, and on a small model it is pure overhead
(ZeRO-2 cost a tiny model 13% of its CPU step alone, and the quickstart's two workers ran at 0.69x
a bare loop; benchmarks/RESULTS.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import psutil
import torch

from models.base import GenerativeModel, parameter_count
from pipelines.config import TrainConfig
from pipelines.train.engines import precision_mode

ZERO_STAGES = {"ddp": 0, "zero1": 1, "zero2": 2, "zero3": 3}
STATE_SHARE = 0.4  # of a worker's memory for weights, gradients and Adam state; the rest: activations


@dataclass(frozen=True)
class Strategy:
    name: str  # ddp, zero1, zero2 or zero3
    reason: str

    @property
    def zero_stage(self) -> int:
        return ZERO_STAGES[self.name]


def training_state_bytes(parameters: int, zero_stage: int, world: int, precision: str) -> float:
    """Bytes of weights, gradients and Adam state one worker holds (ZeRO paper, section 3.1):
    bf16 weights keep an fp32 master copy beside Adam's two moments (2 + 2 + 12 bytes a
    parameter); fp32 training holds 4 + 4 + 8. Stage s shards the first s of optimizer state,
    gradients and weights over the workers."""
    weights, gradients, optimizer = (2.0, 2.0, 12.0) if precision == "bf16" else (4.0, 4.0, 8.0)
    if zero_stage >= 1:
        optimizer /= world
    if zero_stage >= 2:
        gradients /= world
    if zero_stage >= 3:
        weights /= world
    return parameters * (weights + gradients + optimizer)


def _gib(size: float) -> str:
    return f"{size / 2**30:.3g} GiB"


def choose(train: TrainConfig, world: int, parameters: int, memory: float, precision: str) -> Strategy:
    """The strategy for `world` workers of `memory` bytes each training `parameters` parameters."""
    if world == 1 and not train.offload_optimizer and not train.offload_params:
        return Strategy("ddp", "one worker: there is nothing to shard (ZeRO would only add its hooks)")
    if train.strategy != "auto":
        return Strategy(train.strategy, "set in train.strategy")
    if train.offload_params:
        return Strategy("zero3", "train.offload_params keeps the weights in CPU memory, which needs ZeRO-3")
    lowest = 1 if train.offload_optimizer else 0  # ZeRO-Offload moves the sharded optimizer state
    for name, stage in ZERO_STAGES.items():
        need = training_state_bytes(parameters, stage, world, precision)
        if stage < lowest or need > STATE_SHARE * memory:
            continue
        why = (
            f"{parameters / 1e6:.3g}M parameters need {_gib(need)} of weights, gradients and Adam state "
            f"per worker, {need / memory:.1%} of its {_gib(memory)}"
        )
        if stage == 0:
            return Strategy(name, f"{why}: sharding would only add communication")
        if stage == lowest:
            return Strategy(name, f"{why}; train.offload_optimizer needs ZeRO")
        less = training_state_bytes(parameters, stage - 1, world, precision)
        return Strategy(name, f"{why}; one stage less would need {_gib(less)}, over {STATE_SHARE:.0%} of it")
    need = training_state_bytes(parameters, 3, world, precision)
    return Strategy(
        "zero3",
        f"{parameters / 1e6:.3g}M parameters need {_gib(need)} per worker even fully sharded, over "
        f"{STATE_SHARE:.0%} of its {_gib(memory)}: add workers or set train.offload_optimizer/offload_params",
    )


def worker_memory(device: torch.device, workers_on_node: int) -> float:
    """Bytes one worker may use: its GPU's memory, or on CPU its share of the node's."""
    if device.type == "cuda":
        return float(torch.cuda.get_device_properties(device).total_memory)
    return psutil.virtual_memory().total / max(1, workers_on_node)


def strategy_for(train: TrainConfig, model: GenerativeModel, world: int, memory: float, on_gpu: bool) -> Strategy:
    """The strategy this model trains with on a group whose smallest worker has `memory` bytes
    (every rank must pass the same figure: a group whose ranks chose differently would hang)."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    precision = precision_mode(train, on_gpu, model.gpu_precision)
    return choose(train, world, parameter_count(trainable), memory, precision)
