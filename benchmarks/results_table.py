"""Appending a dated table to benchmarks/RESULTS.md, as the benchmark scripts here do."""

from __future__ import annotations

import os
import platform
import statistics
from datetime import UTC, datetime
from pathlib import Path

import torch

RESULTS = Path(__file__).resolve().parent / "RESULTS.md"


def append_table(title: str, about: list[str], columns: list[str], rows: list[str], extra: str = "") -> None:
    """`### title, date — machine`, the lines `about`, then a Markdown table of `rows`."""
    date = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine = f"{platform.machine()}, {os.cpu_count()} cores{extra}, torch {torch.__version__}"
    lines = [
        f"\n### {title}, {date} — {machine}\n",
        *about[:-1],
        about[-1] + "\n",
        "| " + " | ".join(columns) + " |",
        "| " + " | ".join("---" for _ in columns) + " |",
        *rows,
    ]
    with RESULTS.open("a") as handle:
        handle.write("\n".join(lines) + "\n")


def interval(values: list[float], digits: int = 3) -> str:
    """mean ± the half-width of a 95% t-interval over seeds (just the value for one seed)."""
    mean = statistics.fmean(values)
    if len(values) < 2:
        return f"{mean:.{digits}f}"
    t = {2: 12.71, 3: 4.30, 4: 3.18, 5: 2.78}.get(len(values), 2.0)
    return f"{mean:.{digits}f} ± {t * statistics.stdev(values) / len(values) ** 0.5:.{digits}f}"
