"""What a running step tells the console: progress events from any Ray process of the step (a
Ray Train worker, a Tune trial, the step's own task), collected by a small actor and printed by
the driver with a rate and an ETA.

Ray's own log forwarding would carry them too, but with every library's chatter (Ray Train's
reports, DeepSpeed's op builds): the driver starts Ray with `log_to_driver=False` unless asked to be
verbose, and this channel carries only genpipe's own lines. Steps get a `report` callable (a
`Reporter` over the actor handle, which Ray ships to any process) and know nothing of the board.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Report = Callable[..., None]


class ProgressBoard:
    """The actor the step's processes post to and the driver drains."""

    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def post(self, event: dict[str, Any]) -> None:
        self.events.append(event)

    def take(self) -> list[dict[str, Any]]:
        events, self.events = self.events, []
        return events


class Reporter:
    """`report(stage, text="...", done=3, total=10, unit="steps")` posts to the board without
    waiting (a step never waits on the console); `flush()`, at the end of a process's part, waits
    until what it posted is on the board (Ray runs one caller's actor calls in order)."""

    def __init__(self, board: Any):
        self.board, self.last = board, None

    def __reduce__(self) -> tuple[type[Reporter], tuple[Any]]:
        return Reporter, (self.board,)  # to another process: the board, not this one's last call

    def __call__(self, stage: str, **event: Any) -> None:
        self.last = self.board.post.remote({"stage": stage, **event})

    def flush(self, timeout: float = 5.0) -> None:
        import ray

        if self.last is not None:
            with contextlib.suppress(Exception):  # a board gone with its driver: nothing to show
                ray.get(self.last, timeout=timeout)


def flush(report: Report) -> None:
    """Wait until what `report` posted is on the board (a no-op for a report that is not a Reporter)."""
    if isinstance(report, Reporter):
        report.flush()


def open_board() -> tuple[Any, Reporter]:
    """A new board (an actor holding no CPU) and the `report` callable that posts to it."""
    import ray

    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    return board, Reporter(board)


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


@dataclass
class ConsoleProgress:
    """Turns events into console lines: `  train  200/440 steps (45%)  loss=0.18  ETA 0:25`."""

    echo: Callable[[str], None]
    first_seen: dict[str, tuple[float, int]] = field(default_factory=dict)

    def show(self, event: dict[str, Any]) -> None:
        stage, text = event.get("stage", ""), event.get("text", "")
        done, total = event.get("done"), event.get("total")
        if done is None or not total:
            self.echo(f"  {stage}: {text}" if text else f"  {stage}")
            return
        now = time.monotonic()
        started, done_then = self.first_seen.setdefault(stage, (now, done))
        line = f"  {stage} {done}/{total} {event.get('unit', '')} ({done / total:.0%})"
        if text:
            line += f"  {text}"
        if done > done_then and done < total:
            rate = (done - done_then) / (now - started)
            line += f"  ETA {_clock((total - done) / rate)}"
        self.echo(line)
