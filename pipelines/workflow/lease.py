"""One driver per workflow: the workflow's lease (storage/lease.py) in `<workflow>/leases/`,
renewed while the driver runs and naming the step it runs, so `genpipe status` tells a running
step from one whose driver stopped or died. A second driver for a live workflow exits 2."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Any

from pipelines.config import ConfigError
from storage import join
from storage.lease import Lease, LeaseHeld, describe, holder_alive


class WorkflowBusy(ConfigError):
    """Another driver holds the workflow (exit 2, naming it)."""


@dataclass
class DriverLease(Lease):
    """The lease of the workflow whose folder is `folder`'s parent."""

    @classmethod
    def of(cls, workflow_uri: str) -> DriverLease:
        return cls(join(workflow_uri, "leases"))

    def acquire(self, renew: bool = True) -> None:
        """Take the workflow, or raise WorkflowBusy naming the live driver that runs it."""
        try:
            super().acquire(renew)
        except LeaseHeld as held:
            workflow = os.path.basename(os.path.dirname(self.folder.rstrip("/")))
            raise WorkflowBusy(
                [
                    f"WORKFLOW_ID: {workflow} is being run by {describe(held.record)}; wait for it, or "
                    f"stop it (its lease lapses {self.term_s:.0f} s after its last heartbeat)"
                ]
            ) from None

    def driver_state(self) -> tuple[str | None, str]:
        """The step the newest driver was in and whether it is `running` or `interrupted` there
        (None and "" when no driver is in a step): one read of the lease for a whole status."""
        latest = self.latest()
        record: dict[str, Any] = latest[1] if latest else {}
        if record.get("state") not in ("running", "interrupted"):
            return None, ""
        return record.get("doing"), "running" if holder_alive(record, time.time()) else "interrupted"
