"""DeepSpeed's CPU op is built once per environment, by one ninja, whatever PATH a process has."""

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


def test_a_built_op_is_not_built_again_from_another_path():
    """The warm-up from a PATH without the environment's bin, then from one with it: the second
    finds the op built (each rebuilt it, ~22 s, when the two found different ninjas)."""
    built = Path(os.environ.get("TORCH_EXTENSIONS_DIR") or Path(sys.prefix) / "torch_extensions")
    stamps = []
    for path in (f"/usr/bin{os.pathsep}/bin", f"{OWN_BIN}{os.pathsep}/usr/bin{os.pathsep}/bin"):
        done = subprocess.run(
            [sys.executable, "-m", "pipelines.train.ops"],
            env={**os.environ, "PATH": path},
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        stamps.append(sorted((p.name, p.stat().st_mtime_ns) for p in built.rglob("*.so")))
    assert stamps[0] == stamps[1], "the second warm-up built the op again"
