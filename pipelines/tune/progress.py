"""What a sweep tells the console while it runs: trials finished of N, the best so far and an ETA
(pipelines/workflow/progress.py prints them), from a Tune callback in the sweep's driver.

Tune pickles its callbacks into the experiment's state and a restored sweep gets them back: the
callback holds no reporter (the killed driver's console is gone), only what it counts; the sweep
names the console of the process that runs it now (`reporting`)."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from ray.tune import Callback

_console: Callable[..., None] | None = None


@contextmanager
def reporting(report: Callable[..., None] | None) -> Iterator[None]:
    """Send the sweep callbacks' lines to `report` while the sweep runs in this process."""
    global _console
    _console = report
    try:
        yield
    finally:
        _console = None


class SweepProgress(Callback):
    """Counts trials as they end (finished, stopped early by ASHA, or failed) and keeps the best
    score any trial has reported on the sweep's metric."""

    def __init__(self, metric: str, mode: str, total: int):
        self.metric, self.mode, self.total = metric, mode, total
        self.ended = 0
        self.best: tuple[str, float] | None = None

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value = result.get(self.metric)
        if not isinstance(value, int | float) or not math.isfinite(value):
            return
        if self.best is None or (value < self.best[1] if self.mode == "min" else value > self.best[1]):
            self.best = (trial.trial_id, float(value))

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._ended()

    def _ended(self) -> None:
        self.ended += 1
        best = f"best so far: trial {self.best[0]} {self.metric}={self.best[1]:.4g}" if self.best else "no score yet"
        if _console is not None:
            _console("tune", done=self.ended, total=self.total, unit="trials", text=best)


class ComparisonProgress(Callback):
    """A leaderboard line as each entrant ends (its family, seed, score and sampling rate), with
    the count of entrants done for the console's ETA."""

    def __init__(self, metric: str, total: int):
        self.metric, self.total = metric, total
        self.ended = 0

    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        value, rate = result.get(self.metric), result.get("cost/samples_per_second")
        config = trial.config
        shown = f"{value:.4g}" if isinstance(value, int | float) else "-"
        speed = f", {rate:,.0f} samples/s" if isinstance(rate, int | float) else ""
        self._line(f"{config.get('family')} seed {config.get('seed')}: {self.metric}={shown}{speed}")

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self._line(f"{trial.config.get('family')} seed {trial.config.get('seed')}: failed")

    def _line(self, text: str) -> None:
        self.ended += 1
        if _console is not None:
            _console("compare", done=self.ended, total=self.total, unit="trainings", text=text)
