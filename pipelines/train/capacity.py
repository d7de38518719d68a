"""What a Ray cluster can provide: the nodes that are up, and the node types its autoscaler can add.

A run asks before any compute. Work that fits a node that is up starts at once; work that fits only
a node type the autoscaler can add waits for the scale-up, with a progress line and a timeout
(`cluster.scale_up_timeout_s`); work that fits neither fails at once naming the field
(pipelines/workflow/preflight.py).

Where the node types come from, the first found:

1. Ray's own record in the GCS (`ClusterConfig`: node groups, their resources and maximum counts),
   the one Ray Data reads to size itself; an autoscaler that implements Ray's v2 protocol reports it.
2. The autoscaling config a cluster's head is started with (`ray up` keeps it at
   `~/ray_bootstrap_config.yaml`; GENPIPE_AUTOSCALING_CONFIG names another file), read where the
   driver runs: a submitted job's driver runs on the head.

Neither found: the cluster is what is up (a fixed cluster, the laptop's own Ray).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipelines.config.sections import TrainConfig
from pipelines.train.startup import EMBEDDED_RAY_VARIABLE
from typed_errors import first_line

AUTOSCALING_CONFIG_VARIABLE = "GENPIPE_AUTOSCALING_CONFIG"
LAUNCHER_CONFIG = Path("~/ray_bootstrap_config.yaml")
UNLIMITED = -1
ANY_NUMBER = 1 << 30  # slots on node types without a bound: more than any run asks for
POLL_S = 1.0
PROGRESS_EVERY_S = 15.0

Resources = dict[str, float]


@dataclass(frozen=True)
class NodeType:
    """A kind of node the autoscaler can start: its resources (None: not declared, the provider
    knows them from the instance type) and how many of it there may be (UNLIMITED: no bound)."""

    name: str
    resources: Resources | None
    max_count: int

    def shown(self) -> str:
        bound = "any number" if self.max_count == UNLIMITED else f"up to {self.max_count}"
        return f"{self.name} ({shown_resources(self.resources) if self.resources else 'resources undeclared'}; {bound})"


@dataclass(frozen=True)
class Capacity:
    """The nodes up now (their total resources) and the node types that can be added."""

    nodes: list[Resources]
    node_types: list[NodeType]

    @property
    def autoscales(self) -> bool:
        return bool(self.node_types)

    def slots_up(self, need: Resources, spread: bool = False) -> int:
        """How many processes that each need `need` fit the nodes that are up (one per node: `spread`)."""
        return _slots_on(self.nodes, need, spread)

    def slots_possible(self, need: Resources, spread: bool = False) -> int | None:
        """How many fit once the autoscaler has added every node it may; None when some node type
        does not declare its resources (the autoscaler may still fit them: not ours to refuse)."""
        if any(node_type.resources is None for node_type in self.node_types):
            return None
        slots = self.slots_up(need, spread)
        for node_type in self.node_types:
            per_node = _slots_on([node_type.resources or {}], need, spread)
            if per_node and node_type.max_count == UNLIMITED:
                return ANY_NUMBER
            slots += per_node * max(node_type.max_count, 0)
        return slots

    def training_slots_up(self, train: TrainConfig, need: Resources) -> int:
        """How many training workers of `need` fit the nodes up, as the run places them."""
        return self.slots_up(need, train.placement_strategy == "STRICT_SPREAD")

    def training_slots_possible(self, train: TrainConfig, need: Resources) -> int | None:
        """How many fit once the autoscaler has added what it may (None: `slots_possible`)."""
        return self.slots_possible(need, train.placement_strategy == "STRICT_SPREAD")

    def has_gpus(self) -> bool:
        """A GPU is up, or a node type that has one can be added (`use_gpu: auto`)."""
        declared = [node_type.resources or {} for node_type in self.node_types]
        return any(resources.get("GPU", 0) > 0 for resources in [*self.nodes, *declared])

    def shown(self) -> str:
        up = ", ".join(shown_resources(node) for node in self.nodes) or "no nodes"
        if not self.node_types:
            return up
        return f"{up}; node types: {', '.join(node_type.shown() for node_type in self.node_types)}"


def uses_gpu(train: TrainConfig, capacity: Capacity) -> bool:
    """`use_gpu: auto` is a GPU when the cluster has one or can add one."""
    return capacity.has_gpus() if train.use_gpu == "auto" else train.use_gpu


def worker_resources(train: TrainConfig, capacity: Capacity) -> Resources:
    """What one training worker asks Ray for."""
    return {"CPU": train.cpus_per_worker, **({"GPU": 1.0} if uses_gpu(train, capacity) else {})}


def shown_need(need: Resources) -> str:
    """What one process asks for: `3 CPU`, `0.5 CPU and 1 GPU`."""
    return " and ".join(f"{amount:g} {name}" for name, amount in need.items() if amount) or "nothing"


def shown_resources(resources: Resources) -> str:
    return f"{resources.get('CPU', 0):g} CPU/{resources.get('GPU', 0):g} GPU"


def _slots_on(nodes: list[Resources], need: Resources, spread: bool) -> int:
    per_node = [_fits(node, need) for node in nodes]
    return sum(min(n, 1) for n in per_node) if spread else sum(per_node)


def _fits(node: Resources, need: Resources) -> int:
    """How many processes that each need `need` fit one node's total resources."""
    counts = [math.floor(node.get(name, 0) / amount + 1e-9) for name, amount in need.items() if amount > 0]
    return min(counts) if counts else 1  # 1.0 // 0.1 is 9.0: hence floor(x / y + eps)


def cluster_capacity() -> Capacity:
    """The joined cluster's capacity (`ray.init` done)."""
    import ray

    nodes = [dict(node["Resources"]) for node in ray.nodes() if node.get("Alive")]
    return Capacity(nodes, node_types())


def node_types() -> list[NodeType]:
    """The worker node types the cluster's autoscaler can add (module docstring: where from)."""
    return _from_gcs() or _from_autoscaling_config()


def _from_gcs() -> list[NodeType]:
    from ray._private.state import state  # Ray Data reads the same record (get_max_resources_from_cluster_config)

    try:
        config = state.get_cluster_config()
    except Exception:  # an older GCS without the record: the next source decides
        return []
    if config is None:
        return []
    return [
        NodeType(group.name, {k: float(v) for k, v in group.resources.items()}, group.max_count)
        for group in config.node_group_configs
        if group.max_count != 0
    ]


def _from_autoscaling_config() -> list[NodeType]:
    named = os.environ.get(AUTOSCALING_CONFIG_VARIABLE)
    if not named and not _joined_a_cluster():
        return []  # a Ray this process started: the machine's launcher file is about another cluster
    path = Path(named) if named else LAUNCHER_CONFIG.expanduser()
    if not path.is_file():
        if named:
            raise FileNotFoundError(f"{AUTOSCALING_CONFIG_VARIABLE}: no autoscaling config at {path}")
        return []
    config = _read_config(path)
    head_type = config.get("head_node_type")
    types = []
    for name, spec in (config.get("available_node_types") or {}).items():
        if name == head_type or not isinstance(spec, dict):
            continue
        max_count = int(spec.get("max_workers", config.get("max_workers", UNLIMITED)))
        if max_count == 0:
            continue
        resources = spec.get("resources")
        types.append(NodeType(name, {k: float(v) for k, v in resources.items()} if resources else None, max_count))
    return types


def _joined_a_cluster() -> bool:
    """Whether this process joined a running cluster (a job's driver, `--address`) rather than
    starting a Ray of its own."""
    from ray._private import worker

    if os.environ.get(EMBEDDED_RAY_VARIABLE) == "1":  # its workers (tasks, Ray Train) too: they inherit it
        return False
    node = getattr(worker, "_global_node", None)
    return node is not None and not node.head


def _read_config(path: Path) -> dict[str, Any]:
    text = path.read_text()
    try:
        loaded = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ValueError(f"{path}: not an autoscaling config ({first_line(exc)})") from None
    if not isinstance(loaded, dict):
        raise ValueError(f"{path}: not an autoscaling config (a mapping with available_node_types)")
    return loaded


def wait_for_scale_up(
    bundles: list[Resources],
    enough: Callable[[Capacity], bool],
    timeout_s: float,
    what: str,
    say: Callable[[str], None],
) -> Callable[[], None]:
    """Ask the autoscaler for `bundles` and wait until `enough(capacity)` holds; returns the call that
    withdraws the request (after the work has placed its own: the nodes are then held by it).

    The request is Ray's `request_resources`, the autoscaler's own API for work that is about to
    come: it scales up at once, without waiting for the demand to queue."""
    from ray.autoscaler.sdk import request_resources

    def withdraw() -> None:
        with contextlib.suppress(Exception):  # the cluster is gone: nothing to withdraw
            request_resources(bundles=[])

    request_resources(bundles=bundles)
    started = last_said = time.monotonic()
    say(f"waiting for the autoscaler to add nodes for {what} (up to {timeout_s:.0f} s)")
    while True:
        capacity = cluster_capacity()
        if enough(capacity):
            say(f"the cluster has scaled up for {what} in {time.monotonic() - started:.0f} s ({capacity.shown()})")
            return withdraw
        waited = time.monotonic() - started
        if waited > timeout_s:
            withdraw()
            raise TimeoutError(
                f"cluster.scale_up_timeout_s: the autoscaler did not add nodes for {what} in {timeout_s:.0f} s "
                f"(up: {capacity.shown()})"
            )
        if time.monotonic() - last_said >= PROGRESS_EVERY_S:
            say(f"still waiting for nodes for {what}: {waited:.0f} s of {timeout_s:.0f} s (up: {capacity.shown()})")
            last_said = time.monotonic()
        time.sleep(POLL_S)
