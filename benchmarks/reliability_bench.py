"""Reliability figures for benchmarks/RESULTS.md: what the fault and fuzz tests measure, at a
larger scale than the test suite runs them.

- two schedulers racing on one storage (a folder, and S3 on a moto server) over many slots, ticking
  at the same instants from two threads: double fires and lost slots (both must be 0);
- generated configs (hypothesis) through validation: accepted, refused by field, tracebacks (0);
- exclusive creates on S3 whose answers are lost: won by their writer, never twice.

    python benchmarks/reliability_bench.py [--slots 200] [--s3-slots 40] [--configs 2000]
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.append(str(REPO / "tests"))  # helpers.py, which the tests' harnesses import

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from pipelines.cluster import local as local_cluster  # noqa: E402


def _harness(relative: str) -> ModuleType:
    """A test module, by path (tests/pipelines/... would shadow the package by name): its
    harness runs here at a larger scale than in the suite."""
    spec = importlib.util.spec_from_file_location(Path(relative).stem, REPO / "tests" / relative)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


fuzz = _harness("pipelines/config/test_config_fuzz.py")
race = _harness("pipelines/schedule/test_scheduler_race.py").race


def fuzz_configs(examples: int) -> Counter:
    outcomes: Counter = Counter()

    @settings(max_examples=examples, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    @given(
        base=st.sampled_from(fuzz.BUILTINS),
        changes=st.dictionaries(st.sampled_from(fuzz.PATHS), fuzz.VALUES, max_size=4),
    )
    def one(base, changes):
        try:
            outcomes[fuzz._outcome(fuzz.mutated(base, changes))] += 1
        except Exception as exc:  # a traceback a user would see
            outcomes[f"traceback {type(exc).__name__}"] += 1

    one()
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--slots", type=int, default=200)
    parser.add_argument("--s3-slots", type=int, default=40)
    parser.add_argument("--configs", type=int, default=2000)
    args = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        local = race(folder, args.slots)
        rows.append(("two schedulers, local folder", local, time.monotonic() - started))
        moto = local_cluster.start_moto(Path(folder) / "moto")
        try:
            env = local_cluster.s3_environment(moto)
            os.environ.update(env)
            bucket = local_cluster.create_bucket(env, "reliability")
            started = time.monotonic()
            remote = race(f"s3://{bucket}/store", args.s3_slots)
            rows.append(("two schedulers, S3 (moto)", remote, time.monotonic() - started))
        finally:
            moto.stop(timeout=10)
    print("| race | slots | fired | skipped behind a run | double fires | lost | tick errors | seconds |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, outcome, seconds in rows:
        print(
            f"| {name} | {outcome['slots']} | {outcome['fired']} | {outcome['skipped']} | "
            f"{outcome['double_fires']} | {outcome['lost']} | {outcome['tick_errors']} | {seconds:.1f} |"
        )
    started = time.monotonic()
    configs = fuzz_configs(args.configs)
    print(f"\ngenerated configs ({time.monotonic() - started:.0f} s): {dict(configs)}")


if __name__ == "__main__":
    main()
