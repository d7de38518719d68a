"""How many threads a process's torch may use for the CPUs it was given."""

from __future__ import annotations

import math
import os


def cpu_threads(cpus: float) -> int:
    """`cpus` rounded down (at least 1), never above OMP_NUM_THREADS when the environment sets it.

    Ray sets OMP_NUM_THREADS to a task's CPUs unless the user did; a user who did (to share a
    machine between processes, as the test suite does) means it: OpenMP threads beyond the cores
    a process really has spin and slow every other process down (2 threads each for 2 processes
    on 2 cores: 3x the wall time of 1 thread each, benchmarks/threads_bench.py).
    """
    threads = max(1, math.floor(cpus))
    limit = os.environ.get("OMP_NUM_THREADS", "").strip()
    if limit.isdigit() and int(limit) > 0:
        threads = min(threads, int(limit))
    return threads
