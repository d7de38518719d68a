"""The scheduler's launcher: each fired slot is a `genpipe run` child process, so a run has its
own Ray driver and a crash in it cannot take the scheduler down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.schedule import Schedule
from pipelines.storage import is_local, join, read_json
from pipelines.workflow import Workflow


class ProcessLauncher:
    def __init__(self, storage: str):
        self.storage = storage
        self.processes: dict[str, subprocess.Popen] = {}
        self.logs = Path(join(storage, "schedules", "logs") if is_local(storage)
                         else tempfile.mkdtemp(prefix="genpipe-scheduler-"))

    def command(self, schedule: Schedule, workflow_id: str) -> list[str]:
        command = [sys.executable, "-m", "pipelines.cli", "run", schedule.config, "--storage", self.storage,
                   "--workflow-id", workflow_id, "--when", schedule.when]
        for assignment in schedule.sets:
            command += ["--set", assignment]
        return command

    def start(self, schedule: Schedule, workflow_id: str) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        with open(self.logs / f"{workflow_id}.log", "ab") as log:
            self.processes[workflow_id] = subprocess.Popen(
                self.command(schedule, workflow_id), stdout=log, stderr=subprocess.STDOUT,
                cwd=Path(__file__).resolve().parent.parent, start_new_session=True)

    def outcome(self, workflow_id: str) -> str | None:
        process = self.processes.get(workflow_id)
        if process is None:
            return "lost: this scheduler has no such run"
        code = process.poll()
        if code is None:
            return None
        del self.processes[workflow_id]
        return describe_outcome(Workflow(self.storage, workflow_id), code, self.logs / f"{workflow_id}.log")

    def stop_all(self) -> list[str]:
        stopped = []
        for workflow_id, process in list(self.processes.items()):
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)  # the run and the Ray processes it started
                try:
                    process.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
                stopped.append(workflow_id)
            del self.processes[workflow_id]
        return stopped


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
    return f"failed (exit {exit_code}); see {log}"
