"""ASHA vs random search with the same budget of trial-epochs, in one run on this machine.

Run: `python benchmarks/sweep_bench.py [--config gan-sweep-digits] [--budget 120] [--targets 300 150 100] [--record]`.

Both arms sweep the config's own space with the same seed and the same budget (epochs summed over
all trials, `tune.max_trial_epochs`), one after the other through `genpipe tune`:
- random: no early stopping, so the budget buys budget / train.epochs full-length trials;
- ASHA: as many trials as the budget allows (`--asha-trials` drawn), the poor ones stopped at the
  rungs, so the same budget explores more of the space.
For each arm: wall time and trial-epochs spent until the first report at or below each of
`--targets` (classifier-FID), the best score per family, the trials run. `--record` appends to
RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RESULTS = REPO / "benchmarks" / "RESULTS.md"


def run_arm(name: str, config: str, storage: Path, settings: list[str]) -> dict:
    options = [item for setting in settings for item in ("--set", setting)]
    command = [
        sys.executable,
        "-m",
        "pipelines.cli",
        "tune",
        config,
        "--storage",
        str(storage),
        "--workflow-id",
        name,
        *options,
    ]
    subprocess.run(
        command,
        cwd=REPO,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "RAY_DEDUP_LOGS": "1"},
    )
    rows = []
    for result_file in (storage / "tune" / name / "sweep").glob("*/result.json"):
        rows += [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    return {"rows": rows, "record": json.loads((storage / "workflows" / name / "tune.json").read_text())}


def summarise(arm: dict, metric: str, targets: list[float]) -> dict:
    """Reports in the order they happened: after how many trial-epochs and when (seconds from the
    sweep's first trial start) each target was first reached; the best score of each family."""
    rows = sorted(arm["rows"], key=lambda r: (r["timestamp"], r["time_total_s"]))
    start = min(r["timestamp"] - r["time_total_s"] for r in rows)
    reached = {}
    for target in targets:
        hit = next(
            ((index + 1, row["timestamp"] - start) for index, row in enumerate(rows) if row[metric] <= target), None
        )
        reached[str(target)] = hit and {"trial_epochs": hit[0], "seconds": round(hit[1])}
    families = {}
    for row in rows:
        family = row["config"].get("model.family", "-")
        if family not in families or row[metric] < families[family][metric]:
            families[family] = row
    return {
        "trials": len({r["trial_id"] for r in rows}),
        "trial_epochs": len(rows),
        "stopped_early": arm["record"]["result"]["stopped_early"],
        "reached": reached,
        "best_by_family": {
            f: {"fid": round(r[metric], 1), "coverage": r.get("eval/class_coverage"), "epoch": r["training_iteration"]}
            for f, r in families.items()
        },
        "best_params": arm["record"]["result"]["best_params"],
        "sweep_s": arm["record"]["duration_s"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="gan-sweep-digits")
    parser.add_argument("--budget", type=int, default=120, help="trial-epochs per arm")
    parser.add_argument("--epochs", type=int, default=30, help="max epochs per trial (ASHA's max_t)")
    parser.add_argument("--asha-trials", type=int, default=16)
    parser.add_argument(
        "--targets", type=float, nargs="+", default=[300.0, 150.0, 100.0], help="classifier-FIDs to reach"
    )
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    metric = "eval/classifier_fid"
    common = [
        f"train.epochs={args.epochs}",
        f"tune.max_trial_epochs={args.budget}",
        "tune.seed=0",
        f"tune.metric={metric}",
        "tune.mode=min",
    ]
    arms = {
        "random": [*common, "tune.scheduler=none", f"tune.num_samples={args.budget // args.epochs}"],
        "asha": [*common, "tune.scheduler=asha", f"tune.num_samples={args.asha_trials}"],
    }
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        for name, settings in arms.items():
            results[name] = summarise(run_arm(name, args.config, Path(folder), settings), metric, args.targets)
            print(name, json.dumps(results[name]), flush=True)
    result = {
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
        "machine": f"{platform.node()}, {os.cpu_count()} CPUs",
        "config": args.config,
        "budget": args.budget,
        "epochs": args.epochs,
        "targets": args.targets,
        **results,
    }
    if args.record:
        record(result)


def record(result: dict) -> None:
    targets = [str(t) for t in result["targets"]]
    lines = [
        f"\n### Sweep: ASHA vs random search, {result['date']} — {result['machine']}\n",
        f"`{result['config']}`, same seed and space, budget {result['budget']} trial-epochs per arm, trials "
        f"up to {result['epochs']} epochs. Cells: trial-epochs (seconds) until the first report at or "
        "below the classifier-FID.\n",
        "| arm | trials | trial-epochs | stopped early | "
        + " | ".join(f"FID ≤ {t}" for t in targets)
        + " | best FID by family (coverage) | sweep s |",
        "| --- " * (6 + len(targets)) + "|",
    ]
    for arm in ("random", "asha"):
        r = result[arm]
        cells = [
            f"{hit['trial_epochs']} ({hit['seconds']} s)" if hit else "not reached"
            for hit in (r["reached"][t] for t in targets)
        ]
        families = ", ".join(f"{f} {b['fid']} ({b['coverage']})" for f, b in sorted(r["best_by_family"].items()))
        lines.append(
            f"| {arm} | {r['trials']} | {r['trial_epochs']} | {r['stopped_early']} | "
            + " | ".join(cells)
            + f" | {families} | {r['sweep_s']} |"
        )
    lines.append(f"\nBest trials: random {result['random']['best_params']}; ASHA {result['asha']['best_params']}.\n")
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines))
    print(f"recorded in {RESULTS}")


if __name__ == "__main__":
    main()
