"""The training checkpoint, one format for `train` and `tune`: every network's DeepSpeed checkpoint
(each rank's shard merged into one folder by Ray), the model's own training state (an EMA) beside
them, and in the final one the consolidated model (safetensors + config, loadable without
DeepSpeed). Ray keeps the newest `train.keep_checkpoints` of a run or a trial.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import pickle
from dataclasses import dataclass
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from data_prep.sample_order import Cursor
from models.weights import save_model
from pipelines.train.engines import full_state_dict
from pipelines.train.loop import Fit
from pipelines.train.strategy import Strategy
from storage import read_bytes

MODEL_DIR = "model"  # inside the final checkpoint: safetensors weights + config.json
MODEL_STATE_FILE = "model_state.safetensors"  # beside the networks' checkpoints: e.g. the EMA
STRATEGY_FILE = "strategy.json"  # how the group that wrote it shared the model and the data (WrittenBy)
# The classes DeepSpeed itself puts in its checkpoints (ZeRO's loss scaler, stage and fragment
# map): plain data holders, allowed by name. torch's weights_only unpickler refuses anything else,
# so a `.pt` planted in storage cannot run code at the next resume.
DEEPSPEED_CHECKPOINT_CLASSES = (
    "deepspeed.runtime.fp16.loss_scaler.LossScaler",
    "deepspeed.runtime.fp16.loss_scaler.DynamicLossScaler",
    "deepspeed.runtime.zero.config.ZeroStageEnum",
    "deepspeed.utils.tensor_fragment.fragment_address",
)


class CheckpointRefused(RuntimeError):
    """A checkpoint file holding Python objects genpipe does not load (tampered, or not ours)."""


def _allowed_classes() -> list[Any]:
    found = []
    for dotted in DEEPSPEED_CHECKPOINT_CLASSES:
        module, _, name = dotted.rpartition(".")
        with contextlib.suppress(ImportError, AttributeError):  # another DeepSpeed version: fewer
            found.append(getattr(importlib.import_module(module), name))
    return found


def load_without_code(path: str, map_location: Any = None) -> Any:
    """torch.load with weights_only: tensors, containers, numbers and DeepSpeed's data classes."""
    try:
        with torch.serialization.safe_globals(_allowed_classes()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next((line for line in str(exc).splitlines() if "GLOBAL" in line), str(exc).splitlines()[0])
        raise CheckpointRefused(
            f"{path}: refused: it holds Python objects that a genpipe checkpoint never does ({reason.strip()}); "
            "was it replaced? Remove the checkpoint to resume from an earlier one"
        ) from None


@dataclass(frozen=True)
class WrittenBy:
    """How the group that wrote a checkpoint shared the model and the data (its STRATEGY_FILE)."""

    strategy: Strategy
    world: int | None  # None: written before sizes were recorded
    lanes: int  # of the data order (data_prep.sample_order); 1: written before lanes


def written_with(recorded: bytes) -> WrittenBy:
    """The STRATEGY_FILE of a checkpoint. A resumed group keeps the strategy (the checkpoint's
    ZeRO shards are laid out for that stage) and the lanes (the epoch's order depends on them)."""
    fields = json.loads(recorded)
    kept = "kept from the checkpoint it resumes"
    reason = fields["reason"] if fields["reason"].startswith(kept) else f"{kept} ({fields['reason']})"
    # A second resume does not wrap the reason again.
    return WrittenBy(Strategy(fields["name"], reason), fields.get("world"), int(fields.get("lanes", 1)))


def regrouped(strategy: Strategy, written_by: int | None, world: int) -> bool:
    """Whether a checkpoint written by `written_by` workers resumes on a group of another size
    under ZeRO. Stages 1 and 2 keep the whole weights in every checkpoint, so the group restores
    those and rebuilds its optimizer shards from them (`restore(..., optimizer_states=False)`);
    stage 3 keeps only each rank's slice of them, which DeepSpeed cannot re-slice."""
    if written_by is None or written_by == world or strategy.zero_stage == 0:
        return False
    if strategy.zero_stage == 3:
        raise ValueError(
            f"train.num_workers: the checkpoint was written by {written_by} workers under zero3, which "
            f"keeps only each worker's slice of the weights; resume with train.num_workers={written_by}"
        )
    return True


def restore(fit: Fit, folder: str, optimizer_states: bool = True) -> int:
    """Load every network's DeepSpeed checkpoint from `folder` (no pickled code: see
    `load_without_code`), the model's own training state (an EMA) and the data cursor; returns
    the step it was taken at. Without `optimizer_states` (a ZeRO-1/2 group of another size: the
    optimizer's shards are cut for the old one, and DeepSpeed refuses them) the weights, the LR
    schedule and the cursor are restored, and DeepSpeed rebuilds its fp32 master weights from the
    weights; Adam's moments start afresh."""
    step = 0
    for name, engine in fit.engines.items():
        # DeepSpeed reads every file of a checkpoint through its engine's checkpoint_engine, whose
        # torch.load has weights_only=False; this engine's reads go through ours instead.
        engine.checkpoint_engine.load = load_without_code
        _, client_state = engine.load_checkpoint(os.path.join(folder, name), load_optimizer_states=optimizer_states)
        step = client_state["step"]
        fit.cursor = Cursor(*client_state["cursor"])
    state_file = os.path.join(folder, MODEL_STATE_FILE)
    if os.path.exists(state_file):
        fit.model.load_checkpoint_state(load_file(state_file))
    return step


def write_checkpoint(
    folder: str, fit: Fit, step: int, with_model: bool, extra_files: dict[str, str] | None = None
) -> None:
    """A DeepSpeed checkpoint of every network into `folder`; `with_model` adds the consolidated
    model (one safetensors file, loadable without DeepSpeed) and `extra_files` (a tokenizer)
    beside it. Under ZeRO-3 gathering the weights is a collective: every rank calls this."""
    for name, engine in fit.engines.items():
        engine.save_checkpoint(
            os.path.join(folder, name),
            tag=f"step{step}",
            client_state={"step": step, "cursor": [fit.cursor.epoch, fit.cursor.position]},
        )
    if fit.settings.rank == 0:
        strategy = fit.settings.strategy
        with open(os.path.join(folder, STRATEGY_FILE), "w") as handle:
            written = {"name": strategy.name, "reason": strategy.reason, "world": fit.settings.world_size}
            json.dump({**written, "lanes": fit.feed.order.lanes}, handle)
    model_state = fit.model.checkpoint_state()  # the same on every rank: rank 0 writes it
    if model_state and fit.settings.rank == 0:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model_state.items()}, os.path.join(folder, MODEL_STATE_FILE)
        )
    if with_model:
        weights = fit.model.exported_state(full_state_dict(fit.model, fit.settings.strategy.zero_stage))
        if fit.settings.rank == 0:
            model_dir = save_model(fit.model, os.path.join(folder, MODEL_DIR), weights)
            for file_name, uri in (extra_files or {}).items():
                (model_dir / file_name).write_bytes(read_bytes(uri))
