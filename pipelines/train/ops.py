"""Build DeepSpeed's CPU shared-memory collective op once, at set-up time.

On a machine without a GPU, DeepSpeed JIT-compiles `deepspeed_shm_comm` the first time a
process initialises its communication backend (about a minute on 2 cores). Building it here,
into the torch extensions cache, keeps that minute out of a new user's first run. genpipe passes
a torch optimizer to DeepSpeed, so the `fused_adam` op is never needed.

The build cache is kept inside the Python environment: torch's default cache is shared by every
environment of the user, and its key includes the sources' path, so two environments on one
machine would keep rebuilding each other's op (a minute each time).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path


def use_environment_extension_cache() -> None:
    """Point torch's JIT extension cache at this environment's own folder (unless set), and build
    with this environment's own ninja (DeepSpeed installs one).

    torch runs whichever `ninja` PATH finds first. `make` and a process started as `.venv/bin/...`
    have no `.venv/bin` on PATH and found the system's ninja 1.11; `genpipe local-cluster`'s nodes
    (and an activated venv) have it and found the environment's 1.13. Ninja 1.12 changed how its
    log hashes a command, so each read the other's build as stale and rebuilt the op: in a user's
    first run on a local cluster, twice in every test session, ~45 s of a core each time, with
    every process that needed the op waiting on the build's lock.
    """
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    own_bin = Path(sys.executable).parent
    if (own_bin / "ninja").exists():
        path = os.environ.get("PATH", "").split(os.pathsep)
        if not path or path[0] != str(own_bin):
            os.environ["PATH"] = os.pathsep.join([str(own_bin), *(entry for entry in path if entry != str(own_bin))])


def main() -> None:
    use_environment_extension_cache()
    import torch

    if torch.cuda.is_available():
        print("warmup: GPU machine, DeepSpeed uses NCCL; nothing to build")
        return
    os.environ.setdefault("DS_ACCELERATOR", "cpu")  # skips DeepSpeed's "could not detect" warning
    from deepspeed.accelerator import get_accelerator

    builder = get_accelerator().create_op_builder("ShareMemCommBuilder")
    if builder is None:
        print("warmup: this DeepSpeed has no CPU shared-memory op; nothing to build")
        return
    started = time.monotonic()
    builder.load(verbose=False)
    print(f"warmup: DeepSpeed {builder.NAME} ready ({time.monotonic() - started:.0f}s)")


if __name__ == "__main__":
    main()
