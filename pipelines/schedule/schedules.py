"""Recurring retraining: schedules kept in storage and the scheduler loop that fires them.

Layout, under `<storage>/schedules/<name>/`:
- `schedule.json`: what to run and when (written by `genpipe schedule add/pause/resume`);
- `state.json`: the last slot handled, the run in flight, recent outcomes (written by schedulers);
- `claims/<slot>.json`: created exclusively by the scheduler that fires that slot, so two
  schedulers on the same storage never fire one slot twice.

A scheduler that was down over several fire times fires once, for the latest slot, and records
how many it missed. A run still going when its next slot comes is not doubled: the slot is
skipped (`overlap: skip`) or fired when the run ends (`overlap: queue`). A run's holder refreshes
a heartbeat on it. A scheduler never stops the runs it fired: one that stops releases them, and a
run whose holder released it, or whose heartbeat is older than the lease (a scheduler killed), is
adopted by the next scheduler, which follows it to its end and records its outcome, once.

A run that fails or whose driver dies (a node, S3 or MLflow gone for a while, a killed driver) is
resumed, as Airflow retries a task: the same workflow id, so it goes on from its finished steps and
its last checkpoint, up to `retries` times, after `retry_delay_s` doubled at each attempt (what
killed it usually takes a while to come back); each retry is noted in the history as
`retrying: ...`, and the slot's outcome is recorded once, when its last attempt ends.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadDateError, croniter
from pydantic import BaseModel, Field, field_validator

from storage import create_exclusive, exists, filesystem, join, read_json, write_json_atomic
from storage.lease import Lease, LeaseHeld
from typed_errors import first_line

LEASE_SECONDS = 60.0
LAUNCH_ATTEMPTS = 3
TICK_LOCK_SECONDS = 120.0  # one scheduler at a time updates a schedule's state (storage/lease.py)
HISTORY_LENGTH = 20
RETRYING = "retrying: "  # a history entry of an attempt that is resumed, not the slot's outcome
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"  # its runs' workflow ids add a 16-character time


def _cron(expression: str, start: datetime) -> croniter:
    """A cron iterator; 6 fields have their seconds first (`*/10 * * * * *`: every 10 s), as the CLI
    says and Quartz and Spring read them (croniter's own default puts them last)."""
    return croniter(expression, start, second_at_beginning=True)


class Schedule(BaseModel):
    name: str = Field(pattern=NAME_PATTERN)
    config: str = Field(description="a YAML path (absolute) or a built-in config name: where `resolved` came from")
    sets: list[str] = Field(default_factory=list)
    # The config as `schedule add` (or `update`) resolved it: its YAML, `--set`s applied, storage and
    # tracking URI filled in. Every run fires this, so moving or editing the YAML later changes
    # nothing, and a run on another host needs nothing of the machine that added it. (None in a
    # schedule written before it existed: such a run reads `config` and `sets` again.)
    resolved: str | None = None
    cron: str
    timezone: str = "UTC"
    address: str | None = Field(None, description="Ray dashboard address: fire as a Ray job there")
    when: Literal["always", "data-changed"] = "always"
    command: Literal["run", "compare"] = Field("run", description="what a fired slot runs: genpipe run or compare")
    overlap: Literal["skip", "queue"] = "skip"
    retries: int = Field(2, ge=0, description="times a failed or interrupted run is resumed before its slot fails")
    retry_delay_s: float = Field(
        60, ge=0, description="wait before the first resume, doubled for each next one (an outage takes a while)"
    )
    paused: bool = False
    created_at: float

    @field_validator("cron")
    @classmethod
    def _valid_cron(cls, value: str) -> str:
        if not croniter.is_valid(value, second_at_beginning=True):
            raise ValueError(f"{value!r} is not a cron expression (5 fields, or 6 with seconds)")
        try:  # valid fields can still name a date that never comes (February 31st)
            _cron(value, datetime(2000, 1, 1)).get_next(float)
        except CroniterBadDateError:
            raise ValueError(f"{value!r} never fires (no such date)") from None
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
        return _cron(self.cron, start).get_prev(float)

    def next_slot(self, now: float) -> float:
        return _cron(self.cron, datetime.fromtimestamp(now, ZoneInfo(self.timezone))).get_next(float)

    def slots_between(self, after: float, until: float, limit: int = 1000) -> int:
        """How many fire times lie in (after, until], counted up to `limit`."""
        iterator = _cron(self.cron, datetime.fromtimestamp(after, ZoneInfo(self.timezone)))
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
    lease_s: float | None = None  # the holder's lease: a few of its ticks (older states: LEASE_SECONDS)
    released: bool = False  # its holder stopped and left it to the next scheduler
    attempt: int = 0  # 0: the first launch; n: its n-th resume (schedule.retries)
    resume_at: float | None = None  # failed, its next attempt due then (schedule.retry_delay_s)


class ScheduleState(BaseModel):
    last_slot: float | None = None
    last_fired_at: float | None = None
    last_outcome: str | None = None
    last_workflow_id: str | None = None
    running: Running | None = None
    queued_slot: float | None = None
    launch_failures: int = 0  # in a row, for the queued slot: retried up to LAUNCH_ATTEMPTS times
    history: list[dict[str, Any]] = Field(default_factory=list)

    def note(self, slot: float, outcome: str, workflow_id: str | None, at: float) -> None:
        self.last_outcome, self.last_workflow_id = outcome, workflow_id or self.last_workflow_id
        self.history = [*self.history, {"slot": slot, "outcome": outcome, "workflow_id": workflow_id, "at": at}]
        self.history = self.history[-HISTORY_LENGTH:]


class Launcher(Protocol):
    """Starts a schedule's run and reports on it; the real one runs `genpipe run` processes."""

    def start(self, schedule: Schedule, workflow_id: str, attempt: int = 0) -> None:
        """Launch the run (attempt n > 0: resume it, the n-th time)."""

    def adopt(self, schedule: Schedule, workflow_id: str, attempt: int = 0) -> None:
        """Follow a run another scheduler started (its outcome comes from `outcome`)."""

    def outcome(self, workflow_id: str) -> str | None:
        """None while the run goes on, else a one-line outcome."""

    def release_all(self) -> list[str]:
        """Stop following every run (they go on); their workflow ids."""


class ScheduleStore:
    """Schedules and their states in storage."""

    def __init__(self, storage: str):
        self.storage = storage
        self.root = join(storage, "schedules")

    def _uri(self, name: str, *parts: str) -> str:
        if not re.match(NAME_PATTERN, name):  # a name is a folder: `../x` must not reach outside
            raise KeyError(f"{name!r} is not a schedule name ({NAME_PATTERN})")
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
        """Remove a schedule, also one whose file no longer loads (that is when one wants it gone)."""
        if not exists(self._uri(name, "schedule.json")):
            raise KeyError(f"no schedule named {name!r} in {self.storage}")
        fs, path = filesystem(self._uri(name))
        fs.rm(path, recursive=True)

    def state(self, name: str) -> ScheduleState:
        uri = self._uri(name, "state.json")
        return ScheduleState.model_validate(read_json(uri)) if exists(uri) else ScheduleState()

    def save_state(self, name: str, state: ScheduleState) -> None:
        write_json_atomic(self._uri(name, "state.json"), state.model_dump(mode="json"))

    def claim(self, name: str, slot: float, holder: str, at: float) -> bool:
        """True for exactly one caller per (schedule, slot), however many schedulers race."""
        payload = {"holder": holder, "at": at, "nonce": uuid.uuid4().hex}
        return create_exclusive(self._uri(name, "claims", f"{int(slot)}.json"), payload)

    def tick_lock(self, name: str) -> Lease:
        return Lease(self._uri(name, "tick-lock"), term_s=TICK_LOCK_SECONDS)


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
        """One pass over every schedule; returns the workflow ids fired. A schedule that fails
        (a broken file, storage or a dashboard that is down) has the error noted on its state and
        never stops the pass, the other schedules or the scheduler."""
        fired = []
        for name in self.store.names():
            lock = self.store.tick_lock(name)
            try:
                lock.acquire(renew=False)  # its state is read, changed and written by one scheduler
            except LeaseHeld:
                continue  # another scheduler is on it this very moment
            except Exception as exc:  # the storage failing: the next tick tries again
                self.echo(f"[scheduler] {name}: cannot take its lock: {type(exc).__name__}: {first_line(exc)}")
                continue
            try:
                workflow_id = self._tick_one(self.store.get(name), now)
                if workflow_id:
                    fired.append(workflow_id)
            except KeyError:
                continue  # removed during the pass
            except Exception as exc:
                self._note_error(name, exc, now)
            finally:
                with contextlib.suppress(Exception):  # unreleased, it lapses after its term
                    lock.release("finished")
        return fired

    def _note_error(self, name: str, exc: Exception, now: float) -> None:
        problem = f"error: {type(exc).__name__}: {first_line(exc, 300)}"
        self.echo(f"[scheduler] {name}: {problem}")
        try:
            state = self.store.state(name)
            state.note(state.last_slot or now, problem, None, now)
            self.store.save_state(name, state)
        except Exception:  # the storage itself is failing: the echo above is all there is
            return

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
            if running.resume_at is not None:  # failed; its next attempt waits out the delay
                if now >= running.resume_at:
                    self._resume(schedule, state, running, now)
                else:
                    running.heartbeat_at = now
                return True
            outcome = self.launcher.outcome(running.workflow_id)
            if outcome is None:
                running.heartbeat_at = now
                return True
            if not succeeded(outcome) and running.attempt < schedule.retries:
                delay = schedule.retry_delay_s * 2**running.attempt
                note = f"{RETRYING}{outcome.splitlines()[0][:300]}; resuming in {delay:.0f} s"
                state.running = running.model_copy(update={"resume_at": now + delay, "heartbeat_at": now})
                state.note(running.slot, f"{note} ({running.attempt + 1}/{schedule.retries})", running.workflow_id, now)
                self.echo(f"[scheduler] {schedule.name}: {running.workflow_id} {note}")
                return True
            state.running = None
            state.note(running.slot, outcome, running.workflow_id, now)
            self.echo(f"[scheduler] {schedule.name}: {running.workflow_id} {outcome}")
            return True
        if running.released or now - running.heartbeat_at > (running.lease_s or LEASE_SECONDS):
            if running.resume_at is None:  # a run going on: follow it; one waiting to resume: resume it when due
                self.launcher.adopt(schedule, running.workflow_id, running.attempt)
            how = "released" if running.released else "stopped beating"
            self.echo(f"[scheduler] {schedule.name}: adopted {running.workflow_id} (scheduler {running.holder} {how})")
            state.running = running.model_copy(update={"holder": self.holder, "heartbeat_at": now, "released": False})
            return True
        return False

    def _resume(self, schedule: Schedule, state: ScheduleState, running: Running, now: float) -> None:
        """Launch the failed run again under its workflow id: it goes on from where it stopped. A
        resume that cannot be launched ends the slot as failed, saying so."""
        attempt = running.attempt + 1
        try:
            self.launcher.start(schedule, running.workflow_id, attempt)
        except Exception as exc:
            final = f"failed: its resume {attempt} could not be launched: {type(exc).__name__}: {first_line(exc)}"
            state.running = None
            state.note(running.slot, final[:400], running.workflow_id, now)
            self.echo(f"[scheduler] {schedule.name}: {running.workflow_id} {final}")
            return
        state.running = running.model_copy(update={"attempt": attempt, "heartbeat_at": now, "resume_at": None})
        self.echo(f"[scheduler] {schedule.name}: {running.workflow_id} resumed ({attempt}/{schedule.retries})")

    def _fire(self, schedule: Schedule, state: ScheduleState, slot: float, now: float) -> str | None:
        """Start the slot's run. A launch that fails is noted and the slot queued for the next
        tick, LAUNCH_ATTEMPTS times in all; then it is noted as given up: never silently lost."""
        workflow_id = workflow_id_for(schedule.name, slot)
        try:
            self.launcher.start(schedule, workflow_id)
        except Exception as exc:
            state.launch_failures += 1
            retry = state.launch_failures < LAUNCH_ATTEMPTS
            state.queued_slot = slot if retry else None
            failures = f"{state.launch_failures}/{LAUNCH_ATTEMPTS}"
            outcome = f"launch failed ({failures}): {type(exc).__name__}: {first_line(exc)}"
            outcome = outcome[:300] + ("; retried next tick" if retry else "; given up")
            state.note(slot, outcome, workflow_id, now)
            self.echo(f"[scheduler] {schedule.name}: slot {_iso(slot)} {outcome}")
            if not retry:
                state.launch_failures = 0
            return None
        state.launch_failures = 0
        state.running = Running(
            workflow_id=workflow_id,
            slot=slot,
            started_at=now,
            holder=self.holder,
            heartbeat_at=now,
            lease_s=self.lease_seconds,
        )
        state.last_fired_at = now
        self.echo(f"[scheduler] {schedule.name}: fired {workflow_id} for slot {_iso(slot)}")
        return workflow_id

    def shutdown(self, now: float) -> None:
        """Leave this scheduler's runs going (a rollout of the scheduler must not kill the nightly
        training) and mark them released: the next scheduler adopts them at once."""
        released = set(self.launcher.release_all())
        for name in self.store.names():
            with contextlib.suppress(Exception):  # a broken schedule or storage: its heartbeat lapses
                state = self.store.state(name)
                running = state.running
                if running and running.holder == self.holder and running.workflow_id in released:
                    state.running = running.model_copy(update={"released": True, "heartbeat_at": now})
                    self.store.save_state(name, state)
                    self.echo(f"[scheduler] {name}: {running.workflow_id} goes on; the next scheduler follows it")


def succeeded(outcome: str) -> bool:
    """Whether a run's outcome line is a success (a skip is one: the data had not changed)."""
    return outcome.startswith(("succeeded", "skipped"))


def _iso(epoch: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch))
