"""`genpipe schedule add|list|pause|resume|remove` and `genpipe scheduler`."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from pydantic import ValidationError

from pipelines.cli.output import EXIT_OK, UsageError, say, say_json
from pipelines.config import ConfigError, default_storage, dump_config, load_config
from pipelines.config.errors import problem_line
from storage import normalize, write_bytes_atomic
from typed_errors import first_line


def _schedules(args: argparse.Namespace):
    from pipelines.schedule.schedules import ScheduleStore

    return ScheduleStore(normalize(args.storage or default_storage()))


def _resolve(source: str, sets: list[str], storage: str, tracking_uri: str | None) -> str:
    """The config every fired run gets, as YAML: read and checked now (a broken config is refused
    now, not at 3 a.m.), `--set`s applied, storage and tracking URI filled in."""
    config = load_config(source, sets, storage=storage, tracking_uri=tracking_uri)
    config = config.model_copy(update={"tracking_uri": config.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")})
    return dump_config(config)


def cmd_schedule_add(args: argparse.Namespace) -> int:
    from pipelines.schedule.schedules import Schedule

    store = _schedules(args)
    resolved = _resolve(args.config, args.set, store.storage, args.tracking_uri)
    config = str(Path(args.config).resolve()) if Path(args.config).is_file() else args.config
    try:
        schedule = Schedule(
            name=args.name,
            config=config,
            sets=args.set,
            resolved=resolved,
            cron=args.cron,
            timezone=args.timezone,
            address=args.address,
            when=args.when,
            overlap=args.overlap,
            retries=args.retries,
            retry_delay_s=args.retry_delay,
            created_at=time.time(),
        )
    except ValidationError as exc:
        raise ConfigError(
            [f"{'.'.join(map(str, e['loc']))}: {e['msg'].removeprefix('Value error, ')}" for e in exc.errors()]
        ) from None
    if args.name in store.names():
        raise UsageError(f"NAME: a schedule named {args.name!r} exists; remove it first")
    store.put(schedule)
    say(f"schedule {args.name}: {args.cron} ({args.timezone}), next {_when(schedule.next_slot(time.time()))}")
    return EXIT_OK


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "-"


def _iso(epoch: float | None) -> str | None:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(epoch)) if epoch else None


def _why_broken(exc: Exception) -> str:
    """A schedule file that does not load, in one line: its fields' problems, or the error's first line."""
    if isinstance(exc, ValidationError):
        return "; ".join(problem_line(error) for error in exc.errors())[:300]
    return f"{type(exc).__name__}: {first_line(exc, 200)}"


def cmd_schedule_list(args: argparse.Namespace) -> int:
    store = _schedules(args)
    names = store.names()
    if args.json:
        say_json([_listed(store, name, time.time()) for name in names])
        return EXIT_OK
    if not names:
        say(f"no schedules in {store.storage}")
    now = time.time()
    for name in names:
        try:
            schedule, state = store.get(name), store.state(name)
        except Exception as exc:  # one broken schedule must not hide the others
            say(f"{name}  broken: {_why_broken(exc)} (fix or `genpipe schedule remove {name}`)")
            continue
        nxt = "paused" if schedule.paused else f"next {_when(schedule.next_slot(now))}"
        running = f", running {state.running.workflow_id}" if state.running else ""
        where = f"  on {schedule.address}" if schedule.address else ""
        say(f"{name}  '{schedule.cron}' {schedule.timezone}  {nxt}  when={schedule.when}{where}{running}")
        say(
            f"  last: {state.last_outcome or 'never fired'}"
            + (f" ({state.last_workflow_id})" if state.last_workflow_id else "")
        )
    return EXIT_OK


def _listed(store, name: str, now: float) -> dict:
    """A schedule as `schedule list --json` shows it (a broken one with why)."""
    try:
        schedule, state = store.get(name), store.state(name)
    except Exception as exc:
        return {"name": name, "broken": _why_broken(exc)}
    return {
        "name": name,
        "cron": schedule.cron,
        "timezone": schedule.timezone,
        "paused": schedule.paused,
        "next": None if schedule.paused else _iso(schedule.next_slot(now)),
        "when": schedule.when,
        "address": schedule.address,
        "running": state.running.workflow_id if state.running else None,
        "last_outcome": state.last_outcome,
        "last_workflow_id": state.last_workflow_id,
    }


def _existing(store, name: str):
    try:
        return store.get(name)
    except KeyError as exc:
        raise UsageError(f"NAME: {exc.args[0]}") from None
    except ValueError as exc:  # a file that no longer loads (JSON or fields)
        raise UsageError(f"NAME: schedule {name!r} is broken: {_why_broken(exc)}") from None


def cmd_schedule_update(args: argparse.Namespace) -> int:
    """Resolve the schedule's config again: from CONFIG if given, else from where it came from;
    with these `--set`s if any, else the ones it had. Runs fired from now on get it."""
    store = _schedules(args)
    schedule = _existing(store, args.name)
    source = args.config or schedule.config
    sets = args.set or schedule.sets
    resolved = _resolve(source, sets, store.storage, args.tracking_uri)
    config = str(Path(source).resolve()) if Path(source).is_file() else source
    store.put(schedule.model_copy(update={"config": config, "sets": sets, "resolved": resolved}))
    say(
        f"schedule {args.name}: runs from now on get {config} as it is now"
        + (f" with {' '.join(sets)}" if sets else "")
    )
    return EXIT_OK


def cmd_schedule_export(args: argparse.Namespace) -> int:
    """The schedule as a KubeRay RayCronJob (stdout, or --out FILE): Kubernetes fires it."""
    from pipelines.schedule.export import NotExportable, raycronjob_yaml

    schedule = _existing(_schedules(args), args.name)
    try:
        manifest = raycronjob_yaml(schedule, args.cluster)
    except NotExportable as exc:
        raise UsageError(str(exc)) from None
    if args.out is None:
        print(manifest, end="")
        return EXIT_OK
    write_bytes_atomic(str(Path(args.out).resolve()), manifest.encode())
    say(f"schedule {args.name}: RayCronJob written to {args.out} (kubectl apply -f {args.out})")
    return EXIT_OK


def cmd_schedule_toggle(args: argparse.Namespace) -> int:
    store = _schedules(args)
    schedule = _existing(store, args.name)
    store.put(schedule.model_copy(update={"paused": args.schedule_command == "pause"}))
    say(f"schedule {args.name} {'paused' if args.schedule_command == 'pause' else 'resumed'}")
    return EXIT_OK


def cmd_schedule_remove(args: argparse.Namespace) -> int:
    try:
        _schedules(args).remove(args.name)
    except KeyError as exc:
        raise UsageError(f"NAME: {exc.args[0]}") from None
    say(f"schedule {args.name} removed")
    return EXIT_OK


def cmd_scheduler(args: argparse.Namespace) -> int:
    import signal
    import socket
    import threading
    import uuid

    from pipelines.schedule.launchers import Launchers
    from pipelines.schedule.schedules import LEASE_SECONDS, Scheduler

    store = _schedules(args)
    holder = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:4]}"
    # A run's heartbeat is refreshed once a tick: its lease spans a few ticks, so a live scheduler
    # with a long tick is never taken for a dead one.
    lease = max(LEASE_SECONDS, 3 * args.tick)
    scheduler = Scheduler(store, Launchers(store.storage), holder, echo=say, lease_seconds=lease)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    say(f"[scheduler] {holder} watching {store.root} every {args.tick}s")
    while not stop.is_set():
        scheduler.tick(time.time())
        stop.wait(args.tick)
    scheduler.shutdown(time.time())
    say("[scheduler] stopped")
    return EXIT_OK
