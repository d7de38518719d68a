"""Where the test suite's CPU goes, by test (issue 28): the machine's busy time, read from
/proc/stat every second, split evenly over the tests running in that second. With 2 xdist workers
on 2 cores the suite keeps both cores busy, so a test's share is what it costs the suite's wall
time. benchmarks/suite_cpu.py gives the same CPU by kind of process instead.

`python benchmarks/suite_by_test.py [--top 30] [--record] [-- PYTEST_ARGS...]` (default: the suite
as `make test` runs it). Run it on an otherwise idle machine: everything busy counts.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.results_table import append_table  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DEFAULT_PYTEST = ["-n", "2", "--dist", "loadgroup", "--max-worker-restart=0", "-q", "-p", "no:cacheprovider"]
TICKS = os.sysconf("SC_CLK_TCK")


def busy_ticks() -> int:
    """The machine's busy time so far (user, nice, system, irq, softirq, steal), in clock ticks."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    return sum(fields[index] for index in (0, 1, 2, 5, 6, 7))


class BusySampler(threading.Thread):
    """(time, busy ticks) every second while the suite runs."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.samples: list[tuple[float, int]] = []
        self.stopped = threading.Event()

    def run(self) -> None:
        while True:
            self.samples.append((time.time(), busy_ticks()))
            if self.stopped.wait(1.0):
                self.samples.append((time.time(), busy_ticks()))
                return


def attribute(samples: list[tuple[float, int]], spans: list[dict]) -> dict[str, float]:
    """CPU seconds per test: each interval's busy time shared by the tests running at its middle."""
    cpu: dict[str, float] = collections.Counter()
    for (t0, b0), (t1, b1) in zip(samples, samples[1:], strict=False):
        middle, busy = (t0 + t1) / 2, (b1 - b0) / TICKS
        running = [span["test"] for span in spans if span["start"] <= middle < span["end"]] or ["(between tests)"]
        for test in running:
            cpu[test] += busy / len(running)
    return cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--record", action="store_true", help="append the tables to benchmarks/RESULTS.md")
    parser.add_argument("pytest_args", nargs="*", help="after --: pytest's arguments (default: as `make test`)")
    args = parser.parse_args()
    pytest = [
        str(REPO / ".venv" / "bin" / "pytest"),
        "-p",
        "benchmarks.pytest_spans",
        *(args.pytest_args or DEFAULT_PYTEST),
    ]
    with tempfile.TemporaryDirectory() as folder:
        spans_file = Path(folder) / "spans.jsonl"
        environment = {**os.environ, "GENPIPE_TEST_SPANS": str(spans_file), "PYTHONPATH": str(REPO)}
        sampler = BusySampler()
        sampler.start()
        started = time.monotonic()
        done = subprocess.run(pytest, cwd=REPO, env=environment)
        wall = time.monotonic() - started
        sampler.stopped.set()
        sampler.join()
        spans = [json.loads(line) for line in spans_file.read_text().splitlines()] if spans_file.exists() else []
    cpu = attribute(sampler.samples, spans)
    total = sum(cpu.values())
    lasted = {span["test"]: span["end"] - span["start"] for span in spans}
    ranked = sorted(cpu.items(), key=lambda item: -item[1])
    rows, running = [], 0.0
    for test, seconds in ranked[: args.top]:
        running += seconds
        rows.append(f"| {test} | {seconds:.0f} | {lasted.get(test, 0):.0f} | {running / total:.0%} |")
    by_file: dict[str, float] = collections.Counter()
    for test, seconds in cpu.items():
        by_file[test.split("::")[0]] += seconds
    file_rows = [f"| {name} | {seconds:.0f} | {seconds / total:.1%} |" for name, seconds in by_file.most_common(15)]
    command = " ".join(["python benchmarks/suite_by_test.py", *args.pytest_args])
    about = [
        f"`{command}`: pytest exit {done.returncode}, {len(spans)} tests, wall {wall / 60:.1f} min, the machine busy",
        f"{total:.0f} s ({total / wall:.2f} cores on average). The {args.top} costliest tests hold",
        f"{running / total:.0%} of it.",
    ]
    print("\n".join(about))
    print("\n".join(rows))
    print("\n".join(file_rows))
    if args.record:
        append_table("Test suite CPU by test (issue 28)", about, ["test", "CPU s", "wall s", "cumulative"], rows)
        append_table(
            "Test suite CPU by file (issue 28)", ["The same run, by file."], ["file", "CPU s", "share"], file_rows
        )


if __name__ == "__main__":
    main()
