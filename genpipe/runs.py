"""`genpipe.run`: a workflow run to its end, or started in a thread of this process with a handle
to wait on (`wait=False`), as Ray users hold an ObjectRef."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor

from pipelines.config import PipelineConfig
from pipelines.workflow import api
from pipelines.workflow.api import Outcome, WorkflowStatus
from pipelines.workflow.runner import new_workflow_id
from pipelines.workflow.step_order import RUN_STEPS


class RunHandle:
    """A workflow running in a thread of this process. Its id is known at once; `wait` returns its
    Outcome or raises what `run` would (WorkflowFailed). For a run that outlives this process,
    or one to stop, submit it as a Ray job instead (`genpipe.submit`)."""

    def __init__(self, workflow_id: str, storage: str, future: Future[Outcome]):
        self.workflow_id, self.storage, self._future = workflow_id, storage, future

    def done(self) -> bool:
        return self._future.done()

    def wait(self, timeout: float | None = None) -> Outcome:
        """The outcome (TimeoutError if it is not done within `timeout` seconds)."""
        return self._future.result(timeout)

    def status(self) -> WorkflowStatus:
        """Each step's state now, as `genpipe status ID` prints it."""
        (found,) = api.status(self.workflow_id, storage=self.storage)
        return found

    def __repr__(self) -> str:
        return f"RunHandle({self.workflow_id!r}, {'done' if self.done() else 'running'})"


def run(
    config: str | PipelineConfig,
    *,
    sets: Sequence[str] = (),
    steps: tuple[str, ...] = RUN_STEPS,
    storage: str | None = None,
    tracking_uri: str | None = None,
    address: str | None = None,
    workflow_id: str | None = None,
    when: str = "always",
    echo: Callable[[str], None] = lambda _: None,
    wait: bool = True,
) -> Outcome | RunHandle:
    """Run `steps` of the workflow for `config` (pipelines.workflow.api.run). With `wait=False`
    the config is validated and Ray joined or started here (a bad config raises ConfigError now),
    then the workflow runs in a thread and a RunHandle is returned at once."""
    if wait:
        return api.run(
            config,
            sets=sets,
            steps=steps,
            storage=storage,
            tracking_uri=tracking_uri,
            address=address,
            workflow_id=workflow_id,
            when=when,
            echo=echo,
        )
    resolved = api.resolve_config(config, sets, storage, tracking_uri)
    api.check_services(resolved, address)
    api.connect_ray(address)  # from this thread: Ray sets its signal handlers in the main thread only
    workflow_id = workflow_id or new_workflow_id(resolved.name)
    runner = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"genpipe-{workflow_id}")
    future = runner.submit(
        api.run, resolved, steps=steps, address=address, workflow_id=workflow_id, when=when, echo=echo
    )
    runner.shutdown(wait=False)  # the thread ends with the run
    return RunHandle(workflow_id, resolved.storage, future)
