"""Processes that share a machine: torch threads beyond a process's share of the cores, against
one share each (what tests/conftest.py gives every pytest-xdist worker, and what
pipelines/config/threads.py keeps when OMP_NUM_THREADS says so).

Run: `python benchmarks/threads_bench.py [--record] [--steps 300] [--processes 2]`.

Each process trains the quickstart's tiny DDPM on digits for `--steps` steps (batch 64): first one
process alone at every core's thread, then `--processes` copies side by side at every core's
thread each (the baseline: torch's default), then side by side at cores/processes threads each.
It reports each case's wall time and the machine's busy CPU seconds (/proc/stat, every process on
the machine, spinning OpenMP threads included). `--record` appends the table to RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"

TRAIN = """
import sys, torch
from sklearn.datasets import load_digits
from models import build_model
from models.zoo import resolve_config
torch.manual_seed(0)
images = torch.tensor(load_digits().images, dtype=torch.float32).unsqueeze(1) / 8 - 1
config = resolve_config("ddpm", "tiny", {"timesteps": 100}, {"image_shape": (1, 8, 8), "num_classes": 10})
model = build_model("ddpm", config)
optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
for step in range(int(sys.argv[1])):
    loss = model.loss("unet", {"image": images[torch.randint(0, len(images), (64,))]})
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
"""


def busy_ticks() -> int:
    """The machine's busy CPU time since boot, in clock ticks (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    return sum(fields) - fields[3] - fields[4]  # less idle and iowait


def run_side_by_side(processes: int, threads: int, steps: int) -> tuple[float, float]:
    """(wall seconds, busy CPU seconds) of `processes` training copies started at once."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONPATH": str(REPO)}
    ticks, started = busy_ticks(), time.monotonic()
    copies = [subprocess.Popen([sys.executable, "-c", TRAIN, str(steps)], env=env) for _ in range(processes)]
    if any(copy.wait() != 0 for copy in copies):
        raise SystemExit("a training copy failed")
    return time.monotonic() - started, (busy_ticks() - ticks) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    share = max(1, cores // args.processes)
    cases = [
        (f"1 process alone, {cores} threads", 1, cores),
        (f"{args.processes} side by side, {cores} threads each (torch's default)", args.processes, cores),
        (f"{args.processes} side by side, {share} thread(s) each (their share)", args.processes, share),
    ]
    rows = []
    for label, processes, threads in cases:
        wall, cpu = run_side_by_side(processes, threads, args.steps)
        rows.append(f"| {label} | {wall:.1f} | {cpu:.0f} |")
        print(rows[-1], flush=True)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    table = "\n".join(
        [
            f"### Threads of processes sharing a machine, {stamp} — {platform.machine()}, {cores} cores",
            "",
            f"`python benchmarks/threads_bench.py --steps {args.steps} --processes {args.processes}`: the tiny",
            "DDPM on digits, batch 64, each process a fresh interpreter.",
            "",
            "| case | wall s | machine busy CPU s |",
            "| --- | --- | --- |",
            *rows,
            "",
        ]
    )
    if args.record:
        with RESULTS.open("a") as results:
            results.write("\n" + table)
    print(table)


if __name__ == "__main__":
    main()
