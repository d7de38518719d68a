"""genpipe's Python API: the same workflows, jobs and schedules as the `genpipe` command line.

    import genpipe

    outcome = genpipe.run("quickstart", sets=["train.max_steps=30"])     # blocks; or wait=False
    handle = genpipe.run("gan-sweep-digits", steps=genpipe.SWEEP_STEPS, wait=False)
    handle.wait()
    genpipe.status(outcome.workflow.id)
    images = genpipe.sample("models:/quickstart-ddpm@champion", n=16)
    job = genpipe.submit("quickstart", address="http://head:8265", storage="s3://bucket/runs")
    genpipe.jobs.list_jobs(address="http://head:8265")
    genpipe.schedules.add("nightly", "quickstart", cron="0 3 * * *")

Defaults come from the environment as Ray and MLflow users expect: storage from GENPIPE_STORAGE
(else ./.genpipe), the tracking server from MLFLOW_TRACKING_URI (else sqlite in the storage), the
Ray cluster from RAY_ADDRESS (else a local Ray in this process). Importing genpipe imports none of
torch, Ray or MLflow: each name is loaded when first used.
"""

from __future__ import annotations

import importlib
from importlib import metadata
from typing import Any

from pipelines.workflow.step_order import COMPARE_STEPS, RUN_STEPS, SWEEP_STEPS

try:
    __version__ = metadata.version("genpipe")
except metadata.PackageNotFoundError:  # a source tree on sys.path, not installed
    __version__ = "unknown"

# name -> the module it lives in
_EXPORTS = {
    "run": "pipelines.workflow.api",
    "RunHandle": "pipelines.workflow.handle",
    "resume": "pipelines.workflow.api",
    "status": "pipelines.workflow.api",
    "load_model": "pipelines.workflow.api",
    "sample": "pipelines.workflow.api",
    "Outcome": "pipelines.workflow.api",
    "submit": "genpipe.jobs",  # a workflow as a Ray job
    "ConfigError": "pipelines.config",
    "WorkflowFailed": "pipelines.workflow.runner",
}
_SUBMODULES = ("jobs", "schedules")

__all__ = ["COMPARE_STEPS", "RUN_STEPS", "SWEEP_STEPS", "__version__", *_EXPORTS, *_SUBMODULES]


def __getattr__(name: str) -> Any:
    """PEP 562: a name is imported when first asked for (`import genpipe` stays under 0.1 s)."""
    if name in _SUBMODULES:
        return importlib.import_module(f"genpipe.{name}")
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'genpipe' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(__all__)
