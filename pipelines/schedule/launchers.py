"""The scheduler's launchers. Without an address, a fired slot is a `genpipe run` process in a
session of its own (its own Ray driver: a crash in it cannot take the scheduler down, and the
scheduler stopping does not stop it); with an address, it is a Ray job on that cluster. Both
report the outcome from the workflow's records in the storage, also for a run that another
scheduler started and this one adopted."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from pipelines.config import CONFIG_VARIABLE, PipelineConfig, validate_config
from pipelines.config.cluster import ClusterConfig
from pipelines.config.composition import ENV_CONFIG_PREFIX
from pipelines.schedule.schedules import LEASE_SECONDS, Schedule
from pipelines.workflow.lease import DriverLease
from pipelines.workflow.runner import Workflow
from storage import is_local, join, read_json
from storage.lease import holder_alive


def run_arguments(schedule: Schedule, storage: str, workflow_id: str) -> list[str]:
    """`genpipe run` (or `compare`) of the schedule's resolved config (in CONFIG_VARIABLE:
    `run_environment`)."""
    command = schedule.command
    if schedule.resolved is not None:
        return [command, f"{ENV_CONFIG_PREFIX}{CONFIG_VARIABLE}", "--workflow-id", workflow_id, "--when", schedule.when]
    arguments = [command, schedule.config, "--storage", storage, "--workflow-id", workflow_id, "--when", schedule.when]
    for assignment in schedule.sets:
        arguments += ["--set", assignment]
    return arguments


def run_environment(schedule: Schedule) -> dict[str, str]:
    """What a fired run needs in its environment: the resolved config."""
    return {} if schedule.resolved is None else {CONFIG_VARIABLE: schedule.resolved}


def resolved_config(schedule: Schedule) -> PipelineConfig | None:
    """The config the schedule's runs get, validated (None for a schedule from before `resolved`)."""
    return None if schedule.resolved is None else validate_config(yaml.safe_load(schedule.resolved))


def run_cluster(schedule: Schedule) -> ClusterConfig:
    """The resolved config's `cluster:` section (code shipping, runtime_env), for a Ray job."""
    config = resolved_config(schedule)
    return ClusterConfig() if config is None else config.cluster


class ProcessLauncher:
    def __init__(self, storage: str):
        self.storage = storage
        self.processes: dict[str, subprocess.Popen] = {}
        self.adopted: dict[str, float] = {}  # workflow id -> when this scheduler took it over
        self.logs = Path(
            join(storage, "schedules", "logs") if is_local(storage) else tempfile.mkdtemp(prefix="genpipe-scheduler-")
        )

    def start(self, schedule: Schedule, workflow_id: str, attempt: int = 0) -> None:
        """A `genpipe run` process; a resume (attempt > 0) is the same command: the workflow id
        goes on from its finished steps and checkpoints. Its log grows by each attempt."""
        self.logs.mkdir(parents=True, exist_ok=True)
        command = [sys.executable, "-m", "pipelines.cli", *run_arguments(schedule, self.storage, workflow_id)]
        with open(self.logs / f"{workflow_id}.log", "ab") as log:
            self.processes[workflow_id] = subprocess.Popen(
                command,
                env={**os.environ, **run_environment(schedule)},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parents[2],
                start_new_session=True,
            )

    def adopt(self, schedule: Schedule, workflow_id: str, attempt: int = 0) -> None:
        self.adopted[workflow_id] = time.time()

    def outcome(self, workflow_id: str) -> str | None:
        log, workflow = self.logs / f"{workflow_id}.log", Workflow(self.storage, workflow_id)
        if workflow_id in self.adopted:
            code = driver_exit(workflow, self.adopted[workflow_id])
            if code is None:
                return None
            del self.adopted[workflow_id]
            return describe_outcome(workflow, code, log)
        process = self.processes.get(workflow_id)
        if process is None:
            return "lost: this scheduler has no such run"
        code = process.poll()
        if code is None:
            return None
        del self.processes[workflow_id]
        return describe_outcome(workflow, code, log)

    def release_all(self) -> list[str]:
        released = [*self.processes, *self.adopted]
        self.processes.clear()  # each runs on in its own session; the next scheduler adopts it
        self.adopted.clear()
        return released


class RayJobLauncher:
    """Each fired slot is a Ray job (`genpipe run`) on the cluster at the schedule's address."""

    def __init__(self, storage: str, logs: Path):
        self.storage, self.logs = storage, logs
        self.jobs: dict[str, tuple[str, str]] = {}  # workflow id -> (dashboard address, its current job's id)

    def adopt(self, schedule: Schedule, workflow_id: str, attempt: int = 0) -> None:
        if schedule.address is None:
            raise ValueError(f"schedule {schedule.name}: no address to follow its job {workflow_id} at")
        self.jobs[workflow_id] = (schedule.address, job_id(workflow_id, attempt))

    def start(self, schedule: Schedule, workflow_id: str, attempt: int = 0) -> None:
        from pipelines.cluster import jobs

        if schedule.address is None:
            raise ValueError(f"schedule {schedule.name}: no address to submit its runs to")
        cluster = run_cluster(schedule)
        submission_id = job_id(workflow_id, attempt)
        jobs.submit(
            schedule.address,
            run_arguments(schedule, self.storage, workflow_id),
            submission_id,
            env_vars=run_environment(schedule),
            extra_runtime_env=cluster.runtime_env,
            code=cluster.code,
        )
        self.jobs[workflow_id] = (schedule.address, submission_id)

    def outcome(self, workflow_id: str) -> str | None:

        from pipelines.cluster import jobs

        followed = self.jobs.get(workflow_id)
        if followed is None:
            return "lost: this scheduler has no such job"
        address, submission_id = followed
        job_client = jobs.client(address)
        status = job_client.get_job_status(submission_id)
        if not status.is_terminal():
            return None
        del self.jobs[workflow_id]
        log = self.logs / f"{submission_id}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(job_client.get_job_logs(submission_id))
        workflow = Workflow(self.storage, workflow_id)
        return describe_outcome(workflow, job_exit(status, workflow), log)

    def release_all(self) -> list[str]:
        released = list(self.jobs)  # the jobs go on on the cluster; the next scheduler adopts them
        self.jobs.clear()
        return released


class Launchers:
    """Routes each schedule to the process or the Ray job launcher by its address."""

    def __init__(self, storage: str):
        self.local = ProcessLauncher(storage)
        self.remote = RayJobLauncher(storage, self.local.logs)
        self.owner: dict[str, ProcessLauncher | RayJobLauncher] = {}

    def start(self, schedule: Schedule, workflow_id: str, attempt: int = 0) -> None:
        launcher = self.remote if schedule.address else self.local
        launcher.start(schedule, workflow_id, attempt)
        self.owner[workflow_id] = launcher

    def adopt(self, schedule: Schedule, workflow_id: str, attempt: int = 0) -> None:
        launcher = self.remote if schedule.address else self.local
        launcher.adopt(schedule, workflow_id, attempt)
        self.owner[workflow_id] = launcher

    def outcome(self, workflow_id: str) -> str | None:
        launcher = self.owner.get(workflow_id)
        if launcher is None:
            return "lost: this scheduler has no such run"
        result = launcher.outcome(workflow_id)
        if result is not None:
            del self.owner[workflow_id]
        return result

    def release_all(self) -> list[str]:
        self.owner.clear()
        return self.local.release_all() + self.remote.release_all()


def job_exit(status: Any, workflow: Workflow) -> int:
    """A finished Ray job's outcome as its driver's exit code: 0 succeeded, 130 stopped or its driver
    gone without a word (killed: its lease still says it was in a step), 1 failed."""
    from ray.job_submission import JobStatus

    if status == JobStatus.SUCCEEDED:
        return 0
    if status == JobStatus.STOPPED:
        return 130
    doing, _ = DriverLease.of(workflow.uri).driver_state() if workflow.exists() else (None, "")
    return 130 if doing else 1


def job_id(workflow_id: str, attempt: int) -> str:
    """The Ray job of a run's attempt: Ray Jobs never reuses a submission id, so a resume is a
    new job (`<workflow id>-retry<n>`) of the same workflow."""
    return workflow_id if attempt == 0 else f"{workflow_id}-retry{attempt}"


def driver_exit(workflow: Workflow, adopted_at: float, grace_s: float = LEASE_SECONDS) -> int | None:
    """How an adopted run's driver ended, as an exit code, read from the workflow's lease: None
    while it runs (or, for `grace_s`, before it has started), 0 finished or skipped, 130
    interrupted (stopped, or died without a word), 1 failed."""
    if workflow.exists() and workflow.meta().get("skipped"):
        return 0
    latest = DriverLease.of(workflow.uri).latest()
    if latest is None:
        return None if time.time() - adopted_at < grace_s else 1
    record = latest[1]
    if holder_alive(record, time.time()):
        return None
    return {"finished": 0, "failed": 1}.get(record.get("state", ""), 130)


def describe_outcome(workflow: Workflow, exit_code: int, log: Path) -> str:
    """One line for `schedule list`: succeeded (and the gate's word), skipped, or failed and why."""
    if not workflow.exists():
        return f"failed (exit {exit_code}) before the workflow started; see {log}"
    meta = workflow.meta()
    if meta.get("skipped"):
        return f"skipped: {meta['skipped']}"
    if exit_code == 0:
        registered = workflow.record("register")
        if registered:
            result = registered["result"]
            return f"succeeded: version {result['version']} {result['decision']}"
        return "succeeded"
    failed = [step for step, state in workflow.step_states().items() if state == "failed"]
    if failed:
        error = read_json(workflow.error_uri(failed[0]))["error"]
        return f"failed at {failed[0]}: {error}"
    if exit_code == 130:
        return f"interrupted: its driver stopped (genpipe resume {workflow.id})"
    return f"failed (exit {exit_code}); see {log}"
