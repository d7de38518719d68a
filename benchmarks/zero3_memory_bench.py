"""ZeRO-3's working set on CPU ranks (issue 35): the peak memory of a rank training the DDPM
`large` preset (361M parameters, 64 px) under ZeRO-3, with DeepSpeed's default live-parameter and
bucket sizes against the sizes genpipe derives from the model (`engines.zero3_working_set`).

`python benchmarks/zero3_memory_bench.py [--steps 2] [--batch 1] [--record]`

Two gloo ranks in this process's children (no Ray: the engine is the question), each building the
model and its engine as a Ray Train worker does (`engines.build_engines`), then taking `--steps`
optimizer steps of `--batch` random 64 px images; rank 0 reads its resident memory (VmRSS) and
high-water mark (VmHWM) after each phase. The arithmetic beside it: fp32 weights, gradients and
Adam's two moments are 16 bytes a parameter, a rank's share of them under ZeRO-3 8 bytes a
parameter on 2 ranks, plus the EMA (4 bytes a parameter, whole on every rank).
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.large_cpu_bench import process_memory  # noqa: E402
from benchmarks.results_table import append_table  # noqa: E402

GIB = 2**30
DEEPSPEED_DEFAULTS = {
    "stage3_max_live_parameters": 10**9,
    "stage3_max_reuse_distance": 10**9,
    "stage3_prefetch_bucket_size": 5 * 10**7,
    "reduce_bucket_size": 5 * 10**8,
}
PHASES = ["model built", "engine built", "step 1 backward", "step 1 done", "last step done"]


def memory() -> tuple[float, float]:
    """(resident, high-water mark) of this process, GiB."""
    resident, peak = process_memory()
    return resident / GIB, peak / GIB


def rank_main(rank: int, folder: str, defaults: bool, steps: int, batch: int, results) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    import pipelines.train.engines as engines
    from models import build_model, resolve_config
    from pipelines.config import load_config

    if defaults:
        engines.zero3_working_set = lambda parameters: dict(DEEPSPEED_DEFAULTS)
    seen: dict[str, tuple[float, float]] = {}
    model = build_model("ddpm", resolve_config("ddpm", "large", {}, {"image_shape": (1, 64, 64)}))
    parameters = sum(p.numel() for p in model.parameters())
    seen["model built"] = memory()
    train = load_config("quickstart", [f"train.batch_size={batch}"]).train
    built = engines.build_engines(model, train, 3, steps, on_gpu=False)
    seen["engine built"] = memory()
    images = torch.randn(batch, 1, 64, 64, generator=torch.Generator().manual_seed(rank))
    started = time.perf_counter()
    for step in range(1, steps + 1):
        for name, engine in built.items():
            engine.backward(model.loss(name, {"image": images}))
            if step == 1:
                seen["step 1 backward"] = memory()
            engine.step()
            model.after_update(name)
        if step == 1:
            seen["step 1 done"] = memory()
    seen["last step done"] = memory()
    if rank == 0:
        results.put((parameters, seen, (time.perf_counter() - started) / steps))
    dist.destroy_process_group()


def measure(defaults: bool, steps: int, batch: int):
    context = mp.get_context("spawn")
    results = context.SimpleQueue()
    with tempfile.TemporaryDirectory() as folder:
        mp.start_processes(rank_main, args=(folder, defaults, steps, batch, results), nprocs=2, start_method="spawn")
    return results.get()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--record", action="store_true", help="append the table to benchmarks/RESULTS.md")
    args = parser.parse_args()
    rows = []
    for label, defaults in (("DeepSpeed's defaults", True), ("genpipe's working set", False)):
        parameters, seen, seconds = measure(defaults, args.steps, args.batch)
        cells = [f"{seen[phase][0]:.2f} / {seen[phase][1]:.2f}" for phase in PHASES]
        rows.append(f"| {label} | {' | '.join(cells)} | {seconds:.0f} |")
        print(rows[-1], flush=True)
    share = 16 * parameters / 2 / 2**30 + 4 * parameters / 2**30
    about = [
        f"`python benchmarks/zero3_memory_bench.py --steps {args.steps} --batch {args.batch}`: the DDPM `large` U-Net",
        f"({parameters / 1e6:.0f}M parameters, 64 px, fp32) under ZeRO-3 on 2 gloo CPU ranks, rank 0's resident",
        "memory / high-water mark in GiB after each phase. Arithmetic: a rank's share of weights, gradients",
        f"and Adam state (8 B/param on 2 ranks) plus the whole EMA (4 B/param): {share:.2f} GiB.",
    ]
    columns = ["ZeRO-3 sizes", *PHASES, "s per step"]
    if args.record:
        append_table("ZeRO-3's working set on CPU ranks (issue 35)", about, columns, rows)
    print("\n".join(about))


if __name__ == "__main__":
    main()
