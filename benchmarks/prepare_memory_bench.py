"""Prepare without holding the corpus (issue 30): the object store's peak while text is prepared,
at two corpus sizes, against holding the documents as prepare did before.

Run: `python benchmarks/prepare_memory_bench.py [--sizes-mb 1024,4096] [--record]`.

For each size, a corpus of Python source (data_bench.write_corpus) in 4 files, byte tokens:
- baseline: the step prepare used to begin with, the labelled documents materialized in the
  object store (`source.read().map(label).materialize()`), alone;
- genpipe's prepare as it is now (every pass reads the source afresh), whole; and again with Ray
  Data's object store budget set to 256 MiB, to show what bounds its peak.
Sampled every 0.5 s: the object store's use plus what it spilled to disk (Ray's memory summary),
and the wall time. The target: the peak does not grow with the corpus.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
BUDGET_MB = 256

from data_bench import write_corpus  # noqa: E402
from quickstart_bench import machine  # noqa: E402
from results_table import append_table  # noqa: E402


class StorePeak:
    """Peaks in MiB from Ray's memory summary: the object store's use, and what it has spilled
    to disk (the summary's spilled total only grows, so its last value is its peak)."""

    def __init__(self) -> None:
        self.used, self.spilled, self._stop = 0, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import ray
        from ray._private.internal_api import memory_summary

        address = ray.get_runtime_context().gcs_address  # this run's Ray, even when others run here
        while not self._stop.wait(0.5):
            summary = memory_summary(address=address, stats_only=True)
            used = re.search(r"Plasma memory usage (\d+) MiB", summary)
            spilled = re.search(r"Spilled (\d+) MiB", summary)
            self.used = max(self.used, int(used.group(1)) if used else 0)
            self.spilled = max(self.spilled, int(spilled.group(1)) if spilled else 0)

    def __enter__(self) -> StorePeak:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def config_for(corpus: Path):
    from data_prep.config import DataConfig

    return DataConfig.model_validate(
        {
            "source": {"kind": "text_files", "path": f"{corpus}/*.txt", "chunk_mb": 1},
            "tokenizer": {"kind": "byte"},
            "seq_len": 128,
            "val_fraction": 0.02,
        }
    )


def held(corpus: Path) -> tuple[StorePeak, float]:
    """The baseline: the labelled documents held in the object store, as prepare used to."""
    config = config_for(corpus)
    started = time.monotonic()
    with StorePeak() as peak:
        documents = config.source.read().map(lambda row: {**row, "n_bytes": len(row["text"])}).materialize()
        del documents
    return peak, time.monotonic() - started


def streamed(corpus: Path, storage: Path, budget_mb: int | None = None) -> tuple[StorePeak, float]:
    """genpipe's prepare; with `budget_mb`, Ray Data's object store budget for its streaming
    executor (by default a fraction of the store: a pipeline whose producer outruns its writer
    fills it, whatever the corpus size)."""
    import ray.data

    from data_prep.prepare import prepare

    options = ray.data.DataContext.get_current().execution_options
    saved = options.resource_limits
    if budget_mb is not None:
        options.resource_limits = saved.copy(object_store_memory=budget_mb * 2**20)
    started = time.monotonic()
    try:
        with StorePeak() as peak:
            prepare(config_for(corpus), str(storage))
    finally:
        options.resource_limits = saved
    return peak, time.monotonic() - started


def main() -> None:
    import ray

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes-mb", default="1024,4096")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        ray.init(num_cpus=os.cpu_count(), logging_level="ERROR", include_dashboard=False)
        try:
            for size in (int(part) for part in args.sizes_mb.split(",")):
                corpus = Path(folder, f"corpus-{size}")
                written = write_corpus(corpus, size)
                held_peak, held_s = held(corpus)
                peak, seconds = streamed(corpus, Path(folder, f"store-{size}"))
                budgeted, budgeted_s = streamed(corpus, Path(folder, f"budget-{size}"), BUDGET_MB)
                rows.append((written / 1e6, held_peak, held_s, peak, seconds, budgeted, budgeted_s))
                print(
                    f"{written / 1e6:,.0f} MB: documents held {held_peak.used} MiB + {held_peak.spilled} spilled "
                    f"({held_s:.0f} s); prepare now {peak.used} MiB + {peak.spilled} spilled, {seconds:.0f} s; "
                    f"with Ray Data's budget at {BUDGET_MB} MiB: {budgeted.used} MiB, {budgeted_s:.0f} s",
                    flush=True,
                )
        finally:
            ray.shutdown()
    if args.record:
        append_table(
            "Prepare without holding the corpus (issue 30)",
            [
                "`benchmarks/prepare_memory_bench.py`: Python source in 4 files, byte tokens, blocks of 129; the "
                "object store's peak use and what it spilled to disk, sampled every 0.5 s."
            ],
            [
                "corpus",
                "documents held (the old first step, alone): store / spilled",
                "its time",
                "prepare now, whole: store / spilled",
                "its time",
                f"the same, Ray Data's budget {BUDGET_MB} MiB",
                "its time",
            ],
            [
                f"| {mb:,.0f} MB | {held_peak.used:,} / {held_peak.spilled:,} MiB | {held_s:.0f} s "
                f"| {peak.used:,} / {peak.spilled:,} MiB | {seconds:.0f} s "
                f"| {budgeted.used:,} / {budgeted.spilled:,} MiB | {budgeted_s:.0f} s |"
                for mb, held_peak, held_s, peak, seconds, budgeted, budgeted_s in rows
            ],
        )
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
