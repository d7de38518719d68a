"""`genpipe compare` on the built-in datasets (issue 34): the leaderboard of every family that
fits, at an equal wall-clock budget on the same resources, over seeds; how far the seeds agree on
the ranking (Kendall's tau); and what the comparison costs beyond its trials.

`python benchmarks/compare_bench.py [--suites images,text,series] [--budget 15] [--seeds 3] [--record]`

Suites: images (the quickstart's digits, every image family), colour (16x16 crops of
scikit-learn's two sample photographs, every image family), text (the Python standard library
as a code corpus: GPT, LSTM, GRU), series (sunspots: AR, LSTM forecaster). Each runs `prepare`
and `compare` through the Python API (`genpipe compare --no-register`), two trials at a time on
a 2-core machine (one CPU each).

Overhead, two ways: the compare step's wall time against the time its trial functions ran (Tune's
`time_total_s`, summed and divided by the trials that run at once): what Tune's scheduling, its
actor processes and the leaderboard add over calling the same function by hand, two at a time;
and against the work inside them (probe, training, scoring, the 100 timed samples): what each
trial's set-up (DeepSpeed engines, the MLflow child run, the checkpoint) adds besides.
`--record` appends the tables to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results_table import append_table  # noqa: E402

EVALUATION = ["evaluate.num_samples=200", "evaluate.classifier_epochs=3"]  # slow samplers (DDPM, EBM) set the pace
SUITES = {
    "images": ("quickstart", EVALUATION),
    # Colour: 16x16 crops of scikit-learn's two sample photographs (3 channels, 2 classes).
    "colour": ("quickstart", ["data.source={kind: sample_image_crops, crop: 16, count: 2000}", *EVALUATION]),
    "text": ("gpt-code-tiny", []),
    "series": ("ar-sunspots", []),
}
INSIDE = ("cost/probe_seconds", "cost/train_seconds", "cost/score_seconds", "cost/sample_100_seconds")


def run_suite(name: str, budget: float, seeds: int, storage: str) -> dict:
    from pipelines.workflow import api
    from pipelines.workflow.runner import Workflow

    config, sets = SUITES[name]
    settings = [*sets, f"compare.budget_s={budget}", f"compare.seeds={seeds}", "compare.register_winner=false"]
    outcome = api.run(config, sets=settings, steps=("prepare", "compare"), storage=storage, echo=print)
    workflow = Workflow(storage, outcome.workflow.id)
    record = workflow.record("compare")
    result = record["result"]
    from pipelines.registry import tracking

    children = tracking.child_runs(workflow.meta()["tracking_uri"], workflow.meta()["run_id"])
    inside = sum(sum(run.data.metrics.get(key, 0.0) for key in INSIDE) for run in children)
    reported = [
        json.loads(path.read_text().splitlines()[-1]) for path in Path(storage).glob("compare/*/*/*/result.json")
    ]
    in_trainables = sum(row["time_total_s"] for row in reported)
    at_once = os.cpu_count() or 1  # one CPU a trial
    return {
        "result": result,
        "wall": record["duration_s"],
        "ideal": inside / at_once,
        "functions": in_trainables / at_once,
        "trials": len(children),
    }


def rows_of(result: dict) -> list[str]:
    from pipelines.tune.leaderboard import COST_COLUMNS, unranked

    metric = result["metric"]
    rows = []
    for row in (row for row in result["leaderboard"] if "rank" in row):
        interval = row[f"{metric}_ci95"]
        score = f"{row[metric]:.4g}" + (f" ± {interval:.2g}" if interval is not None else "")
        costs = [f"{row[column]:,.4g}" if row[column] is not None else "-" for column, _ in COST_COLUMNS]
        rows.append(f"| {row['rank']} | {row['family']} | {score} | " + " | ".join(costs) + " |")
    others = unranked(result["leaderboard"])
    return rows + [f"| - | {families} | {status} |" + " |" * len(COST_COLUMNS) for families, status in others]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--suites", default="images,text,series")
    parser.add_argument("--budget", type=float, default=15.0, help="training seconds per family and seed")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    from pipelines.tune.leaderboard import COST_COLUMNS

    for name in args.suites.split(","):
        with tempfile.TemporaryDirectory() as storage:
            measured = run_suite(name, args.budget, args.seeds, storage)
        result = measured["result"]
        tau = result["seed_agreement"]
        overhead = measured["wall"] / measured["ideal"] - 1
        over_functions = measured["wall"] / measured["functions"] - 1
        about = [
            f"`python benchmarks/compare_bench.py --suites {name} --budget {args.budget:g} --seeds {args.seeds}`: "
            f"config `{SUITES[name][0]}`, {args.budget:g} s of training per family and seed, "
            f"{measured['trials']} trials two at a time; {result['mode']} {result['metric']}, mean ± 95% t-interval.",
            f"Winner: {result['family']}. Seeds' agreement on the ranking (mean Kendall's tau over seed pairs): "
            + (f"{tau:.2f}" if tau is not None else "n/a")
            + f". Compare step {measured['wall']:.0f} s; per slot, its trial functions ran "
            f"{measured['functions']:.0f} s "
            f"({over_functions:+.0%}: Tune's scheduling, actors, the leaderboard) and their work (probe, training, "
            f"scoring, sampling) took {measured['ideal']:.0f} s ({overhead:+.0%}: also each trial's set-up).",
        ]
        columns = ["#", "family", result["metric"], *(label for _, label in COST_COLUMNS)]
        rows = rows_of(result)
        print("\n".join(about + rows))
        if args.record:
            append_table(f"Compare: {name} (issue 34)", about, columns, rows)


if __name__ == "__main__":
    main()
