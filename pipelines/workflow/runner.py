"""Durable workflows on plain Ray tasks (Ray Workflows left Ray after 2.47).

A workflow has an id and a folder `<storage>/workflows/<id>/` holding `workflow.json` (the
config, the MLflow run) and one record per finished step, written atomically when the step
succeeds. Re-running a workflow skips every step that has a record.
"""

from __future__ import annotations

import logging
import re
import time
import traceback
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from pipelines.config import ConfigError, PipelineConfig, apply_overrides
from pipelines.config.loading import validate_config
from pipelines.config.sections import SAFE_NAME
from pipelines.registry import tracking
from pipelines.workflow.lease import DriverLease
from pipelines.workflow.progress import ConsoleProgress, Reporter, open_board
from pipelines.workflow.results import StepResult, parse_result
from pipelines.workflow.step_order import RUN_STEPS, STEP_ORDER
from pipelines.workflow.steps import STEP_SECTIONS, StepContext, run_step, step_resources
from storage import exists, filesystem, join, read_json, redact, write_json_atomic
from typed_errors import first_line

Printer = Callable[[str], None]
log = logging.getLogger("genpipe.workflow")


class WorkflowFailed(RuntimeError):
    """A step failed; `record` is its error record's URI, None when the storage would not take it."""

    def __init__(self, workflow_id: str, step: str, message: str, storage: str, record: str | None = None):
        super().__init__(f"workflow {workflow_id}: step {step} failed: {message}")
        self.workflow_id, self.step, self.storage, self.record = workflow_id, step, storage, record


def new_workflow_id(name: str) -> str:
    return f"{name}-{datetime.now(UTC):%Y%m%d-%H%M%S}-{uuid.uuid4().hex[:6]}"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def check_workflow_id(workflow_id: str) -> str:
    """A workflow id names a folder in storage and a Ray job: the config's safe-name pattern, so
    `--workflow-id ../x` cannot write outside `workflows/` (exit 2 naming the option)."""
    if not re.fullmatch(SAFE_NAME, workflow_id):
        raise ConfigError([f"--workflow-id: {workflow_id!r} does not match {SAFE_NAME}"])
    return workflow_id


class Workflow:
    def __init__(self, storage: str, workflow_id: str):
        self.storage, self.id = storage, check_workflow_id(workflow_id)
        self.uri = join(storage, "workflows", workflow_id)

    def record_uri(self, step: str) -> str:
        return join(self.uri, f"{step}.json")

    def error_uri(self, step: str) -> str:
        return join(self.uri, f"{step}.error.json")

    @property
    def meta_uri(self) -> str:
        return join(self.uri, "workflow.json")

    def exists(self) -> bool:
        return exists(self.meta_uri)

    def meta(self) -> dict[str, Any]:
        if not self.exists():
            raise FileNotFoundError(f"no workflow {self.id!r} in {self.storage}")
        return read_json(self.meta_uri)

    def config(self) -> PipelineConfig:
        return PipelineConfig.model_validate(self.meta()["config"])

    def create(self, config: PipelineConfig, tracking_uri: str, steps: tuple[str, ...]) -> dict[str, Any]:
        """Write workflow.json with a new MLflow run. An existing workflow keeps its run and config
        and takes on any of `steps` it did not have (`genpipe prepare` then `genpipe run`)."""
        if self.exists():
            meta = self.meta()
            wanted = [s for s in STEP_ORDER if s in meta["steps"] or s in steps]
            if wanted != meta["steps"]:
                meta["steps"] = wanted
                write_json_atomic(self.meta_uri, meta)
            return meta
        run_id, run_url = tracking.start_workflow_run(config, tracking_uri, self.id)
        meta = {
            "id": self.id,
            "created_at": _now(),
            "config": config.model_dump(mode="json"),
            "tracking_uri": tracking_uri,
            "run_id": run_id,
            "run_url": run_url,
            "steps": list(steps),
        }
        write_json_atomic(self.meta_uri, meta)
        return meta

    def amend(self, assignments: list[str]) -> PipelineConfig:
        """Change the config for the steps not yet done (`genpipe resume ID --set ...`), after a
        config-caused failure: a ConfigError names a setting that a finished step already used.
        The change is validated and recorded in workflow.json (`amendments`) and on the run."""
        meta = self.meta()
        done = [step for step in meta["steps"] if self.record(step) is not None]
        problems = []
        for assignment in assignments:
            section = assignment.partition("=")[0].strip().split(".")[0]
            readers = [step for step, sections in STEP_SECTIONS.items() if section in sections]
            used = [step for step in done if step in readers]
            if not readers:
                problems.append(f"--set {assignment}: {section} is fixed for a workflow; start a new one")
            elif used:
                problems.append(
                    f"--set {assignment}: {', '.join(used)} already ran with {section}; a new workflow can change it"
                )
        if problems:
            raise ConfigError(problems)
        config = validate_config(apply_overrides(meta["config"], assignments))
        meta["config"] = config.model_dump(mode="json")
        meta.setdefault("amendments", []).append({"at": _now(), "sets": assignments})
        write_json_atomic(self.meta_uri, meta)
        _mark_run(
            tracking.set_tags,
            meta["tracking_uri"],
            meta["run_id"],
            {"genpipe.resume.sets": " ".join(s for amendment in meta["amendments"] for s in amendment["sets"])},
        )
        return config

    def skip(self, config: PipelineConfig, reason: str) -> None:
        """Record a workflow that decided not to run (e.g. its data has not changed)."""
        write_json_atomic(
            self.meta_uri,
            {
                "id": self.id,
                "created_at": _now(),
                "config": config.model_dump(mode="json"),
                "steps": [],
                "skipped": reason,
            },
        )

    def error(self, step: str) -> str:
        """Why `step` failed (one line), from its error record."""
        return str(read_json(self.error_uri(step))["error"])

    def record(self, step: str) -> dict[str, Any] | None:
        uri = self.record_uri(step)
        return read_json(uri) if exists(uri) else None

    def step_states(self) -> dict[str, str]:
        """Each of the workflow's steps (a run's or a sweep's; a skipped workflow's are the run's,
        all pending): succeeded, failed, running (its driver is alive), interrupted (its driver
        stopped or died in it) or pending."""
        driver_step, driver_state = self.lease().driver_state()
        states = {}
        for step in self.meta()["steps"] or RUN_STEPS:
            if exists(self.record_uri(step)):
                states[step] = "succeeded"
            elif exists(self.error_uri(step)):
                states[step] = "failed"
            else:
                states[step] = driver_state if step == driver_step else "pending"
        return states

    def run(self, steps: tuple[str, ...] = RUN_STEPS, echo: Printer = print) -> dict[str, StepResult]:
        """Run `steps` in order as Ray tasks, skipping those already recorded. The workflow's MLflow
        run is RUNNING meanwhile, and ends FINISHED, FAILED (a step failed) or KILLED (Ctrl-C,
        SIGTERM)."""
        meta = self.meta()
        uri, run_id = meta["tracking_uri"], meta["run_id"]
        lease = self.lease()
        lease.acquire()  # WorkflowBusy (exit 2) while another driver runs this workflow
        _mark_run(tracking.reopen_run, uri, run_id)
        try:
            results = self._run_steps(steps, echo, lease)
        except WorkflowFailed:
            _mark_run(tracking.end_run, uri, run_id, "FAILED")
            lease.release("failed")
            raise
        except BaseException:  # Ctrl-C, SIGTERM (the CLI turns it into KeyboardInterrupt), a lost driver
            _mark_run(tracking.end_run, uri, run_id, "KILLED")
            lease.release("interrupted")
            raise
        _mark_run(tracking.end_run, uri, run_id, "FINISHED")
        lease.release("finished")
        return results

    def lease(self) -> DriverLease:
        return DriverLease.of(self.uri)

    def _run_steps(self, steps: tuple[str, ...], echo: Printer, lease: DriverLease) -> dict[str, StepResult]:
        import ray

        meta = self.meta()
        config = PipelineConfig.model_validate(meta["config"])
        report = open_board()
        console = ConsoleProgress(echo)
        context = StepContext(self.id, self.uri, meta["tracking_uri"], meta["run_id"], report)
        results: dict[str, StepResult] = {}
        for step in steps:
            done = self.record(step)
            if done is not None:
                results[step] = parse_result(step, done["result"])
                echo(f"= {step}: done earlier, skipped")
                continue
            echo(f"> {step} ...")
            started = time.monotonic()
            task = ray.remote(run_step).options(**step_resources(step, config), max_retries=0, name=f"genpipe.{step}")
            try:
                lease.doing(step)
                result = _wait_showing_progress(task.remote(step, meta["config"], results, context), report, console)
            except Exception as exc:
                raise self._failure(step, getattr(exc, "cause", None) or exc) from exc
            duration = time.monotonic() - started
            try:
                write_json_atomic(
                    self.record_uri(step),
                    {"step": step, "finished_at": _now(), "duration_s": round(duration, 2), "result": result.record()},
                )
                fs, error_path = filesystem(self.error_uri(step))
                if fs.exists(error_path):
                    fs.rm(error_path)  # the step has succeeded since
            except Exception as exc:  # the storage went away after the step's work: it runs again on resume
                raise self._failure(step, exc, "finished, but its record could not be written: ") from exc
            results[step] = result
            echo(f"+ {step} ({duration:.1f}s)")
        return results

    def _failure(self, step: str, cause: BaseException, prefix: str = "") -> WorkflowFailed:
        """The failure of `step`, its error record written if the storage takes it: the storage
        itself may be what failed, and that must not hide the cause behind a second traceback."""
        message = prefix + redact(_one_line(cause))
        record = {
            "step": step,
            "failed_at": _now(),
            "error": message,
            "traceback": [redact(line) for line in traceback.format_exception(cause)[-20:]],
        }
        try:
            write_json_atomic(self.error_uri(step), record)
        except Exception as exc:
            log.warning("could not write %s: %s", self.error_uri(step), redact(first_line(exc)))
            log.info("step %s failed:\n%s", step, "".join(record["traceback"]))  # the log file only
            return WorkflowFailed(self.id, step, message, self.storage)
        return WorkflowFailed(self.id, step, message, self.storage, self.error_uri(step))


def _one_line(cause: BaseException) -> str:
    """The error in a line, read from what the error carries rather than from its text: a Ray task
    error's `cause` (the step's own error), Ray Train's `worker_failures` (each failed rank's own
    error: the lowest rank's is shown) or `controller_failure`."""
    inner = getattr(cause, "cause", None)
    if isinstance(inner, BaseException):
        cause = inner
    failures = getattr(cause, "worker_failures", None)
    if isinstance(failures, dict) and failures:
        rank = min(failures)
        return f"{type(cause).__name__}: training failed on rank {rank}: {_named(failures[rank])}"
    controller = getattr(cause, "controller_failure", None)
    if isinstance(controller, BaseException):
        return f"{type(cause).__name__}: training failed in its controller: {_named(controller)}"
    return _named(cause)


def _named(error: BaseException) -> str:
    return f"{type(error).__name__}: {first_line(error)}"


def _wait_showing_progress(pending: Any, channel: Reporter, console: ConsoleProgress) -> Any:
    """The step's result, printing what its processes report while it runs."""
    import ray

    while True:
        ready, _ = ray.wait([pending], timeout=0.5)
        for event in channel.take():
            console.show(event)
        if ready:
            return ray.get(pending)


def _mark_run(change: Callable[..., None], *args: Any) -> None:
    """A change of the run's status; an MLflow that is down costs the workflow nothing but a warning."""
    try:
        change(*args)
    except Exception as exc:
        log.warning("could not set the MLflow run's status (%s): %s", change.__name__, first_line(exc))


def list_workflows(storage: str) -> list[Workflow]:
    fs, path = filesystem(join(storage, "workflows"))
    if not fs.exists(path):
        return []
    names = sorted(entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False))
    ids = [name for name in names if re.fullmatch(SAFE_NAME, name)]  # other folders are not genpipe's
    return [w for w in (Workflow(storage, i) for i in ids) if w.exists()]
