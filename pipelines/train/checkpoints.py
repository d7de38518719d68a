"""The training checkpoint, one format for `train` and `tune`: every network's DeepSpeed checkpoint
(each rank's shard merged into one folder by Ray), the model's own training state (an EMA) beside
them, and in the final one the consolidated model (safetensors + config, loadable without
DeepSpeed). Ray keeps the newest `train.keep_checkpoints` of a run or a trial.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import json
import logging
import os
import pickle
import tempfile
from collections.abc import Iterator
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
from typed_errors import first_line

log = logging.getLogger("genpipe.train")

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


_TORCH_LOAD = torch.load  # torch's own, also while _code_free_torch_load stands in for it


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
            return _TORCH_LOAD(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = next((line for line in str(exc).splitlines() if "GLOBAL" in line), first_line(exc))
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
    under ZeRO, whose checkpoints cut the optimizer state (and under stage 3 the weights) for the
    group that wrote them: `restore(..., regroup=True)` then loads it through DeepSpeed's universal
    checkpoint, cut for no group. Under ddp every worker's checkpoint holds everything."""
    return written_by is not None and written_by != world and strategy.zero_stage != 0


@contextlib.contextmanager
def _code_free_torch_load() -> Iterator[None]:
    """DeepSpeed's universal-checkpoint converter and loader call `torch.load(weights_only=False)`
    themselves: for as long as they run, torch.load is `load_without_code`, so a regrouped resume
    keeps the guarantee of every other (no pickled code runs)."""

    def load(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
        return load_without_code(f, map_location)

    torch.load = load
    try:
        yield
    finally:
        torch.load = _TORCH_LOAD


@contextlib.contextmanager
def _universal(network_folder: str) -> Iterator[tuple[str, str]]:
    """(folder, tag) of the latest DeepSpeed checkpoint in `network_folder`, converted to DeepSpeed's
    universal format (every parameter's weights and Adam moments whole, for any group size) in a
    temporary folder. Chosen over resharding the consolidated weights ourselves: those hold no
    optimizer state, and DeepSpeed's converter knows its own fragment layout for every stage."""
    from deepspeed.checkpoint import ds_to_universal

    with open(os.path.join(network_folder, "latest")) as handle:
        tag = handle.read().strip()
    with tempfile.TemporaryDirectory(prefix="genpipe-universal-") as out:
        arguments = argparse.Namespace(
            input_folder=os.path.join(network_folder, tag),
            output_folder=os.path.join(out, tag),
            num_extract_workers=1,  # in this process: no process pool inside a training worker
            num_merge_workers=1,
            keep_temp_folder=False,
            strict=True,
            inject_missing_state=True,  # genpipe's models carry no Megatron-style checkpoint info
        )
        printed = io.StringIO()  # its progress lines and bars: the log, not a Ray worker's stdout
        with _code_free_torch_load(), contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            ds_to_universal.main(arguments)
        log.debug("universal checkpoint of %s: %s", network_folder, printed.getvalue()[-2000:])
        yield out, tag


def restore(fit: Fit, folder: str, regroup: bool = False) -> int:
    """Load every network's DeepSpeed checkpoint from `folder` (no pickled code: see
    `load_without_code`), the model's own training state (an EMA) and the data cursor; returns
    the step it was taken at. With `regroup` (a ZeRO checkpoint of a group of another size; the
    engines built with `universal=True`) each network's checkpoint goes through DeepSpeed's
    universal format: weights, Adam's moments, the LR schedule and the cursor all carry over."""
    step = 0
    for name, engine in fit.engines.items():
        # DeepSpeed reads every file of a checkpoint through its engine's checkpoint_engine, whose
        # torch.load has weights_only=False; this engine's reads go through ours instead.
        engine.checkpoint_engine.load = load_without_code
        with contextlib.ExitStack() as stack:
            source, tag = os.path.join(folder, name), None
            if regroup:
                source, tag = stack.enter_context(_universal(source))
                stack.enter_context(_code_free_torch_load())
            _, client_state = engine.load_checkpoint(source, tag=tag)
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
            json.dump(
                {
                    "name": strategy.name,
                    "reason": strategy.reason,
                    "world": fit.settings.world_size,
                    "lanes": fit.feed.order.lanes,
                },
                handle,
            )
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
