"""Shared fixtures: one real local Ray per test session; a real `mlflow server` and a moto S3
server on 127.0.0.1, started by the same code as `genpipe local-cluster`."""

from __future__ import annotations

import os

import pytest

from pipelines.cluster import local as local_cluster
from pipelines.cluster.local import Server


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    # address="local": never join a cluster another test started (ray_current_cluster in /tmp/ray).
    ray.init(address="local", num_cpus=2, logging_level="WARNING")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def mlflow_server(tmp_path_factory):
    """A real `mlflow server` subprocess (sqlite backend, local artifact root) on 127.0.0.1."""
    root = tmp_path_factory.mktemp("mlflow-server")
    server = local_cluster.start_mlflow(root, str(root / "artifacts"))
    yield server.url
    server.stop(timeout=20)


@pytest.fixture(scope="session")
def moto_server(tmp_path_factory) -> Server:
    """A real S3 API (moto) on 127.0.0.1 that accepts any credentials."""
    server = local_cluster.start_moto(tmp_path_factory.mktemp("moto"))
    yield server
    server.stop(timeout=10)


@pytest.fixture
def s3_env(moto_server, monkeypatch):
    """AWS settings for the moto server; AWS_ENDPOINT_URL is each test's to set (or proxy)."""
    import s3fs

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", local_cluster.MOTO_REGION)
    monkeypatch.delenv("AWS_RETRY_MODE", raising=False)
    monkeypatch.delenv("AWS_MAX_ATTEMPTS", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # instances remember the endpoint they were made with
    yield monkeypatch
    s3fs.S3FileSystem.clear_instance_cache()
