"""What each `train.strategy` costs a model that fits every worker, against plain loops, in one run.

Run: `python benchmarks/strategy_bench.py [--record]`.

Two processes of one thread each (the quickstart's shape on 2 cores), gloo, the quickstart's tiny
DDPM at 64 images per process, 60 timed optimizer steps after 10, no Ray (Ray is not the question
here: the engines are). Rows:
- no gradient exchange at all: the floor (each process trains alone);
- torch DistributedDataParallel with the same AdamW (multi-tensor) and clipping;
- genpipe's DeepSpeed engine (pipelines/train/engines.py) at ddp (stage 0), zero1 and zero2.
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

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
from benchmarks.results_table import append_table  # noqa: E402

STEPS, WARM, BATCH, ROWS = 60, 10, 64, 1437
WAYS = {
    "no gradient exchange (floor)": None,
    "torch DDP": None,
    "genpipe engine, strategy ddp (ZeRO 0)": 0,
    "genpipe engine, strategy zero1": 1,
    "genpipe engine, strategy zero2": 2,
}


def _model():
    import models

    torch.manual_seed(0)
    return models.build_model("ddpm", models.resolve_config("ddpm", "tiny", {}, {"image_shape": (1, 8, 8)}))


def _plain_step(model, network, clip: float):
    optimizer = torch.optim.AdamW(model.unet.parameters(), lr=2e-3, foreach=True)

    def step(batch):
        loss = model.loss("unet", batch)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(network.parameters(), clip, foreach=True)
        optimizer.step()

    return step


def _engine_step(model, stage: int):
    from pipelines.config import TrainConfig
    from pipelines.train.engines import build_engine

    engine = build_engine(model.unet, TrainConfig(batch_size=BATCH, learning_rate=2e-3), stage, 10_000, False)
    model.use_network("unet", engine)

    def step(batch):
        loss = model.loss("unet", batch)
        engine.backward(loss)
        engine.step()

    return step


def _worker(rank: int, way: str, folder: str, results) -> None:
    os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2", DS_ACCELERATOR="cpu")
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{folder}/rendezvous", rank=rank, world_size=2)
    model = _model()
    if WAYS[way] is not None:
        step = _engine_step(model, WAYS[way])
    elif way == "torch DDP":
        network = torch.nn.parallel.DistributedDataParallel(model.unet)
        model.use_network("unet", network)
        step = _plain_step(model, network, 1.0)
    else:
        step = _plain_step(model, model.unet, 1.0)
    images = torch.randn(ROWS, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    generator = torch.Generator().manual_seed(rank)
    for index in range(WARM + STEPS):
        if index == WARM:
            dist.barrier()
            started = time.perf_counter()
        step({"image": images[torch.randint(0, ROWS, (BATCH,), generator=generator)]})
    dist.barrier()
    if rank == 0:
        results.put((time.perf_counter() - started) / STEPS)
    dist.destroy_process_group()


def measure(way: str) -> float:
    context = mp.get_context("spawn")
    results = context.Queue()
    with tempfile.TemporaryDirectory() as folder:
        workers = [context.Process(target=_worker, args=(rank, way, folder, results)) for rank in range(2)]
        for worker in workers:
            worker.start()
        seconds = results.get()
        for worker in workers:
            worker.join()
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = parser.parse_args()
    timings = {way: measure(way) for way in WAYS}
    floor = timings["no gradient exchange (floor)"]
    rows = [f"| {way} | {1000 * s:.1f} | {floor / s:.3f} |" for way, s in timings.items()]
    print("\n".join(rows))
    if args.record:
        append_table(
            "Strategies on a model that fits (issue 19)",
            [
                "`python benchmarks/strategy_bench.py --record`: 2 processes x 1 thread, gloo, the tiny DDPM at",
                "64 images a process, 60 timed steps after 10, no Ray.",
            ],
            ["way", "ms per step", "floor / way"],
            rows,
        )


if __name__ == "__main__":
    main()
