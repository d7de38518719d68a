"""DeepSpeed on a CPU: where the ops it compiles on first use are kept, and the one op it would
compile for every training process that training never calls.

- DeepSpeed's CPU communication backend builds (a just-in-time C++ compile: ~65 s of CPU on 2
  cores, once per environment) and starts, in every process that joins a group, its
  shared-memory all-reduce op. Only `inference_all_reduce` (tensor-parallel inference) calls it;
  training's all-reduce, all-gather and reduce-scatter go through torch.distributed (gloo).
  `skip_the_inference_collective_op` marks it incompatible in DeepSpeed's own table of usable ops,
  the one its backend consults before building: it is neither built nor started.
- Ops that are used (the vectorised CPU Adam of `train.offload_optimizer`) are still built on
  first use, into a cache inside the Python environment (`use_environment_extension_cache`).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

INFERENCE_COLLECTIVE_OP = "deepspeed_shm_comm"  # ShareMemCommBuilder.NAME


def use_environment_extension_cache() -> None:
    """Point torch's JIT extension cache at this environment's own folder (unless set), and build
    with this environment's own ninja (DeepSpeed installs one).

    torch's default cache is shared by every environment of the user, and its key includes the
    sources' path, so two environments on one machine would keep rebuilding each other's ops.
    torch runs whichever `ninja` PATH finds first: `make` and a process started as `.venv/bin/...`
    have no `.venv/bin` on PATH and found the system's ninja 1.11, `genpipe local-cluster`'s nodes
    (and an activated venv) found the environment's 1.13; ninja 1.12 changed how its log hashes a
    command, so each read the other's build as stale and built the op again (~45 s of a core).
    """
    os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path(sys.prefix) / "torch_extensions"))
    own_bin = Path(sys.executable).parent
    if (own_bin / "ninja").exists():
        path = os.environ.get("PATH", "").split(os.pathsep)
        if not path or path[0] != str(own_bin):
            os.environ["PATH"] = os.pathsep.join([str(own_bin), *(entry for entry in path if entry != str(own_bin))])


def skip_the_inference_collective_op() -> None:
    """Before DeepSpeed's communication backend starts in this process (see the module's
    docstring). DeepSpeed probes its table once per process, on first use, and keeps edits to it."""
    import deepspeed.ops

    deepspeed.ops.__compatible_ops__[INFERENCE_COLLECTIVE_OP] = False
