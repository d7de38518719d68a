"""The training checkpoint, one format for `train` and `tune`: every network's DeepSpeed checkpoint
(each rank's shard merged into one folder by Ray), the model's own training state (an EMA) beside
them, and in the final one the consolidated model (safetensors + config, loadable without
DeepSpeed). Ray keeps the newest `train.keep_checkpoints` of a run or a trial.
"""

from __future__ import annotations

import os

from safetensors.torch import load_file, save_file

from data_prep.sample_order import Cursor
from models.weights import save_model
from pipelines.train.engines import full_state_dict
from pipelines.train.loop import Fit
from storage import read_bytes

MODEL_DIR = "model"  # inside the final checkpoint: safetensors weights + config.json
MODEL_STATE_FILE = "model_state.safetensors"  # beside the networks' checkpoints: e.g. the EMA


def restore(fit: Fit, folder: str) -> int:
    """Load every network's DeepSpeed checkpoint from `folder`, the model's own training state
    (an EMA) and the data cursor; returns the step it was taken at."""
    step = 0
    for name, engine in fit.engines.items():
        _, client_state = engine.load_checkpoint(os.path.join(folder, name))
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
    model_state = fit.model.checkpoint_state()  # the same on every rank: rank 0 writes it
    if model_state and fit.settings.rank == 0:
        save_file(
            {k: v.detach().cpu().contiguous() for k, v in model_state.items()}, os.path.join(folder, MODEL_STATE_FILE)
        )
    if with_model:
        weights = fit.model.exported_state(full_state_dict(fit.model, fit.settings.train.zero_stage))
        if fit.settings.rank == 0:
            model_dir = save_model(fit.model, os.path.join(folder, MODEL_DIR), weights)
            for file_name, uri in (extra_files or {}).items():
                (model_dir / file_name).write_bytes(read_bytes(uri))
