"""DeepSpeed on a CPU: the ops it builds on first use are built by one ninja, whatever PATH a
process has, and the op only inference would use is never built."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.train.ops import use_environment_extension_cache

OWN_BIN = Path(sys.executable).parent


@pytest.mark.skipif(not (OWN_BIN / "ninja").exists(), reason="this environment has no ninja of its own")
def test_every_process_builds_with_the_environments_ninja(monkeypatch):
    monkeypatch.setenv("PATH", f"/usr/bin{os.pathsep}/bin{os.pathsep}{OWN_BIN}")
    monkeypatch.delenv("TORCH_EXTENSIONS_DIR", raising=False)
    use_environment_extension_cache()
    assert os.environ["PATH"].split(os.pathsep) == [str(OWN_BIN), "/usr/bin", "/bin"]
    assert os.environ["TORCH_EXTENSIONS_DIR"] == str(Path(sys.prefix) / "torch_extensions")
    use_environment_extension_cache()  # idempotent: PATH does not grow
    assert os.environ["PATH"].split(os.pathsep) == [str(OWN_BIN), "/usr/bin", "/bin"]


ENGINE_IN_A_FRESH_ENVIRONMENT = """
import os, sys
from pathlib import Path
import torch
from deepspeed.comm import comm
from pipelines.config import TrainConfig
from pipelines.train.engines import build_engine
from pipelines.train.settings import one_process_group

with one_process_group(on_gpu=False):
    engine = build_engine(torch.nn.Linear(4, 2), TrainConfig(batch_size=2), 0, total_steps=2, on_gpu=False)
    engine.backward(engine(torch.randn(2, 4)).square().mean())
    engine.step()
    print(comm.cdb.shm_comm_op is None, sorted(p.name for p in Path(os.environ["TORCH_EXTENSIONS_DIR"]).rglob("*")))
"""


def test_an_engine_on_a_cpu_builds_and_starts_no_inference_collective_op(tmp_path):
    """DeepSpeed's CPU backend would compile its shared-memory all-reduce (~65 s of CPU, once per
    environment) and start it in every training process, for tensor-parallel inference alone: an
    engine in an environment where nothing was ever built trains without building or starting it."""
    done = subprocess.run(
        [sys.executable, "-c", ENGINE_IN_A_FRESH_ENVIRONMENT],
        env={**os.environ, "TORCH_EXTENSIONS_DIR": str(tmp_path / "extensions"), "DS_ACCELERATOR": "cpu"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().splitlines()[-1] == "True []", done.stdout[-2000:]
