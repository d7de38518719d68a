"""Build DeepSpeed's CPU shared-memory collective op once, at set-up time.

On a machine without a GPU, DeepSpeed JIT-compiles `deepspeed_shm_comm` the first time a
process initialises its communication backend (about a minute on 2 cores). Building it here,
into the torch extensions cache, keeps that minute out of a new user's first run. genpipe passes
a torch optimizer to DeepSpeed, so the `fused_adam` op is never needed.
"""

from __future__ import annotations

import time


def main() -> None:
    import torch

    if torch.cuda.is_available():
        print("warmup: GPU machine, DeepSpeed uses NCCL; nothing to build")
        return
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
