"""Shared fixtures: one real local Ray per test session; a real `mlflow server` and a moto S3
server on 127.0.0.1, started by the same code as `genpipe local-cluster`."""

from __future__ import annotations

import os
from pathlib import Path

import crash_report
import process_guard
import pytest

from pipelines.cluster import local as local_cluster
from pipelines.cluster.local import Server
from pipelines.train.startup import embedded_ray_defaults


def _is_controller(config: pytest.Config) -> bool:
    """The process that owns the session: pytest itself, not one of pytest-xdist's workers."""
    return not hasattr(config, "workerinput")


def pytest_configure(config: pytest.Config) -> None:
    """Before anything starts: kill what a killed earlier session left, then mark this session's
    processes (tests/process_guard.py); xdist's workers inherit the mark."""
    if not _is_controller(config):
        worker = config.workerinput["workerid"]  # type: ignore[attr-defined]
        crash_report.record_worker(crash_report.WORKERS, os.environ[process_guard.MARK], worker, os.getpid())
        return
    mark, killed = process_guard.begin()
    if killed:
        print(f"process guard: killed {len(killed)} processes an interrupted test session left behind")
    os.environ[process_guard.MARK] = mark
    # Each pytest-xdist worker gets its share of the cores: torch's OpenMP threads beyond them spin
    # and slow the other workers down (2 threads each on 2 cores: 3x the wall time of 1 each,
    # benchmarks/threads_bench.py).
    # Inherited by the workers, the CLI runs they start and those runs' Ray workers.
    workers = int(getattr(config.option, "numprocesses", 0) or 0)
    if not os.environ.get("OMP_NUM_THREADS", "").strip():  # a user's own value is kept
        os.environ["OMP_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // max(1, workers)))


# A test that needs one of these starts real servers: it is an integration test whatever its marks.
SERVER_FIXTURES = {"ray_session", "mlflow_server", "moto_server", "s3_env"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark every test that starts servers `slow` (so `make test-fast` is the unit tests alone) and
    run the slow ones first: under pytest-xdist the long, waiting tests then overlap each other and
    the short ones fill the gaps at the end, instead of one long test starting last."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable: file order otherwise
    if config.getoption("loadgroup", default=False):
        _keep_xdist_groups_together(items)


def _keep_xdist_groups_together(items: list[pytest.Item]) -> None:
    """pytest-xdist 3.8 tags a test of an `xdist_group` by rewriting `item._nodeid`, which pytest 9
    no longer reads (a node's id is `item._id`): every group was split over the workers, its module
    fixtures built on each, other modules' tests run between its own (a shared MLflow store then
    saw versions it did not make). The same `@group` suffix, where pytest 9 reads it."""
    from _pytest.nodeid import coerce_node_id  # pytest 9; under pytest 8 xdist's own tag works

    for item in items:
        names = sorted(
            {str(m.args[0] if m.args else m.kwargs.get("name", "default")) for m in item.iter_markers("xdist_group")}
        )
        if names and "@" not in item.nodeid:
            item._id = coerce_node_id(f"{item.nodeid}@{'_'.join(names)}")


@pytest.hookimpl(optionalhook=True)  # pytest-xdist's hook: absent without it
def pytest_handlecrashitem(crashitem: str, report: pytest.TestReport, sched: object) -> None:
    """A worker died without a traceback: say what it left (tests/crash_report.py)."""
    worker = report.node.gateway.id  # type: ignore[attr-defined]
    report.longrepr = (
        f"{report.longrepr}\n{crash_report.describe(crash_report.WORKERS, os.environ[process_guard.MARK], worker)}"
    )


@pytest.hookimpl(trylast=True)  # after pytest-xdist has stopped its workers
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """The session fails when a process it started is still alive at its end."""
    if not _is_controller(session.config):
        return
    crash_report.forget_workers(crash_report.WORKERS, os.environ[process_guard.MARK])
    left = process_guard.end(os.environ[process_guard.MARK])
    if not left:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"process guard: {len(left)} processes started by the tests outlived the session (killed now):"]
    lines += [f"  {entry.describe()}" for entry in left]
    if reporter is not None:
        reporter.write_line("\n".join(lines), red=True)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(scope="session")
def ray_session():
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    embedded_ray_defaults()  # as `genpipe` starts its own Ray (pipelines/workflow/api.connect_ray)
    # address="local": never join a cluster another test started (ray_current_cluster in /tmp/ray);
    # no dashboard, as `genpipe` runs its own Ray (its ~10 processes would cost every worker's CPU).
    ray.init(address="local", num_cpus=2, logging_level="WARNING", include_dashboard=False)
    raylets = process_guard.raylets()
    yield ray
    ray.shutdown()
    for leftover in process_guard.stop_ray_leftovers(raylets):
        print(f"process guard: Ray left {leftover} after its shutdown; killed")


@pytest.fixture(scope="session")
def quickstart_dataset(ray_session, tmp_path_factory) -> Path:
    """The quickstart's digits dataset, prepared once per test process: the folder of
    `<storage>/datasets/<fingerprint>`, for `helpers.seed_dataset` to copy into a test's storage
    where the test is about what happens after prepare (prepare has its own tests). With the
    evaluation's classifier cached beside its shards, as the first evaluation of it leaves it
    (~5 s of a core each time otherwise; training it is tested where a run prepares its own)."""
    from helpers import tiny_config

    from data_prep.prepare import prepare
    from pipelines.evaluate.classifier import load_or_train_classifier

    root = tmp_path_factory.mktemp("quickstart-dataset")
    config = tiny_config(root)
    manifest, _ = prepare(config.data, str(root))
    load_or_train_classifier(manifest, config.evaluate.classifier_epochs, config.evaluate.seed)
    return Path(manifest.uri)


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
