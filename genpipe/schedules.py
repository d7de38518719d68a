"""Recurring runs, as `genpipe schedule ...` manages them: `genpipe scheduler` (or a KubeRay
RayCronJob, `genpipe schedule export`) fires them."""

from __future__ import annotations

from pipelines.schedule.management import Listed, add, listing, remove, set_paused, update
from pipelines.schedule.schedules import Schedule


def pause(name: str, *, storage: str | None = None) -> Schedule:
    return set_paused(name, True, storage=storage)


def resume(name: str, *, storage: str | None = None) -> Schedule:
    return set_paused(name, False, storage=storage)


def list_schedules(storage: str | None = None) -> list[Listed]:
    """Every schedule with its state (or, for one that does not load, why)."""
    return listing(storage)


__all__ = ["Listed", "Schedule", "add", "list_schedules", "pause", "remove", "resume", "update"]
