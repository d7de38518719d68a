"""What a running step tells the console: progress events from any Ray process of the step (a
Ray Train worker, a Tune trial, the step's own task), collected by a small actor (one per driver
process, a channel per run) and printed by the driver with a rate and an ETA.

Ray's own log forwarding would carry them too, but with every library's chatter (Ray Train's
reports, DeepSpeed's op builds): the driver starts Ray with `log_to_driver=False` unless asked to be
verbose, and this channel carries only genpipe's own lines. Steps get a `report` callable (a
`Reporter` over the actor handle, which Ray ships to any process) and know nothing of the board.
"""

from __future__ import annotations

import contextlib
import math
import os
import socket
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Report = Callable[..., None]
BOARD_NAME = "genpipe.progress"


class ProgressBoard:
    """The actor the steps' processes post to and the driver drains, a channel per workflow run."""

    def __init__(self) -> None:
        self.channels: dict[str, list[dict[str, Any]]] = {}

    def post(self, channel: str, event: dict[str, Any]) -> None:
        self.channels.setdefault(channel, []).append(event)

    def take(self, channel: str) -> list[dict[str, Any]]:
        return self.channels.pop(channel, [])


class Reporter:
    """`report(stage, text="...", done=3, total=10, unit="steps")` posts to the run's channel
    without waiting (a step never waits on the console); `flush()`, at the end of a process's part,
    waits until what it posted is on the board (Ray runs one caller's actor calls in order);
    `take()`, in the driver, drains the channel."""

    def __init__(self, board: Any, channel: str):
        self.board, self.channel, self.last = board, channel, None

    def __reduce__(self) -> tuple[type[Reporter], tuple[Any, str]]:
        return Reporter, (self.board, self.channel)  # to another process: not this one's last call

    def __call__(self, stage: str, **event: Any) -> None:
        self.last = self.board.post.remote(self.channel, {"stage": stage, **event})

    def flush(self, timeout: float = 5.0) -> None:
        import ray

        if self.last is not None:
            with contextlib.suppress(Exception):  # a board gone with its driver: nothing to show
                ray.get(self.last, timeout=timeout)

    def take(self) -> list[dict[str, Any]]:
        import ray

        return ray.get(self.board.take.remote(self.channel))


def flush(report: Report) -> None:
    """Wait until what `report` posted is on the board (a no-op for a report that is not a Reporter)."""
    if isinstance(report, Reporter):
        report.flush()


# The handle that created this process's board. It is what keeps the board alive between runs: Ray
# ends an actor once its creator's handles are gone, whatever handles `get_actor` gave out.
_board: Any = None


def open_board() -> Reporter:
    """A new channel on this driver's board, and the `report` callable that posts to it. The board
    (an actor holding no CPU) is started by a driver's first run and serves its later ones: a
    process of its own costs ~1-2 s of a core to start, which a process that runs many workflows
    (a notebook, a test session) paid for each. Named per host and process: drivers that share a
    Ray namespace never share a board, and a board that is gone (died with its node, or left in a
    Ray this process has since shut down) is started again."""
    import ray

    global _board
    name = f"{BOARD_NAME}.{socket.gethostname()}.{os.getpid()}"
    if _board is None or not _alive(name):
        _board = ray.remote(num_cpus=0)(ProgressBoard).options(name=name, get_if_exists=True).remote()
    return Reporter(_board, uuid.uuid4().hex)


def _alive(name: str) -> bool:
    import ray

    try:
        ray.get_actor(name)
    except ValueError:  # no live actor of that name: it died
        return False
    return True


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


@dataclass
class ConsoleProgress:
    """Turns events into console lines: `  train  200/440 steps (45%)  loss=0.18  ETA 0:25`.

    An event carries `done` (where a single process stands: the training loop's step), or `add`
    (what one of many processes just finished: a Ray Data task's rows, which the console sums),
    with the `total` when it is known; a line then has the rate, and the ETA."""

    echo: Callable[[str], None]
    first_seen: dict[str, tuple[float, int]] = field(default_factory=dict)
    added: dict[str, int] = field(default_factory=dict)
    shown_at: dict[str, float] = field(default_factory=dict)
    every_s: float = 2.0  # counts summed from many processes: a line at most this often, and the last

    def show(self, event: dict[str, Any]) -> None:
        stage, text = event.get("stage", ""), event.get("text", "")
        if event.get("add") is not None:
            self.added[stage] = self.added.get(stage, 0) + int(event["add"])
            event = {**event, "done": self.added[stage]}
        done, total = event.get("done"), event.get("total")
        if done is None:
            self.echo(f"  {stage}: {text}" if text else f"  {stage}")
            return
        now = time.monotonic()
        if event.get("add") is not None and done != total and now - self.shown_at.get(stage, -math.inf) < self.every_s:
            return  # (a task a file: one line each would flood the console)
        self.shown_at[stage] = now
        started, done_then = self.first_seen.setdefault(stage, (now, done))
        unit = event.get("unit", "")
        line = f"  {stage} {done}/{total} {unit} ({done / total:.0%})" if total else f"  {stage} {done} {unit}"
        if text:
            line += f"  {text}"
        rate = (done - done_then) / (now - started) if done > done_then and now > started else None
        if rate and not total:
            line += f"  {rate:,.0f} {unit}/s" if rate >= 10 else f"  {rate:.2g} {unit}/s"
        if rate and total and done < total:
            line += f"  ETA {_clock((total - done) / rate)}"
        self.echo(line)
