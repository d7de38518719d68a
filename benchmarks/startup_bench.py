"""Where the train step's start-up goes, and what genpipe's settings save, against Ray's defaults.

Run: `python benchmarks/startup_bench.py [--record] [--steps 60] [--repeats 2]`.

What it measures, in one run on this machine (each run a fresh `genpipe` process with its own
local Ray, as a user's command is; the quickstart's dataset prepared once, then a cache hit):
- the quickstart's train step (2 Ray Train workers, DeepSpeed), `--steps` optimizer steps, under
  genpipe's settings and, as the baseline, under Ray Train as Ray ships it
  (GENPIPE_RAY_TRAIN_DEFAULTS=1: its 2 s controller poll, its preemption watcher and its Ray Data
  manager, pipelines/train/startup.py);
- its start-up, split by the workers' own clock (pipelines/train/startup.py, the run's
  `startup/*` metrics): spawn (controller, placement group, worker process), imports (Ray, torch,
  DeepSpeed, MLflow, genpipe; the process group), setup (model, data, strategy), DeepSpeed's
  engines, the first step;
- the wind-down: the step's wall time less the start-up and the steps at the run's steady rate
  (final checkpoint, the worker group's shutdown, the controller noticing the end);
- the floor: a bare process that imports torch and genpipe's model, builds it and its optimizer
  and takes one step (what any training pays to start on this machine).
`--record` appends the table to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from pipelines.train.startup import RAY_TRAIN_DEFAULTS

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"
PHASES = ("spawn", "imports", "setup", "engines", "first_step")

RUN_ONE = """
import json, sys
from pipelines.workflow import api
settings = json.loads(sys.argv[1])
outcome = api.run("quickstart", sets=settings["sets"], steps=("prepare", "train"), storage=settings["storage"],
                  workflow_id=settings["workflow_id"])
"""

BARE = """
import time
started = time.time()
import torch
import models
from pipelines.config.loading import load_config
torch.set_num_threads(2)
config = load_config("quickstart", [])
resolved = models.resolve_config("ddpm", config.model.preset, config.model.params, {"image_shape": [1, 8, 8]})
model = models.build_model("ddpm", resolved)
optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, foreach=True)
batch = {"image": torch.randn(64, 1, 8, 8), "label": torch.zeros(64, dtype=torch.long)}
for name in model.networks():
    model.loss(name, batch).backward()
optimizer.step()
print(time.time() - started)
"""


def train_once(storage: Path, workflow_id: str, steps: int, ray_defaults: bool) -> dict:
    sets = [
        f"train.max_steps={steps}",
        f"train.log_every={max(1, steps // 6)}",
        f"train.checkpoint_every={steps}",
        "train.sample_every=0",
        "train.system_metrics_every_s=0",
    ]
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    for name in ("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", RAY_TRAIN_DEFAULTS):
        env.pop(name, None)
    if ray_defaults:
        env[RAY_TRAIN_DEFAULTS] = "1"
    settings = {"sets": sets, "storage": str(storage), "workflow_id": workflow_id}
    done = subprocess.run(
        [sys.executable, "-c", RUN_ONE, json.dumps(settings)], cwd=REPO, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"the train step failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}")
    return measured(storage, workflow_id, steps)


def measured(storage: Path, workflow_id: str, steps: int) -> dict:
    sys.path.insert(0, str(REPO))
    from pipelines.registry import tracking

    folder = storage / "workflows" / workflow_id
    wall = json.loads((folder / "train.json").read_text())["duration_s"]
    meta = json.loads((folder / "workflow.json").read_text())
    client = tracking.client(meta["tracking_uri"])
    metrics = client.get_run(meta["run_id"]).data.metrics
    rates = sorted(m.value for m in client.get_metric_history(meta["run_id"], "train/samples_per_s"))
    config = meta["config"]["train"]
    steps_per_s = rates[len(rates) // 2] / (config["batch_size"] * config["num_workers"])
    startup = {phase: metrics[f"startup/{phase}_s"] for phase in PHASES}
    startup_total = metrics["startup/total_s"]
    return {
        "wall_s": wall,
        "startup": startup,
        "startup_total_s": startup_total,
        "steps_s": (steps - 1) / steps_per_s,
        "wind_down_s": wall - startup_total - (steps - 1) / steps_per_s,
    }


def bare_start() -> float:
    done = subprocess.run([sys.executable, "-c", BARE], cwd=REPO, capture_output=True, text=True, check=True)
    return float(done.stdout.strip().splitlines()[-1])


def median_of(runs: list[dict]) -> dict:
    return {
        "wall_s": statistics.median(r["wall_s"] for r in runs),
        "startup": {p: statistics.median(r["startup"][p] for r in runs) for p in PHASES},
        "startup_total_s": statistics.median(r["startup_total_s"] for r in runs),
        "steps_s": statistics.median(r["steps_s"] for r in runs),
        "wind_down_s": statistics.median(r["wind_down_s"] for r in runs),
    }


def table(results: dict[str, dict], bare: float, steps: int, repeats: int) -> str:
    header = "| | " + " | ".join(results) + " |"
    lines = [header, "| --- |" + " --- |" * len(results)]

    def row(label: str, pick) -> None:
        lines.append(f"| {label} | " + " | ".join(f"{pick(r):.1f}" for r in results.values()) + " |")

    for phase in PHASES:
        row(f"start-up: {phase.replace('_', ' ')} s", lambda r, p=phase: r["startup"][p])
    row("**start-up, fit() to the first step s**", lambda r: r["startup_total_s"])
    row(f"{steps - 1} more steps at the steady rate s", lambda r: r["steps_s"])
    row("wind-down (final checkpoint, shutdown) s", lambda r: r["wind_down_s"])
    row("**start-up + wind-down s**", lambda r: r["startup_total_s"] + r["wind_down_s"])
    row("train step wall s", lambda r: r["wall_s"])
    lines.append("")
    lines.append(
        f"Median of {repeats} runs each. Floor: a bare process that imports torch and genpipe's model, "
        f"builds it and its optimizer and takes one step: **{bare:.1f} s**."
    )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=60)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    variants = {"Ray Train as shipped": True, "genpipe's settings": False}
    with tempfile.TemporaryDirectory() as folder:
        storage = Path(folder)
        runs: dict[str, list[dict]] = {name: [] for name in variants}
        for repeat in range(args.repeats):
            for index, (name, ray_defaults) in enumerate(variants.items()):  # interleaved: drift hits both
                runs[name].append(train_once(storage, f"startup-{repeat}-{index}", args.steps, ray_defaults))
                print(f"{name}, run {repeat + 1}: {json.dumps(runs[name][-1])}", flush=True)
        bare = statistics.median(bare_start() for _ in range(3))
    results = {name: median_of(found) for name, found in runs.items()}
    text = table(results, bare, args.steps, args.repeats)
    print(text)
    if args.record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
        machine = f"{platform.machine()}, {os.cpu_count()} cores"
        with RESULTS.open("a") as handle:
            handle.write(f"\n### Train step start-up (issue 28), {stamp} — {machine}, no GPU\n\n")
            handle.write("`python benchmarks/startup_bench.py --record`: the quickstart's train step, ")
            handle.write(f"{args.steps} steps, 2 workers, each run a fresh process and Ray.\n\n{text}\n")


if __name__ == "__main__":
    main()
