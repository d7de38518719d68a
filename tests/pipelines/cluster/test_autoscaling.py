"""An autoscaling cluster: work that fits a node type waits for it, work that fits none is refused
before any compute, `use_gpu: auto` counts the GPUs the cluster can add, and `train.num_workers:
[min, max]` trains elastically. The cluster is a real Ray head whose autoscaler starts real raylets
on this machine (Ray's fake multi-node provider), from zero worker nodes."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import mlflow
import pytest
from helpers import REPO, TINY, seed_dataset

from pipelines.cluster import jobs
from pipelines.cluster import local as local_cluster
from pipelines.config import ConfigError, load_config
from pipelines.train import capacity
from pipelines.train.capacity import ANY_NUMBER, UNLIMITED, Capacity, NodeType

CPU2 = NodeType("cpu2", {"CPU": 2.0}, 2)
GPU1 = NodeType("gpu1", {"CPU": 1.0, "GPU": 1.0}, 1)
HEAD_ONLY = [{"CPU": 0.0}]


def test_capacity_counts_the_nodes_up_and_those_the_node_types_can_add():
    cluster = Capacity([{"CPU": 2.0}], [CPU2, GPU1])
    assert cluster.slots_up({"CPU": 1}) == 2
    assert cluster.slots_possible({"CPU": 1}) == 2 + 2 * 2 + 1
    assert cluster.slots_possible({"CPU": 1}, spread=True) == 1 + 2 + 1  # one per node
    assert cluster.slots_possible({"CPU": 0.5, "GPU": 1}) == 1
    assert cluster.slots_possible({"CPU": 4}) == 0
    assert cluster.has_gpus() and not Capacity([{"CPU": 8.0}], [CPU2]).has_gpus()
    assert Capacity(HEAD_ONLY, [NodeType("any", {"CPU": 4.0}, UNLIMITED)]).slots_possible({"CPU": 1}) == ANY_NUMBER
    # A node type whose resources come from its instance type: not ours to refuse.
    assert Capacity(HEAD_ONLY, [NodeType("m5", None, 4)]).slots_possible({"CPU": 64}) is None
    assert "node types: cpu2 (2 CPU/0 GPU; up to 2), gpu1 (1 CPU/1 GPU; up to 1)" in cluster.shown()


LAUNCHER_CONFIG = """
cluster_name: prod
max_workers: 10
head_node_type: head
available_node_types:
  head: {resources: {CPU: 8}, node_config: {}}
  cpu: {resources: {CPU: 16}, node_config: {}, min_workers: 0}
  gpu: {resources: {CPU: 8, GPU: 4}, node_config: {}, max_workers: 3}
  retired: {resources: {CPU: 2}, node_config: {}, max_workers: 0}
  aws: {node_config: {InstanceType: m5.large}, max_workers: 2}
"""


def test_node_types_come_from_a_cluster_launchers_autoscaling_config(tmp_path, monkeypatch):
    config = tmp_path / "ray_bootstrap_config.yaml"
    config.write_text(LAUNCHER_CONFIG)
    monkeypatch.setenv(capacity.AUTOSCALING_CONFIG_VARIABLE, str(config))
    assert capacity._from_autoscaling_config() == [
        NodeType("cpu", {"CPU": 16.0}, 10),  # the cluster's max_workers bounds a type without its own
        NodeType("gpu", {"CPU": 8.0, "GPU": 4.0}, 3),
        NodeType("aws", None, 2),
    ]
    config.write_text("available_node_types: [")
    with pytest.raises(ValueError, match="ray_bootstrap_config.yaml: not an autoscaling config"):
        capacity._from_autoscaling_config()
    monkeypatch.setenv(capacity.AUTOSCALING_CONFIG_VARIABLE, str(tmp_path / "gone.yaml"))
    with pytest.raises(FileNotFoundError, match=f"{capacity.AUTOSCALING_CONFIG_VARIABLE}: no autoscaling config"):
        capacity._from_autoscaling_config()


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("[2, 1]", "train.num_workers: [2, 1] has its maximum below its minimum"),
        ("[0, 2]", "train.num_workers: 0 is fewer than 1 worker"),
        ("0", "train.num_workers: 0 is fewer than 1 worker"),
        ("[1, 2, 3]", "train.num_workers: a number of workers (2) or a range [min, max] (e.g. [1, 4]), not [1, 2, 3]"),
        ("true", "train.num_workers: a number of workers (2) or a range [min, max] (e.g. [1, 4]), not True"),
    ],
)
def test_a_worker_range_is_checked_when_the_config_loads(value, problem):
    with pytest.raises(ConfigError, match=re.escape(problem)):
        load_config("quickstart", [f"train.num_workers={value}"])
    assert load_config("quickstart", ["train.num_workers=[1, 3]"]).train.max_workers == 3


def test_a_worker_range_is_taken_under_every_strategy():
    """Every strategy's checkpoints resume on another number of workers (ZeRO's through DeepSpeed's
    universal checkpoint), so an elastic range is no strategy's exception."""
    for strategy in ("ddp", "zero1", "zero2", "zero3"):
        config = load_config("quickstart", ["train.num_workers=[1, 2]", f"train.strategy={strategy}"])
        assert (config.train.min_workers, config.train.max_workers) == (1, 2)


def test_a_launcher_file_on_a_machine_whose_ray_is_its_own_is_about_another_cluster(ray_session, tmp_path, monkeypatch):
    """`ray up` leaves ~/ray_bootstrap_config.yaml on a head; a laptop's own Ray has no autoscaler."""
    launcher_file = tmp_path / "ray_bootstrap_config.yaml"
    launcher_file.write_text(LAUNCHER_CONFIG)
    monkeypatch.setattr(capacity, "LAUNCHER_CONFIG", launcher_file)
    monkeypatch.delenv(capacity.AUTOSCALING_CONFIG_VARIABLE, raising=False)
    assert capacity.node_types() == []
    assert not capacity.cluster_capacity().autoscales


def test_waiting_for_nodes_that_never_come_ends_naming_the_timeout(ray_session):
    said: list[str] = []
    with pytest.raises(TimeoutError, match="cluster.scale_up_timeout_s: the autoscaler did not add nodes for"):
        capacity.wait_for_scale_up(
            [{"CPU": 64}], lambda now: now.slots_up({"CPU": 64}) >= 1, 2, "a big worker", said.append
        )
    assert said[0] == "waiting for the autoscaler to add nodes for a big worker (up to 2 s)"


@pytest.fixture(scope="module")
def autoscaling_cluster(tmp_path_factory):
    folder = tmp_path_factory.mktemp("autoscaling")
    node_types = {
        "cpu2": {"resources": {"CPU": 2}, "max_workers": 2},
        "gpu1": {"resources": {"CPU": 1, "GPU": 1}, "max_workers": 1},
    }
    head = local_cluster.start_autoscaling_head(folder, node_types)
    yield head
    head.stop(timeout=5)  # a test cluster: no drain to wait for


def _run(head, storage, *sets: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "RAY_AUTH_MODE": "token",
        capacity.AUTOSCALING_CONFIG_VARIABLE: head.extra["autoscaling_config"],
    }
    command = [sys.executable, "-m", "pipelines.cli", "run", "quickstart", "--address", head.extra["gcs_address"]]
    command += ["--storage", str(storage), "--tracking-uri", f"sqlite:///{storage / 'mlflow.db'}"]
    command += [arg for s in [*TINY, *sets] for arg in ("--set", s)]
    return subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


@pytest.mark.slow
@pytest.mark.xdist_group("autoscaling")  # the module's one autoscaling head, on one test worker
def test_work_no_node_type_fits_is_refused_before_any_compute(autoscaling_cluster, tmp_path):
    """`use_gpu: auto` counts the GPU node type that is not up; two GPU workers fit no cluster that
    has at most one GPU node."""
    done = _run(autoscaling_cluster, tmp_path, "train.num_workers=2")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "train.num_workers: 2 workers of 0.5 CPU and 1 GPU each (PACK) do not fit the cluster" in done.stderr
    assert "node types: cpu2 (2 CPU/0 GPU; up to 2), gpu1 (1 CPU/1 GPU; up to 1)); only 1 do" in done.stderr
    assert not (tmp_path / "workflows").exists()  # nothing started


@pytest.mark.slow
@pytest.mark.xdist_group("autoscaling")  # the module's one autoscaling head, on one test worker
def test_an_elastic_run_scales_the_cluster_up_from_no_worker_nodes(autoscaling_cluster, quickstart_dataset, tmp_path):
    """The dataset is prepared already (prepare asks for no CPU): the cluster has no worker node
    when training starts, and the run waits for the autoscaler to add one."""
    seed_dataset(quickstart_dataset, tmp_path)
    done = _run(
        autoscaling_cluster,
        tmp_path,
        "train.use_gpu=false",  # the fake GPU node's GPU is a number, not a device
        "train.num_workers=[1, 2]",
        "train.cpus_per_worker=1",
        "evaluate.num_cpus=1",
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "train: waiting for the autoscaler to add nodes for 1 training workers of 1 CPU (up to 900 s)" in done.stdout
    assert "train: the cluster has scaled up for 1 training workers of 1 CPU in " in done.stdout
    jobs.use_token()
    assert jobs.alive_nodes(autoscaling_cluster.url) >= 2  # the head (no CPUs) and what the run added
    assert "Traceback" not in done.stdout + done.stderr
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    runs = mlflow.search_runs(search_all_experiments=True, output_format="list")
    workers = [
        m.value for run in runs for m in mlflow.MlflowClient().get_metric_history(run.info.run_id, "train/workers")
    ]
    assert workers and all(1 <= n <= 2 for n in workers), workers
