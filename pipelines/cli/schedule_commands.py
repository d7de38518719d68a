"""`genpipe schedule add|list|pause|resume|remove` and `genpipe scheduler`."""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

from pipelines.cli.output import EXIT_OK, UsageError, say, say_json
from pipelines.schedule import management
from storage import write_bytes_atomic


def _when(epoch: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(epoch)) if epoch else "-"


def cmd_schedule_add(args: argparse.Namespace) -> int:
    schedule = management.add(
        args.name,
        args.config,
        cron=args.cron,
        timezone=args.timezone,
        sets=args.set,
        when=args.when,
        address=args.address,
        overlap=args.overlap,
        retries=args.retries,
        retry_delay_s=args.retry_delay,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        command=args.command_run,
    )
    say(f"schedule {args.name}: {args.cron} ({args.timezone}), next {_when(schedule.next_slot(time.time()))}")
    return EXIT_OK


def cmd_schedule_list(args: argparse.Namespace) -> int:
    listed, now = management.listing(args.storage), time.time()
    if args.json:
        say_json([entry.as_dict(now) for entry in listed])
        return EXIT_OK
    if not listed:
        say(f"no schedules in {management.store_at(args.storage).storage}")
    for entry in listed:
        schedule, state = entry.schedule, entry.state
        if schedule is None or state is None:
            say(f"{entry.name}  broken: {entry.broken} (fix or `genpipe schedule remove {entry.name}`)")
            continue
        nxt = "paused" if schedule.paused else f"next {_when(schedule.next_slot(now))}"
        running = f", running {state.running.workflow_id}" if state.running else ""
        where = f"  on {schedule.address}" if schedule.address else ""
        say(f"{entry.name}  '{schedule.cron}' {schedule.timezone}  {nxt}  when={schedule.when}{where}{running}")
        say(
            f"  last: {state.last_outcome or 'never fired'}"
            + (f" ({state.last_workflow_id})" if state.last_workflow_id else "")
        )
    return EXIT_OK


def cmd_schedule_update(args: argparse.Namespace) -> int:
    schedule = management.update(
        args.name, args.config, sets=args.set, storage=args.storage, tracking_uri=args.tracking_uri
    )
    say(
        f"schedule {args.name}: runs from now on get {schedule.config} as it is now"
        + (f" with {' '.join(schedule.sets)}" if schedule.sets else "")
    )
    return EXIT_OK


def cmd_schedule_export(args: argparse.Namespace) -> int:
    """The schedule as a KubeRay RayCronJob (stdout, or --out FILE): Kubernetes fires it."""
    from pipelines.schedule.export import NotExportable, raycronjob_yaml

    schedule = management.existing(management.store_at(args.storage), args.name)
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
    paused = args.schedule_command == "pause"
    management.set_paused(args.name, paused, storage=args.storage)
    say(f"schedule {args.name} {'paused' if paused else 'resumed'}")
    return EXIT_OK


def cmd_schedule_remove(args: argparse.Namespace) -> int:
    management.remove(args.name, storage=args.storage)
    say(f"schedule {args.name} removed")
    return EXIT_OK


def cmd_scheduler(args: argparse.Namespace) -> int:
    import signal
    import socket
    import threading
    import uuid

    from pipelines.schedule.launchers import Launchers
    from pipelines.schedule.schedules import LEASE_SECONDS, Scheduler

    store = management.store_at(args.storage)
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
