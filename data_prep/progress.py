"""What a dataset's build tells the console while it runs: records read as Ray Data's tasks get
through them (with an ETA where the source knows its count), then what was written and how fast.

The step's `report` (pipelines/workflow/progress.py: a callable that posts to the driver's console
from any Ray process) is set around a build by `reporting`; a builder calls `counting` on its
source's dataset and `say` for its phases, so a modality's `build()` keeps its signature and works
the same with no console (a benchmark, a test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

Report = Callable[..., None]
STAGE = "prepare"
_current: ContextVar[Report | None] = ContextVar("genpipe_prepare_report", default=None)


@contextmanager
def reporting(report: Report | None) -> Iterator[None]:
    token = _current.set(report)
    try:
        yield
    finally:
        _current.reset(token)


def say(text: str) -> None:
    report = _current.get()
    if report is not None:
        report(STAGE, text=text)


def counting(dataset: Any, total: int | None, unit: str = "records") -> Any:
    """`dataset` with a pass-through that reports the rows of each batch as a task finishes it
    (fused into the tasks before it by Ray Data: no copy, no extra pass)."""
    report = _current.get()
    if report is None:
        return dataset

    def count(batch: Any) -> Any:
        report(STAGE, add=batch.num_rows, total=total, unit=unit)
        return batch

    return dataset.map_batches(count, batch_format="pyarrow", zero_copy_batch=True)
