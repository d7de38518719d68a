"""Time each phase of `genpipe run quickstart` and its peak memory, against a bare PyTorch baseline.

Run: `make bench` (or `python benchmarks/quickstart_bench.py [--record]`).

What it measures, in one run on this machine:
- the quickstart as a new user runs it (a fresh storage folder, a fresh local Ray), end to end,
  with the peak of the summed PSS of every process in its tree (driver, raylet, GCS, workers,
  Ray Data, Ray Train), sampled every 0.5 s;
- each phase: start-up (imports, Ray, MLflow) until the first step starts, then every step's
  duration from its workflow record, the training throughput rank 0 logged to MLflow;
- the quality the quickstart reached: classifier-FID (and the same score for real images),
  class coverage;
- the baseline: the same model, batch and number of optimizer steps in a bare single-process
  PyTorch loop (2 threads, no Ray, no DeepSpeed) doing the same work per step (the quickstart's
  AdamW on the multi-tensor path, gradient clipping at train.grad_clip, the DDPM's EMA update), so
  what is left between the two is the cost of the orchestration.
`--record` appends the results to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def proportional_set_size(pid: int) -> int:
    """PSS in bytes from /proc/PID/smaps_rollup: shared pages (the object store, torch's
    libraries) counted once across processes, and cheap enough to sample often."""
    with open(f"/proc/{pid}/smaps_rollup") as handle:
        for line in handle:
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    return 0


class TreeMemory(threading.Thread):
    """Peak of the summed PSS of a process and all its descendants, sampled every `interval` s."""

    def __init__(self, pid: int, interval: float = 2.0):  # reading ~30 smaps costs CPU the run would use
        super().__init__(daemon=True)
        self.root, self.interval, self.peak, self._done = psutil.Process(pid), interval, 0, threading.Event()

    def run(self) -> None:
        while not self._done.is_set():
            try:
                processes = [self.root, *self.root.children(recursive=True)]
            except psutil.NoSuchProcess:
                break
            total = 0
            for process in processes:
                with contextlib.suppress(OSError, ValueError, psutil.Error):
                    total += self.measure(process)
            self.peak = max(self.peak, total)
            self._done.wait(self.interval)

    def measure(self, process: psutil.Process) -> int:
        """One process's share of the sum: its PSS."""
        return proportional_set_size(process.pid)

    def stop(self) -> int:
        self._done.set()
        self.join()
        return self.peak


def run_quickstart(storage: Path) -> dict:
    command = [str(REPO / ".venv" / "bin" / "genpipe"), "run", "quickstart", "--storage", str(storage)]
    started = time.monotonic()
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    memory = TreeMemory(process.pid)
    memory.start()
    first_step_at, workflow_id, log = None, None, []
    for line in process.stdout:
        log.append(line)
        if line.startswith("> prepare") and first_step_at is None:
            first_step_at = time.monotonic() - started
        if line.startswith("workflow ") and workflow_id is None:
            workflow_id = line.split()[1]
    code = process.wait()
    total = time.monotonic() - started
    peak = memory.stop()
    if code != 0:
        sys.stderr.write("".join(log[-60:]))
        raise SystemExit(f"quickstart failed with exit code {code}")
    steps = {}
    for step in ("prepare", "train", "evaluate", "register"):
        steps[step] = json.loads((storage / "workflows" / workflow_id / f"{step}.json").read_text())
    return {
        "total_s": total,
        "startup_s": first_step_at,
        "peak_pss_bytes": peak,
        "workflow_id": workflow_id,
        "steps": steps,
    }


def training_throughput(storage: Path, workflow_id: str) -> dict:
    sys.path.insert(0, str(REPO))
    from pipelines.registry import tracking

    meta = json.loads((storage / "workflows" / workflow_id / "workflow.json").read_text())
    client = tracking.client(meta["tracking_uri"])
    history = client.get_metric_history(meta["run_id"], "train/samples_per_s")
    config = meta["config"]["train"]
    global_batch = config["batch_size"] * config["num_workers"]
    samples_per_s = sorted(m.value for m in history)[len(history) // 2]  # the median window
    return {
        "samples_per_s": samples_per_s,
        "steps_per_s": samples_per_s / global_batch,
        "steps": max(m.step for m in history),
        "global_batch": global_batch,
        "strategy": client.get_run(meta["run_id"]).data.tags.get("genpipe.train.strategy", "zero2"),
    }


def bare_pytorch_baseline(steps: int, global_batch: int) -> dict:
    """The same tiny DDPM and optimizer steps in one process: what the hardware gives alone."""
    import torch
    from sklearn.datasets import load_digits

    import models
    from pipelines.config.loading import load_config

    torch.set_num_threads(2)
    images = torch.from_numpy(load_digits().images / 8.0 - 1.0).float()[:, None]
    config = models.resolve_config("ddpm", "tiny", {}, {"image_shape": (1, 8, 8)})
    model = models.build_model("ddpm", config)
    train = load_config("quickstart").train
    optimizer = torch.optim.AdamW(model.unet.parameters(), lr=train.learning_rate, foreach=True)
    generator = torch.Generator().manual_seed(0)
    started = time.perf_counter()
    for _ in range(steps):
        rows = torch.randint(0, len(images), (global_batch,), generator=generator)
        loss = model.loss("unet", {"image": images[rows]})
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.unet.parameters(), train.grad_clip, foreach=True)
        optimizer.step()
        model.after_update("unet")  # the EMA of the weights, as the pipeline's loop does
    elapsed = time.perf_counter() - started
    return {"steps_per_s": steps / elapsed, "samples_per_s": steps * global_batch / elapsed, "total_s": elapsed}


def machine() -> str:
    memory = psutil.virtual_memory().total / 2**30
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {memory:.0f} GiB, no GPU"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--record", action="store_true", help="append the results to benchmarks/RESULTS.md")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    with tempfile.TemporaryDirectory(prefix="genpipe-bench-") as folder:
        storage = Path(folder) / "store"
        run = run_quickstart(storage)
        throughput = training_throughput(storage, run["workflow_id"])
    baseline = bare_pytorch_baseline(throughput["steps"], throughput["global_batch"])
    durations = {step: record["duration_s"] for step, record in run["steps"].items()}
    metrics = run["steps"]["evaluate"]["result"]["metrics"]
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": machine(),
        "total_s": round(run["total_s"], 1),
        "startup_s": round(run["startup_s"], 1),
        "steps_s": durations,
        "peak_memory_gib": round(run["peak_pss_bytes"] / 2**30, 2),
        "train_steps_per_s": round(throughput["steps_per_s"], 2),
        "train_samples_per_s": round(throughput["samples_per_s"], 0),
        "baseline_steps_per_s": round(baseline["steps_per_s"], 2),
        "baseline_train_s": round(baseline["total_s"], 1),
        "optimizer_steps": throughput["steps"],
        "strategy": throughput["strategy"],
        "classifier_fid": round(metrics["eval/classifier_fid"], 2),
        "classifier_fid_real_data": round(metrics["eval/classifier_fid_real_data"], 2),
        "class_coverage": metrics["eval/class_coverage"],
    }
    print(json.dumps(result, indent=2))
    if args.record:
        record(result)


def record(result: dict) -> None:
    steps = result["steps_s"]
    lines = [
        f"\n### Quickstart, {result['date']} — {result['machine']}\n",
        "| phase | seconds |",
        "| --- | --- |",
        f"| start-up (imports, Ray, MLflow) | {result['startup_s']} |",
        *(f"| {step} | {seconds} |" for step, seconds in steps.items()),
        f"| **total** (target ≤ 150) | **{result['total_s']}** |\n",
        f"- Peak memory, all processes (PSS): **{result['peak_memory_gib']} GiB** (target ≤ 4).",
        f"- Training: {result['optimizer_steps']} optimizer steps, {result['train_steps_per_s']} steps/s "
        f"({result['train_samples_per_s']:.0f} images/s) on 2 Ray Train workers with DeepSpeed, "
        f"strategy {result['strategy']}; "
        f"baseline bare PyTorch loop, same model and global batch, one process, same work per step: "
        f"{result['baseline_steps_per_s']} steps/s ({result['baseline_train_s']} s for the same steps): "
        f"ratio **{result['train_steps_per_s'] / result['baseline_steps_per_s']:.3f}** (target ≥ 0.9).",
        f"- Quality: classifier-FID {result['classifier_fid']} (real train images score "
        f"{result['classifier_fid_real_data']}), class coverage {result['class_coverage']}/10.\n",
    ]
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))
    print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
