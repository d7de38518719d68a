"""Shared fixtures: one real local Ray per test session, a real `mlflow server` on 127.0.0.1."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from pipelines.config import PipelineConfig, load_config

REPO = Path(__file__).resolve().parent.parent

# Small enough for 2 CPU cores: a short schedule, few samples, a couple of classifier epochs.
TINY = [
    "model.params.timesteps=20", "train.max_steps=30", "train.log_every=5", "train.checkpoint_every=15",
    "evaluate.num_samples=100", "evaluate.grid_size=16", "evaluate.classifier_epochs=2",
]


def tiny_config(storage: Path, *extra: str) -> PipelineConfig:
    return load_config("quickstart", [*TINY, *extra], storage=str(storage))


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # address="local": never join a cluster another test started (ray_current_cluster in /tmp/ray).
    ray.init(address="local", num_cpus=2, logging_level="WARNING")
    yield ray
    ray.shutdown()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` subprocess (sqlite backend, local artifact root) on 127.0.0.1."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = (root / "server.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{root}/mlflow.db",
         "--artifacts-destination", str(root / "artifacts"), "--host", "127.0.0.1", "--port", str(port),
         "--workers", "1"],
        stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            break
        except OSError as exc:
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                raise RuntimeError(f"mlflow server did not start: {(root / 'server.log').read_text()[-2000:]}") from exc
            time.sleep(0.5)
    yield url
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
    log.close()
