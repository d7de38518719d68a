"""An exponential moving average of a network's weights: what a diffusion model samples with.

Written by hand rather than with `torch.optim.swa_utils.AveragedModel`: that keeps a deep copy
of the module inside the model's state tree (so every checkpoint and export would carry two U-Nets)
and reads the live parameters, which under ZeRO-3 are empty shards. Here the averages are plain
fp32 tensors keyed by parameter name, updated from the full weights (gathered under ZeRO-3).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import ClassVar

import torch
from torch import nn


@contextlib.contextmanager
def full_parameters(module: nn.Module) -> Iterator[None]:
    """The module's whole parameters readable inside the block: under ZeRO-3 each rank holds a
    slice and DeepSpeed gathers them (a collective: every rank must enter)."""
    parameters = list(module.parameters())
    if any(hasattr(p, "ds_id") for p in parameters):
        import deepspeed

        with deepspeed.zero.GatheredParameters(parameters, modifier_rank=None):
            yield
    else:
        yield


class EMA:
    """shadow <- decay * shadow + (1 - decay) * weights, with the decay warmed up as
    min(decay, (1 + n) / (10 + n)) so a short run's average is not stuck at the initial weights."""

    def __init__(self, decay: float):
        self.decay = decay
        self.updates = 0
        self.shadow: dict[str, torch.Tensor] = {}

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, network: nn.Module) -> None:
        with full_parameters(network):
            named = dict(network.named_parameters())
            if not self.shadow:
                self.shadow = {name: p.detach().float().clone() for name, p in named.items()}
            else:
                weights = [named[name].detach().float() for name in self.shadow]
                torch._foreach_lerp_(list(self.shadow.values()), weights, 1 - self.current_decay())
        self.updates += 1

    def state(self) -> dict[str, torch.Tensor]:
        """For a checkpoint: the averages and the update count (a 0-d tensor)."""
        return {**{f"shadow.{k}": v for k, v in self.shadow.items()}, "updates": torch.tensor(self.updates)}

    def load_state(self, state: dict[str, torch.Tensor], device: torch.device) -> None:
        self.updates = int(state["updates"])
        self.shadow = {k.removeprefix("shadow."): v.to(device) for k, v in state.items() if k.startswith("shadow.")}


class AveragedNetworkHooks:
    """A family's hooks (models.base.GenerativeModel's) for an EMA of one of its networks, the
    attribute named `averaged_network`: update after each of its steps, keep it in checkpoints,
    export it in place of the raw weights. Listed before GenerativeModel in the family's bases."""

    averaged_network: ClassVar[str]
    ema: EMA | None

    def _averaged(self) -> nn.Module:
        return getattr(self, self.averaged_network)

    def after_update(self, network: str) -> None:
        if network == self.averaged_network and self.ema is not None:
            self.ema.update(self._averaged())

    def checkpoint_state(self) -> dict[str, torch.Tensor]:
        """The EMA under `ema.` keys; nothing before its first update."""
        if self.ema is None or not self.ema.shadow:
            return {}
        return {f"ema.{k}": v for k, v in self.ema.state().items()}

    def load_checkpoint_state(self, state: dict[str, torch.Tensor]) -> None:
        if self.ema is not None and state:
            device = next(self._averaged().parameters()).device
            self.ema.load_state({k.removeprefix("ema."): v for k, v in state.items()}, device)

    def exported_state(self, state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The averaged network's EMA weights in place of its raw ones: what is evaluated and registered."""
        if self.ema is None or not self.ema.shadow:
            return state
        averages = {f"{self.averaged_network}.{k}": v.detach().cpu().clone() for k, v in self.ema.shadow.items()}
        return {**state, **averages}
