"""Schedules as the Python API and the CLI manage them: add, update, list, pause, resume, remove.
A schedule keeps its config resolved when added or updated (a broken config is refused now, not
at 3 a.m.), so every fired run gets the config as it was then."""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipelines.config import ConfigError, default_storage, dump_config, load_config
from pipelines.config.errors import problem_line
from pipelines.schedule.schedules import Schedule, ScheduleState, ScheduleStore
from storage import normalize
from typed_errors import first_line


def store_at(storage: str | None = None) -> ScheduleStore:
    return ScheduleStore(normalize(storage or default_storage()))


def _resolve(source: str, sets: Sequence[str], storage: str, tracking_uri: str | None, command: str = "run") -> str:
    """The config every fired run gets, as YAML: `sets` applied, storage and tracking URI filled in
    (and a `compare:` section with its defaults for a schedule of comparisons)."""
    sections = ("compare",) if command == "compare" else ()
    config = load_config(source, list(sets), sections, storage=storage, tracking_uri=tracking_uri)
    config = config.model_copy(update={"tracking_uri": config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")})
    return dump_config(config)


def _source(config: str) -> str:
    """A file by its absolute path (the scheduler may run elsewhere in the tree); a built-in by name."""
    return str(Path(config).resolve()) if Path(config).is_file() else config


def why_broken(exc: Exception) -> str:
    """A schedule file that does not load, in one line: its fields' problems, or the error's first line."""
    if isinstance(exc, ValidationError):
        return "; ".join(problem_line(error) for error in exc.errors())[:300]
    return f"{type(exc).__name__}: {first_line(exc, 200)}"


def existing(store: ScheduleStore, name: str) -> Schedule:
    try:
        return store.get(name)
    except KeyError as exc:
        raise ConfigError([f"NAME: {exc.args[0]}"]) from None
    except ValueError as exc:  # a file that no longer loads (JSON or fields)
        raise ConfigError([f"NAME: schedule {name!r} is broken: {why_broken(exc)}"]) from None


def add(
    name: str,
    config: str,
    *,
    cron: str,
    timezone: str = "UTC",
    sets: Sequence[str] = (),
    when: str = "always",
    address: str | None = None,
    overlap: str = "skip",
    retries: int = 2,
    retry_delay_s: float = 60,
    storage: str | None = None,
    tracking_uri: str | None = None,
    command: str = "run",
) -> Schedule:
    """A new schedule that runs `config` (a file or a built-in) on `cron` in `timezone`: as
    `genpipe run`, or `genpipe compare` (`command`)."""
    store = store_at(storage)
    resolved = _resolve(config, sets, store.storage, tracking_uri, command)
    try:
        schedule = Schedule(
            name=name,
            config=_source(config),
            sets=list(sets),
            resolved=resolved,
            cron=cron,
            timezone=timezone,
            address=address,
            when=when,
            overlap=overlap,
            retries=retries,
            retry_delay_s=retry_delay_s,
            command=command,
            created_at=time.time(),
        )
    except ValidationError as exc:
        raise ConfigError(
            [f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        ) from None
    if name in store.names():
        raise ConfigError([f"NAME: a schedule named {name!r} exists; remove it first"])
    store.put(schedule)
    return schedule


def update(
    name: str,
    config: str | None = None,
    *,
    sets: Sequence[str] = (),
    storage: str | None = None,
    tracking_uri: str | None = None,
) -> Schedule:
    """Resolve a schedule's config again: from `config` if given, else from where it came from;
    with `sets` if any, else the ones it had. Runs fired from now on get it."""
    store = store_at(storage)
    schedule = existing(store, name)
    source, chosen = config or schedule.config, list(sets) or schedule.sets
    resolved = _resolve(source, chosen, store.storage, tracking_uri, schedule.command)
    schedule = schedule.model_copy(update={"config": _source(source), "sets": chosen, "resolved": resolved})
    store.put(schedule)
    return schedule


def set_paused(name: str, paused: bool, *, storage: str | None = None) -> Schedule:
    store = store_at(storage)
    schedule = existing(store, name).model_copy(update={"paused": paused})
    store.put(schedule)
    return schedule


def remove(name: str, *, storage: str | None = None) -> None:
    try:
        store_at(storage).remove(name)
    except KeyError as exc:
        raise ConfigError([f"NAME: {exc.args[0]}"]) from None


@dataclass(frozen=True)
class Listed:
    """One schedule as a listing shows it: the schedule and its state, or why it does not load."""

    name: str
    schedule: Schedule | None = None
    state: ScheduleState | None = None
    broken: str | None = None

    def as_dict(self, now: float) -> dict[str, Any]:
        if self.schedule is None or self.state is None:
            return {"name": self.name, "broken": self.broken}
        schedule, state = self.schedule, self.state
        upcoming = None if schedule.paused else schedule.next_slot(now)
        return {
            "name": self.name,
            "cron": schedule.cron,
            "timezone": schedule.timezone,
            "paused": schedule.paused,
            "next": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(upcoming)) if upcoming else None,
            "when": schedule.when,
            "address": schedule.address,
            "running": state.running.workflow_id if state.running else None,
            "last_outcome": state.last_outcome,
            "last_workflow_id": state.last_workflow_id,
        }


def listing(storage: str | None = None) -> list[Listed]:
    """Every schedule in the storage; a broken one is listed with why (it must not hide the others)."""
    store = store_at(storage)
    found = []
    for name in store.names():
        try:
            found.append(Listed(name, store.get(name), store.state(name)))
        except Exception as exc:
            found.append(Listed(name, broken=why_broken(exc)))
    return found
