"""The start-up clock: phases measured from the driver's fit() call, each since the one before."""

from __future__ import annotations

import time

import psutil
import pytest

from pipelines.train.startup import RAY_TRAIN_DEFAULTS, StartupClock


def test_phases_run_from_the_fit_call_and_add_up_to_the_total():
    process_started = psutil.Process().create_time()
    clock = StartupClock(called_at=process_started - 2.0)  # the driver called fit() 2 s before this process
    for phase in ("setup", "engines", "first_step"):
        time.sleep(0.01)
        clock.mark(phase)
    metrics = clock.metrics()
    assert metrics["startup/spawn_s"] == pytest.approx(2.0, abs=0.01)
    assert metrics["startup/imports_s"] == pytest.approx(clock.marks[0][1] - process_started, abs=0.01)
    assert all(metrics[f"startup/{p}_s"] >= 0.01 for p in ("setup", "engines", "first_step"))
    phases = sum(v for k, v in metrics.items() if k != "startup/total_s")
    assert phases == pytest.approx(metrics["startup/total_s"])
    assert metrics["startup/total_s"] == pytest.approx(clock.marks[-1][1] - clock.called_at)
    assert clock.summary().startswith(f"started in {metrics['startup/total_s']:.1f}s (spawn 2.0, imports ")


def test_without_the_drivers_clock_the_phases_start_at_the_process():
    clock = StartupClock(called_at=None)
    clock.mark("setup")
    metrics = clock.metrics()
    assert "startup/spawn_s" not in metrics
    assert metrics["startup/total_s"] == pytest.approx(clock.marks[-1][1] - psutil.Process().create_time())


def _default_callbacks(datasets: dict | None) -> set[str]:
    from ray.train import ScalingConfig

    from pipelines.train.startup import torch_trainer_class

    trainer = torch_trainer_class()(lambda: None, scaling_config=ScalingConfig(num_workers=1), datasets=datasets)
    return {type(callback).__name__ for callback in trainer._create_default_callbacks()}


def test_a_fit_starts_no_actor_it_cannot_use(monkeypatch):
    from pipelines.train import startup

    monkeypatch.delenv(RAY_TRAIN_DEFAULTS, raising=False)
    monkeypatch.setattr(startup, "_state_api_answers", lambda: True)
    without = _default_callbacks(None)
    assert "DatasetsCallback" not in without and "PlacementGroupCleanerCallback" in without  # only that one goes
    assert "DatasetsCallback" in _default_callbacks({"train": lambda: None})  # a dataset factory
    monkeypatch.setattr(startup, "_state_api_answers", lambda: False)  # no dashboard: the cleaner cannot ask
    assert not {"DatasetsCallback", "PlacementGroupCleanerCallback"} & _default_callbacks(None)
    monkeypatch.setenv(RAY_TRAIN_DEFAULTS, "1")  # Ray Train as shipped: the benchmark's baseline
    assert {"DatasetsCallback", "PlacementGroupCleanerCallback"} <= _default_callbacks(None)


def test_the_state_api_counts_only_when_it_answers_about_this_cluster(ray_session, monkeypatch):
    """The tests' Ray has no dashboard: nothing answers. One that answers about other nodes (another
    cluster's dashboard at the address this one recorded) does not count either."""
    from types import SimpleNamespace

    import ray.util.state

    from pipelines.train import startup

    assert not startup._state_api_answers()
    ours = ray_session.nodes()[0]["NodeID"]
    monkeypatch.setattr(ray.util.state, "list_nodes", lambda **_: [SimpleNamespace(node_id="f" * 56)])
    assert not startup._state_api_answers()
    monkeypatch.setattr(ray.util.state, "list_nodes", lambda **_: [SimpleNamespace(node_id=ours)])
    assert startup._state_api_answers()


def test_a_training_worker_imports_mlflow_only_where_it_talks_to_it():
    """Every worker imports the training loop; only rank 0 (and a node's system-metrics rank, and a
    warm start) talk to MLflow, so the module itself must not import it (~0.6 s of a core a worker)."""
    import subprocess
    import sys

    probe = "import sys, pipelines.train.worker; print('mlflow' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False"
