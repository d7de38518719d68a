"""Recurring retraining: schedules kept in storage and the scheduler loop that fires them.

Layout, under `<storage>/schedules/<name>/`:
- `schedule.json`: what to run and when (written by `genpipe schedule add/pause/resume`);
- `state.json`: the last slot handled, the run in flight, recent outcomes (written by schedulers);
- `claims/<slot>.json`: created exclusively by the scheduler that fires that slot, so two
  schedulers on the same storage never fire one slot twice.

A scheduler that was down over several fire times fires once, for the latest slot, and records
how many it missed. A run still going when its next slot comes is not doubled: the slot is
skipped (`overlap: skip`) or fired when the run ends (`overlap: queue`). A run's holder refreshes
a heartbeat on it; a run whose heartbeat is older than the lease belonged to a scheduler that
died, and is written off so the schedule is not blocked forever.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import croniter
from pydantic import BaseModel, Field, field_validator

from storage import create_exclusive, exists, filesystem, join, read_json, write_json_atomic

LEASE_SECONDS = 60.0
HISTORY_LENGTH = 20
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]*$"


class Schedule(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    config: str = Field(description="a YAML path (absolute) or a built-in config name")
    sets: list[str] = Field(default_factory=list)
    cron: str
    timezone: str = "UTC"
    address: str | None = Field(None, description="Ray dashboard address: fire as a Ray job there")
    when: Literal["always", "data-changed"] = "always"
    overlap: Literal["skip", "queue"] = "skip"
    paused: bool = False
    created_at: float

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value):
            raise ValueError(f"{value!r} is not a cron expression (5 fields, or 6 with seconds)")
        return value

    @field_validator("timezone")
    @classmethod
    def _valid_timezone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. UTC, Europe/Paris)") from None
        return value

    def latest_slot(self, now: float) -> float:
        """The most recent fire time at or before `now` (epoch seconds)."""
        start = datetime.fromtimestamp(now + 1e-3, ZoneInfo(self.timezone))
        return croniter(self.cron, start).get_prev(float)

    def next_slot(self, now: float) -> float:
        return croniter(self.cron, datetime.fromtimestamp(now, ZoneInfo(self.timezone))).get_next(float)

    def slots_between(self, after: float, until: float, limit: int = 1000) -> int:
        """How many fire times lie in (after, until], counted up to `limit`."""
        iterator = croniter(self.cron, datetime.fromtimestamp(after, ZoneInfo(self.timezone)))
        count = 0
        while count < limit and iterator.get_next(float) <= until:
            count += 1
        return count


class Running(BaseModel):
    workflow_id: str
    slot: float
    started_at: float
    holder: str
    heartbeat_at: float


class ScheduleState(BaseModel):
    last_slot: float | None = None
    last_fired_at: float | None = None
    last_outcome: str | None = None
    last_workflow_id: str | None = None
    running: Running | None = None
    queued_slot: float | None = None
    history: list[dict[str, Any]] = Field(default_factory=list)

    def note(self, slot: float, outcome: str, workflow_id: str | None, at: float) -> None:
        self.last_outcome, self.last_workflow_id = outcome, workflow_id or self.last_workflow_id
        self.history = [*self.history, {"slot": slot, "outcome": outcome, "workflow_id": workflow_id, "at": at}]
        self.history = self.history[-HISTORY_LENGTH:]


class Launcher(Protocol):
    """Starts a schedule's run and reports on it; the real one runs `genpipe run` processes."""

    def start(self, schedule: Schedule, workflow_id: str) -> None: ...

    def outcome(self, workflow_id: str) -> str | None:
        """None while the run goes on, else a one-line outcome."""

    def stop_all(self) -> list[str]:
        """Stop every run this launcher started; their workflow ids."""


class ScheduleStore:
    """Schedules and their states in storage."""

    def __init__(self, storage: str):
        self.storage = storage
        self.root = join(storage, "schedules")

    def _uri(self, name: str, *parts: str) -> str:
        return join(self.root, name, *parts)

    def names(self) -> list[str]:
        fs, path = filesystem(self.root)
        if not fs.exists(path):
            return []
        names = (entry.rstrip("/").rsplit("/", 1)[-1] for entry in fs.ls(path, detail=False))
        return sorted(n for n in names if re.match(NAME_PATTERN, n) and exists(self._uri(n, "schedule.json")))

    def get(self, name: str) -> Schedule:
        uri = self._uri(name, "schedule.json")
        if not exists(uri):
            raise KeyError(f"no schedule named {name!r} in {self.storage}")
        return Schedule.model_validate(read_json(uri))

    def put(self, schedule: Schedule) -> None:
        write_json_atomic(self._uri(schedule.name, "schedule.json"), schedule.model_dump(mode="json"))

    def remove(self, name: str) -> None:
        self.get(name)
        fs, path = filesystem(self._uri(name))
        fs.rm(path, recursive=True)

    def state(self, name: str) -> ScheduleState:
        uri = self._uri(name, "state.json")
        return ScheduleState.model_validate(read_json(uri)) if exists(uri) else ScheduleState()

    def save_state(self, name: str, state: ScheduleState) -> None:
        write_json_atomic(self._uri(name, "state.json"), state.model_dump(mode="json"))

    def claim(self, name: str, slot: float, holder: str, at: float) -> bool:
        """True for exactly one caller per (schedule, slot), however many schedulers race."""
        return create_exclusive(self._uri(name, "claims", f"{int(slot)}.json"), {"holder": holder, "at": at})


def workflow_id_for(name: str, slot: float) -> str:
    return f"{name}-{time.strftime('%Y%m%d-%H%M%S', time.gmtime(slot))}"


@dataclass
class Scheduler:
    """Fires due schedules; `tick(now)` does one pass, so tests drive it with their own clock."""

    store: ScheduleStore
    launcher: Launcher
    holder: str
    echo: Callable[[str], None] = print
    lease_seconds: float = LEASE_SECONDS

    def tick(self, now: float) -> list[str]:
        """One pass over every schedule; returns the workflow ids fired."""
        fired = []
        for name in self.store.names():
            try:
                schedule = self.store.get(name)
            except KeyError:
                continue  # removed during the pass
            workflow_id = self._tick_one(schedule, now)
            if workflow_id:
                fired.append(workflow_id)
        return fired

    def _tick_one(self, schedule: Schedule, now: float) -> str | None:
        state = self.store.state(schedule.name)
        changed = self._follow_running(schedule, state, now)
        fired = None
        if state.running is None and state.queued_slot is not None and not schedule.paused:
            slot, state.queued_slot = state.queued_slot, None
            fired = self._fire(schedule, state, slot, now)
            changed = True
        slot = schedule.latest_slot(now)
        baseline = state.last_slot if state.last_slot is not None else schedule.created_at
        if not schedule.paused and slot > baseline and self.store.claim(schedule.name, slot, self.holder, now):
            missed = schedule.slots_between(baseline, slot) - 1 if state.last_slot is not None else 0
            if missed > 0:
                state.note(slot, f"missed {missed} slot(s) while no scheduler ran; catching up once", None, now)
            state.last_slot = slot
            if state.running is None:
                fired = self._fire(schedule, state, slot, now)
            elif schedule.overlap == "queue":
                state.queued_slot = slot
                self.echo(f"[scheduler] {schedule.name}: slot {_iso(slot)} queued behind {state.running.workflow_id}")
            else:
                state.note(slot, f"skipped: previous run {state.running.workflow_id} still going", None, now)
                self.echo(f"[scheduler] {schedule.name}: slot {_iso(slot)} skipped, previous run still going")
            changed = True
        if changed:
            self.store.save_state(schedule.name, state)
        return fired

    def _follow_running(self, schedule: Schedule, state: ScheduleState, now: float) -> bool:
        running = state.running
        if running is None:
            return False
        if running.holder == self.holder:
            outcome = self.launcher.outcome(running.workflow_id)
            if outcome is None:
                running.heartbeat_at = now
                return True
            state.running = None
            state.note(running.slot, outcome, running.workflow_id, now)
            self.echo(f"[scheduler] {schedule.name}: {running.workflow_id} {outcome}")
            return True
        if now - running.heartbeat_at > self.lease_seconds:
            state.running = None
            state.note(
                running.slot,
                f"lost: scheduler {running.holder} stopped while it ran (genpipe resume {running.workflow_id})",
                running.workflow_id,
                now,
            )
            return True
        return False

    def _fire(self, schedule: Schedule, state: ScheduleState, slot: float, now: float) -> str:
        workflow_id = workflow_id_for(schedule.name, slot)
        self.launcher.start(schedule, workflow_id)
        state.running = Running(
            workflow_id=workflow_id, slot=slot, started_at=now, holder=self.holder, heartbeat_at=now
        )
        state.last_fired_at = now
        self.echo(f"[scheduler] {schedule.name}: fired {workflow_id} for slot {_iso(slot)}")
        return workflow_id

    def shutdown(self, now: float) -> None:
        """Stop this scheduler's runs and record them as interrupted (each can be resumed)."""
        stopped = set(self.launcher.stop_all())
        for name in self.store.names():
            state = self.store.state(name)
            if state.running and state.running.holder == self.holder and state.running.workflow_id in stopped:
                workflow_id = state.running.workflow_id
                state.running = None
                state.note(
                    state.last_slot or now,
                    f"interrupted: scheduler stopped (genpipe resume {workflow_id})",
                    workflow_id,
                    now,
                )
                self.store.save_state(name, state)


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
