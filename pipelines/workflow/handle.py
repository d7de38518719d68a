"""A workflow running in a thread of this process (`run(..., wait=False)`): its id at once, its
outcome when it ends, as Ray users hold an ObjectRef."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class RunHandle:
    """`wait` returns the run's Outcome or raises what `run` would (WorkflowFailed). For a run that
    outlives this process, or one to stop, submit it as a Ray job instead (`genpipe.submit`)."""

    def __init__(self, workflow_id: str, storage: str, future: Future[Any], status: Callable[[], Any]):
        self.workflow_id, self.storage = workflow_id, storage
        self._future, self._status = future, status

    @classmethod
    def start(cls, workflow_id: str, storage: str, work: Callable[[], Any], status: Callable[[], Any]) -> RunHandle:
        runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"genpipe-{workflow_id}")
        future = runner.submit(work)
        runner.shutdown(wait=False)  # its thread ends with the run
        return cls(workflow_id, storage, future, status)

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> Any:
        """The outcome (TimeoutError if it is not done within `timeout` seconds)."""
        return self._future.result(timeout)

    def status(self) -> Any:
        """Each step's state now, as `genpipe status ID` prints it."""
        return self._status()

    def __repr__(self) -> str:
        return f"RunHandle({self.workflow_id!r}, {'done' if self.done() else 'running'})"
