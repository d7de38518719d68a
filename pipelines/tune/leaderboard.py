"""The comparison's leaderboard: each family's scores over its seeds (mean and a 95% t-interval),
ranked by the comparison's metric, with its cost beside them; how far the seeds agree on the
ranking (Kendall's tau); and the table and chart a practitioner reads.

Families that could not take part are rows too, with the reason: a family missing from a
comparison without a word reads as one that lost.
"""

from __future__ import annotations

import itertools
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from scipy import stats

# What a row shows beside the metric, in this order; each is a mean over the family's seeds.
COST_COLUMNS = (
    ("cost/samples_per_second", "samples/s"),
    ("cost/sample_100_seconds", "s per 100"),
    ("cost/parameters", "parameters"),
    ("cost/train_steps", "steps"),
    ("cost/train_seconds", "train s"),
)


@dataclass(frozen=True)
class Trial:
    """One finished training of the comparison, as Tune reported it."""

    family: str
    seed: int
    metrics: dict[str, float]
    trial_id: str
    run_id: str


def half_width(values: list[float]) -> float | None:
    """Half the width of the 95% t-interval of the mean; None under two values."""
    if len(values) < 2:
        return None
    return float(stats.t.ppf(0.975, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values)))


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def leaderboard(
    trials: list[Trial], metric: str, mode: str, failed: dict[str, str], unfit: dict[str, str]
) -> list[dict[str, Any]]:
    """One row per family: ranked ones first (by the mean of `metric`), then the families whose
    every trial failed, then those that do not fit the data."""
    by_family: dict[str, list[Trial]] = {}
    for trial in trials:
        by_family.setdefault(trial.family, []).append(trial)
    shared = set.intersection(*(set(t.metrics) for t in trials)) if trials else set()
    scored = sorted(name for name in shared if name.startswith("eval/") and name != metric)
    rows = []
    for family, runs in by_family.items():
        values = [t.metrics[metric] for t in runs if _finite(t.metrics.get(metric))]
        row: dict[str, Any] = {
            "family": family,
            "seeds": len(runs),
            metric: statistics.fmean(values) if values else math.nan,
            f"{metric}_ci95": half_width(values),
        }
        for name in (*scored, *(column for column, _ in COST_COLUMNS)):
            finite = [t.metrics[name] for t in runs if _finite(t.metrics.get(name))]
            row[name] = statistics.fmean(finite) if finite else None
        row["status"] = "ok" if values else f"no finite {metric}"
        row["best_trial"] = _best(runs, metric, mode).trial_id
        rows.append(row)
    sign = 1 if mode == "min" else -1
    rows.sort(key=lambda row: (math.isnan(row[metric]), sign * row[metric] if not math.isnan(row[metric]) else 0))
    for rank, row in enumerate(rows, 1):
        row["rank"] = rank
    rows += [{"family": family, "status": f"failed: {reason}"} for family, reason in failed.items()]
    rows += [{"family": family, "status": f"does not fit: {reason}"} for family, reason in unfit.items()]
    return rows


def _best(runs: list[Trial], metric: str, mode: str) -> Trial:
    finite = [t for t in runs if _finite(t.metrics.get(metric))] or runs
    return (min if mode == "min" else max)(finite, key=lambda t: t.metrics.get(metric, math.inf))


def winner(trials: list[Trial], rows: list[dict[str, Any]], metric: str, mode: str) -> Trial | None:
    """The best seed of the family ranked first: its model goes on to the gate."""
    first = next((row for row in rows if row.get("rank") == 1 and row["status"] == "ok"), None)
    if first is None:
        return None
    return _best([t for t in trials if t.family == first["family"]], metric, mode)


def seed_agreement(trials: list[Trial], metric: str) -> float | None:
    """Mean Kendall's tau between the rankings of the families by each seed (over the families
    every one of those seeds finished); 1 when every seed ranks them alike. None with fewer than
    two seeds or two families."""
    scores: dict[int, dict[str, float]] = {}
    for trial in trials:
        if _finite(trial.metrics.get(metric)):
            scores.setdefault(trial.seed, {})[trial.family] = trial.metrics[metric]
    taus = []
    for a, b in itertools.combinations(sorted(scores), 2):
        common = sorted(set(scores[a]) & set(scores[b]))
        if len(common) >= 2:
            tau = stats.kendalltau([scores[a][f] for f in common], [scores[b][f] for f in common]).statistic
            if _finite(tau):
                taus.append(float(tau))
    return statistics.fmean(taus) if taus else None


def _shown(value: Any, interval: float | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    text = f"{value:,.0f}" if isinstance(value, float) and abs(value) >= 1000 else f"{value:.4g}"
    return f"{text} ± {interval:.2g}" if interval is not None else text


def table_lines(rows: list[dict[str, Any]], metric: str) -> list[str]:
    """The leaderboard as aligned text: ranked families, then those that failed or do not fit."""
    header = ["#", "family", metric.removeprefix("eval/"), *(label for _, label in COST_COLUMNS)]
    body = [
        [
            str(row["rank"]),
            row["family"],
            _shown(row[metric], row[f"{metric}_ci95"]),
            *(_shown(row[column]) for column, _ in COST_COLUMNS),
        ]
        for row in rows
        if "rank" in row
    ]
    widths = [max(len(line[i]) for line in [header, *body]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)) for line in [header, *body]]
    return lines + [f"-  {families}: {status}" for families, status in unranked(rows)]


def unranked(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(families, status) of the rows without a rank, families of the same status together."""
    grouped: dict[str, list[str]] = {}
    for row in rows:
        if "rank" not in row:
            grouped.setdefault(row["status"], []).append(row["family"])
    return [(", ".join(families), status) for status, families in grouped.items()]


def as_table(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """Columns for `mlflow.log_table`: every row has every column (None where it has no value)."""
    columns = list(dict.fromkeys(key for row in rows for key in row))
    return {column: [row.get(column) for row in rows] for column in columns}


def quality_cost_chart(rows: list[dict[str, Any]], metric: str, mode: str, path: Path) -> None:
    """Each ranked family at (samples/s, metric), with its interval over seeds."""
    from pipelines.evaluate.forecasts import pyplot

    plt = pyplot()
    ranked = [row for row in rows if "rank" in row and row["status"] == "ok" and row["cost/samples_per_second"]]
    figure, axes = plt.subplots(figsize=(7, 4.5))
    for row in ranked:
        axes.errorbar(row["cost/samples_per_second"], row[metric], yerr=row[f"{metric}_ci95"] or 0, fmt="o", capsize=3)
        axes.annotate(
            row["family"],
            (row["cost/samples_per_second"], row[metric]),
            fontsize=8,
            xytext=(4, 3),
            textcoords="offset points",
        )
    axes.set_xscale("log")
    axes.set_xlabel("samples per second (log)")
    axes.set_ylabel(f"{metric} ({'lower' if mode == 'min' else 'higher'} is better)")
    axes.set_title("quality against the cost of sampling, at equal training compute")
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)
