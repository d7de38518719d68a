"""Where a training run's start-up goes, phase by phase, from the driver's `fit()` to the first
optimizer step: logged to the run as `startup/*` metrics (and one console line), so a user sees
what a short run pays before it trains, and benchmarks/startup_bench.py can split it.

Phases, each the time since the previous mark:
- `spawn`: Ray Train's controller, placement group and the worker's process being started;
- `imports`: the worker process importing Ray, torch, DeepSpeed, MLflow and genpipe, and joining
  the group's torch.distributed process group;
- `setup`: the model built, the manifest verified, the feed opened, the strategy chosen;
- `engines`: DeepSpeed's engines (and optimizers) built;
- `first_step`: the checkpoint restored, the run's tags, the first optimizer step.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psutil

EMBEDDED_RAY_VARIABLE = "GENPIPE_EMBEDDED_RAY"  # "1" in a Ray a genpipe command started for itself, and its workers

# Ray Train's controller polls its workers this often by default (2 s): starting a worker group,
# seeing a report and seeing the run end each wait for a poll. Measured on 2 cores, a trivial
# 2-worker fit took 12.4 s at 2 s and 8.4 s at 0.5 s (benchmarks/RESULTS.md); a poll is one small
# RPC per worker. A user's own RAY_TRAIN_HEALTH_CHECK_INTERVAL_S is kept.
HEALTH_CHECK_INTERVAL_S = "0.5"

# Set to 1, genpipe leaves Ray Train as Ray ships it (poll, preemption watcher, Ray Data manager):
# the baseline of benchmarks/startup_bench.py, and a way to rule genpipe's start-up cuts out.
RAY_TRAIN_DEFAULTS = "GENPIPE_RAY_TRAIN_DEFAULTS"


STATE_API_PROBE_S = 3

LOG_FILE_SCAN_INTERVAL_S = "5"  # how often an embedded Ray's log monitor looks for new log files


def ray_train_defaults() -> bool:
    return os.environ.get(RAY_TRAIN_DEFAULTS) == "1"


def use_start_up_settings() -> None:
    """Ray Train's controller poll (read when a trainer starts, passed on to its controller)."""
    if not ray_train_defaults():
        os.environ.setdefault("RAY_TRAIN_HEALTH_CHECK_INTERVAL_S", HEALTH_CHECK_INTERVAL_S)


def torch_trainer_class() -> type:
    """Ray Train's TorchTrainer without the default actors a fit cannot use. Ray has no option
    for them: the subclass drops those default callbacks, by name (a Ray without such a callback
    changes nothing).

    - The Ray Data manager, when the fit is given no Ray Datasets. Ray Train starts a
      `DatasetManager` actor for every fit, and that actor imports Ray Data, which starts two more
      (an autoscaling coordinator and a stats actor): ~3.3 s of a core in three processes, at the
      moment the workers start and import torch (benchmarks/RESULTS.md). genpipe's workers read
      their shards themselves (pipelines/train/feed.py): there is nothing for it to hand out.
    - The placement group cleaner, when the cluster's State API (served by its dashboard) does not
      answer, as in the Ray a `genpipe run` starts for itself: the cleaner asks that API every
      second whether the controller is alive, so there it can never tell, only logs a warning each
      time (~1.7 s of a core a fit, and up to a second of the wind-down)."""
    from ray.train.torch import TorchTrainer

    if ray_train_defaults():
        return TorchTrainer
    useless = {"PlacementGroupCleanerCallback"} if not _state_api_answers() else set()

    class TorchTrainerWithoutIdleActors(TorchTrainer):
        def _create_default_callbacks(self) -> list[Any]:
            callbacks = list(super()._create_default_callbacks())  # type: ignore[misc]  # typed as Ray's v1 class
            dropped = useless if self.datasets else useless | {"DatasetsCallback"}
            return [callback for callback in callbacks if type(callback).__name__ not in dropped]

    return TorchTrainerWithoutIdleActors


def _state_api_answers() -> bool:
    """Whether this cluster's State API answers, about this cluster: a Ray started without a
    dashboard still records one at 127.0.0.1:8265, where another cluster's dashboard may answer
    about other nodes (the cleaner would then take our controller for dead and remove our workers'
    placement group). A refused connection fails at once."""
    import ray
    from ray.util.state import list_nodes

    try:
        listed = list_nodes(limit=10_000, timeout=STATE_API_PROBE_S, raise_on_missing_output=False)
    except Exception:  # Ray's own: ServerUnavailable, RayStateApiException, a timeout
        return False
    ours = {node["NodeID"] for node in ray.nodes()}
    return any(node.node_id in ours for node in listed)


def embedded_ray_defaults() -> None:
    """Settings for a Ray that this process starts on its own machine, made before `ray.init` so
    its raylet and every worker inherit them (a user's own values are kept): no preemption watcher,
    an actor process (~1 s of a core to start) in every training run that watches for a cloud
    node's reclaim notice, which a machine's own Ray never gets."""
    os.environ[EMBEDDED_RAY_VARIABLE] = "1"  # no autoscaler: a launcher's file on this machine is another cluster's
    if not ray_train_defaults():
        os.environ.setdefault("RAY_TRAIN_ENABLE_PREEMPTION_WATCHER", "0")
    # Ray's log monitor looks for new log files in the session folder on each pass of its 0.1 s
    # loop while there are fewer than 1000 (then every LOG_NAME_UPDATE_INTERVAL_S): every worker
    # process adds files, so its globs grow with the run (2.9 s of a core a minute at 243 files,
    # 1.3 s when it looks every 5 s; benchmarks/RESULTS.md). A file it finds later is still read
    # from its start: nothing is lost, worker output reaches the driver (`genpipe -v`) later.
    os.environ.setdefault("RAY_LOG_MONITOR_MANY_FILES_THRESHOLD", "0")
    os.environ.setdefault("LOG_NAME_UPDATE_INTERVAL_S", LOG_FILE_SCAN_INTERVAL_S)


class StartupClock:
    """Marks taken on a worker; `called_at` is the driver's clock when it called `fit()` (epoch
    seconds: the driver and the worker may be different processes, or different nodes with
    synchronised clocks)."""

    def __init__(self, called_at: float | None):
        self.called_at = called_at
        self.marks: list[tuple[str, float]] = [("imports", time.time())]

    def mark(self, phase: str) -> None:
        self.marks.append((phase, time.time()))

    def metrics(self) -> dict[str, float]:
        """`startup/<phase>_s` for each phase and `startup/total_s` (fit() to the last mark)."""
        started = psutil.Process().create_time()
        if self.called_at is None:  # no driver clock: the phases from the worker's process start
            points, origin = list(self.marks), started
        else:  # (a process Ray started before fit() was called has no spawn phase)
            points, origin = [("spawn", max(started, self.called_at)), *self.marks], self.called_at
        metrics, previous = {}, origin
        for phase, at in points:
            metrics[f"startup/{phase}_s"] = max(0.0, at - previous)
            previous = at
        metrics["startup/total_s"] = max(0.0, previous - origin)
        return metrics

    def summary(self, metrics: dict[str, float] | None = None) -> str:
        """One console line; `metrics` when the caller has them already (one reading of the marks)."""
        metrics = metrics or self.metrics()
        parts = ", ".join(
            f"{name.removeprefix('startup/').removesuffix('_s')} {value:.1f}"
            for name, value in metrics.items()
            if name != "startup/total_s"
        )
        return f"started in {metrics['startup/total_s']:.1f}s ({parts})"
