"""The cluster path against real servers on 127.0.0.1: `ray start --head` plus a second node
(token authentication on, as Ray 2.60 ships it), an `mlflow server` with basic auth whose
artifacts go to S3, and a moto S3 server that checks credentials. The same pieces as
`genpipe local-cluster`; every server is stopped by its process id."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
import s3fs
import yaml
from helpers import GROUP, REPO, TINY

from pipelines import cli
from pipelines.cluster import jobs
from pipelines.cluster import local as local_cluster
from pipelines.cluster.local import free_port
from pipelines.config import read_config_source
from pipelines.registry import tracking
from pipelines.registry.versions import logged_model_id
from pipelines.schedule.launchers import Launchers
from pipelines.schedule.schedules import Scheduler, ScheduleStore

# One pytest-xdist worker runs them all: its tests share one started cluster (module fixture).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("cluster")]
BUCKET = "genpipe-it"


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """moto (with IAM auth) -> bucket -> MLflow (basic auth, artifacts in S3) -> Ray head + worker,
    each Ray node on a host of its own: a mount namespace where /tmp, HOME and this checkout are
    empty (pipelines/cluster/local.py), so nodes share only the network with the tests (the
    submitting machine), and genpipe's code is on a node only if the job shipped it.

    The nodes get the S3 key, the MLflow password and the Ray token in their environment, as a
    cloud cluster's nodes would from their IAM role or a Kubernetes Secret; jobs never carry them."""
    unavailable = local_cluster.own_hosts_unavailable()
    if unavailable:
        pytest.skip(f"separate hosts need mount namespaces: {unavailable}")
    folder = tmp_path_factory.mktemp("cluster")
    started: list[local_cluster.Server] = []
    try:
        moto = local_cluster.start_moto(folder, authenticated=True)
        started.append(moto)
        s3_env = local_cluster.s3_environment(moto)
        local_cluster.create_bucket(s3_env, BUCKET)
        password = secrets.token_urlsafe(18)
        mlflow = local_cluster.start_mlflow(folder, f"s3://{BUCKET}/mlartifacts", env=s3_env, admin_password=password)
        started.append(mlflow)
        mlflow_env = {"MLFLOW_TRACKING_USERNAME": "admin", "MLFLOW_TRACKING_PASSWORD": password}
        token = _submitters_token()  # the nodes (other hosts, other homes) get it in their environment
        node_env = {**s3_env, **mlflow_env, "RAY_AUTH_TOKEN": token}
        head = local_cluster.start_ray_head(folder, num_cpus=2, env=node_env, own_host=True)
        started.append(head)
        started.append(local_cluster.start_ray_worker(folder, head, num_cpus=1, env=node_env, own_host=True))
        yield {
            "folder": folder,
            "head": head,
            "mlflow": mlflow,
            "moto": moto,
            "env": node_env,
            "secrets": [s3_env["AWS_SECRET_ACCESS_KEY"], password, token],
        }
    finally:
        for server in reversed(started):
            server.stop()


def _submitters_token() -> str:
    """The token in this machine's ~/.ray/auth_token (made if missing), as a user's client has it:
    Ray reads it once per process, so the tests' own Ray calls keep using it."""
    token_file = jobs.DEFAULT_TOKEN_FILE
    if not token_file.is_file():
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(secrets.token_hex(16))
        token_file.chmod(0o600)
    return token_file.read_text().strip()


@pytest.fixture
def client_env(cluster, monkeypatch):
    """The submitting shell: the same credentials and Ray token as the nodes."""
    for name, value in cluster["env"].items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    s3fs.S3FileSystem.clear_instance_cache()
    return cluster


def _bucket_keys(prefix: str) -> list[str]:
    s3fs.S3FileSystem.clear_instance_cache()
    return s3fs.S3FileSystem().find(f"{BUCKET}/{prefix}")


def test_submitted_quickstart_uses_s3_and_the_remote_mlflow(client_env, tmp_path, capsys):
    head, mlflow = client_env["head"], client_env["mlflow"]
    storage = f"s3://{BUCKET}/runs"
    sets = [arg for assignment in [*TINY, GROUP] for arg in ("--set", assignment)]  # a group across the nodes
    code = cli.main(
        [
            "submit",
            "quickstart",
            *sets,
            "--address",
            head.url,
            "--storage",
            storage,
            "--tracking-uri",
            mlflow.url,
            "--workflow-id",
            "it-quickstart",
            "--follow",
        ]
    )
    submitted = capsys.readouterr()
    assert code == 0, submitted.out[-3000:]
    assert "job it-quickstart submitted" in submitted.out and "job it-quickstart: SUCCEEDED" in submitted.out

    keys = _bucket_keys("runs")
    assert any(k.endswith("manifest.json") for k in keys) and any(k.endswith(".parquet") for k in keys)
    assert any("/checkpoints/it-quickstart-train/checkpoint_" in k for k in keys)
    assert f"{BUCKET}/runs/workflows/it-quickstart/register.json" in keys

    client = tracking.client(mlflow.url)
    version = client.get_model_version_by_alias("quickstart-ddpm", "champion")
    run = client.get_run(version.run_id)
    assert run.data.tags["genpipe.workflow_id"] == "it-quickstart"
    assert len(client.get_metric_history(run.info.run_id, "train/unet_loss")) >= 2  # rank 0 reached the server
    model_id = logged_model_id(version)
    artifacts = _bucket_keys(f"mlartifacts/{run.info.experiment_id}/models/{model_id}")
    assert any(k.endswith("artifacts/weights/model.safetensors") for k in artifacts), artifacts  # in the server's S3
    # A job's working_dir has no .git: the commit it was submitted from came with it.
    assert run.data.tags["mlflow.source.git.commit"] == tracking.git_state()["GENPIPE_GIT_COMMIT"]
    assert run.data.tags["mlflow.source.type"] == "JOB"

    out = tmp_path / "grid.png"
    assert (
        cli.main(
            ["sample", "models:/quickstart-ddpm@champion", "--tracking-uri", mlflow.url, "-n", "4", "--out", str(out)]
        )
        == 0
    )
    assert out.stat().st_size > 0

    assert cli.main(["jobs", "list", "--address", head.url]) == 0
    assert cli.main(["jobs", "logs", "it-quickstart", "--address", head.url]) == 0
    listed = capsys.readouterr().out
    assert "it-quickstart  SUCCEEDED" in listed and "workflow it-quickstart succeeded" in listed
    assert cli.main(["jobs", "list", "--address", head.url, "--json"]) == 0
    (job,) = [job for job in json.loads(capsys.readouterr().out) if job["submission_id"] == "it-quickstart"]
    assert job["status"] == "SUCCEEDED" and job["end_time"] >= job["start_time"] > 0

    _assert_no_secret(client_env, submitted.out + submitted.err + listed, run.info.experiment_id)


def test_an_installed_genpipe_ships_its_packages_not_its_site_packages(client_env, tmp_path):
    """genpipe installed as a package (not a checkout): `cluster.code: auto` ships its six
    packages as Ray py_modules (about a megabyte), never site-packages, and the job succeeds."""
    installed, source = tmp_path / "site", tmp_path / "source"  # pip builds in the source folder
    for name in (*jobs.PACKAGES, "pyproject.toml", "README.md"):
        copy = shutil.copytree if (REPO / name).is_dir() else shutil.copy
        copy(REPO / name, source / name)
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation", "--target"]
        + [str(installed), str(source)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    shipped = [installed / package for package in jobs.PACKAGES]
    size = sum(f.stat().st_size for folder in shipped for f in folder.rglob("*") if "__pycache__" not in f.parts)
    assert size < 10 * 2**20, size
    elsewhere = tmp_path / "elsewhere"  # no checkout here: the installed copy is the one imported
    elsewhere.mkdir()
    sets = [arg for assignment in TINY for arg in ("--set", assignment)]
    head, mlflow = client_env["head"], client_env["mlflow"]
    submitted = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "submit", "quickstart", *sets, "--address", head.url]
        + ["--storage", f"s3://{BUCKET}/installed", "--tracking-uri", mlflow.url, "--workflow-id", "it-installed"]
        + ["--follow"],
        cwd=elsewhere,
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    assert "packaging.py" not in submitted.stderr, submitted.stderr[-2000:]  # Ray's upload lines: the log file's
    job = jobs.client(head.url).get_job_info("it-installed")
    modules = job.runtime_env["py_modules"]
    assert len(modules) == len(jobs.PACKAGES) and "working_dir" not in job.runtime_env, job.runtime_env
    assert f"{BUCKET}/installed/workflows/it-installed/register.json" in _bucket_keys("installed")


def _assert_no_secret(cluster, captured: str, experiment_id: str) -> None:
    """Not in what the CLI printed, the job's log, Ray's session logs, any MLflow param, tag,
    metric name or text artifact."""
    texts = {"captured output": captured}
    job_client = jobs.client(cluster["head"].url)
    for job in job_client.list_jobs():
        texts[f"job {job.submission_id} log"] = job_client.get_job_logs(job.submission_id)
        texts[f"job {job.submission_id} info"] = json.dumps(job.dict(), default=str)
    head_host = Path(cluster["head"].extra["root"])  # the head's own /tmp, seen from here
    for path in (head_host / cluster["head"].extra["temp_dir"].lstrip("/")).rglob("logs/*"):
        if path.is_file():
            texts[str(path)] = path.read_text(errors="replace")
    client = tracking.client(cluster["mlflow"].url)
    for run in client.search_runs([experiment_id]):
        texts[f"run {run.info.run_id}"] = json.dumps([run.data.params, run.data.tags, list(run.data.metrics)])
        for key in _bucket_keys(f"mlartifacts/{experiment_id}/{run.info.run_id}"):
            if key.endswith((".json", ".txt", ".yaml", ".csv", ".log")):
                texts[key] = s3fs.S3FileSystem().cat(key).decode(errors="replace")
    for secret in cluster["secrets"]:
        leaked = [name for name, text in texts.items() if secret in text]
        assert not leaked, f"a secret appears in {leaked}"
    assert len(texts) > 10


def _genpipe(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pipelines.cli", *args],
        cwd=REPO,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize(
    "case",
    [
        "bad credentials",
        "missing bucket",
        "MLflow unreachable",
        "MLflow password",
        "Ray unreachable",
        "job server unreachable",
        "wrong Ray token",
    ],
)
def test_misconfiguration_fails_at_start_with_a_clear_message(client_env, case):
    cluster = client_env
    env = {**cluster["env"], "RAY_AUTH_MODE": "token"}
    storage, tracking_uri, address = f"s3://{BUCKET}/preflight", cluster["mlflow"].url, None
    command, expected = "run", None
    if case == "bad credentials":
        env["AWS_SECRET_ACCESS_KEY"] = "not-" + env["AWS_SECRET_ACCESS_KEY"]
        expected = "storage: s3://genpipe-it/preflight: the credentials were refused"
    elif case == "missing bucket":
        storage, expected = "s3://no-such-bucket/runs", "storage: s3://no-such-bucket/runs: bucket 'no-such-bucket'"
    elif case == "MLflow unreachable":
        tracking_uri = f"http://127.0.0.1:{free_port()}"
        expected = f"tracking_uri: cannot reach the MLflow server at {tracking_uri}"
    elif case == "MLflow password":
        env["MLFLOW_TRACKING_PASSWORD"] = "wrong"
        expected = f"tracking_uri: the MLflow server at {tracking_uri} refused the credentials (HTTP 401)"
    elif case == "Ray unreachable":
        address = f"127.0.0.1:{free_port()}"
        expected = f"--address: cannot reach the Ray cluster at {address}"
    elif case == "job server unreachable":
        command, address = "submit", f"http://127.0.0.1:{free_port()}"
        expected = f"cannot reach the Ray job server at {address}"
    else:
        command, address, env["RAY_AUTH_TOKEN"] = "submit", cluster["head"].url, "not-the-token"
        expected = f"the Ray cluster at {address} refused the token"
    args = [
        command,
        "quickstart",
        "--storage",
        storage,
        "--tracking-uri",
        tracking_uri,
        *(["--address", address] if address else []),
        "--workflow-id",
        "never",
    ]
    result = _genpipe(*args, env=env)
    assert result.returncode == 2, result.stdout + result.stderr
    assert expected in result.stderr, result.stderr
    assert "workflow never" not in result.stdout  # nothing started
    for secret in cluster["secrets"]:
        assert secret not in result.stdout + result.stderr
    assert not [k for k in _bucket_keys("preflight") if "workflows" in k]


def test_schedule_with_an_address_runs_as_a_ray_job(client_env, tmp_path):
    """Added from a user's YAML (on this machine only) that is deleted before the slot fires: the
    job, on a host that never had it, gets the config resolved at `schedule add` (and its
    runtime_env) in its environment, not a path."""
    cluster = client_env
    storage = f"s3://{BUCKET}/scheduled"
    store = ScheduleStore(storage)
    head = cluster["head"].url
    mine = tmp_path / "my.yaml"
    raw = read_config_source("quickstart")
    raw.setdefault("cluster", {})["runtime_env"] = {"env_vars": {"GENPIPE_SCHEDULE_PROBE": "carried"}}
    mine.write_text(yaml.safe_dump(raw))
    sets = [item for setting in TINY for item in ("--set", setting)]
    add = ["schedule", "add", "remote", str(mine), "--cron", "* * * * * *", "--address", head, "--storage", storage]
    assert cli.main([*add, "--tracking-uri", cluster["mlflow"].url, *sets]) == 0
    mine.unlink()
    store.put(store.get("remote").model_copy(update={"created_at": time.time() - 10}))
    scheduler = Scheduler(store, Launchers(storage), "test", echo=lambda _: None)
    fired = scheduler.tick(time.time())
    assert len(fired) == 1
    store.put(store.get("remote").model_copy(update={"paused": True}))  # one job is enough here
    deadline = time.monotonic() + 400
    while store.state("remote").running is not None and time.monotonic() < deadline:
        time.sleep(2)
        scheduler.tick(time.time())  # follows the job until it ends
    state = store.state("remote")
    runs = [h for h in state.history if h["workflow_id"] == fired[0]]
    assert runs and runs[-1]["outcome"].startswith("succeeded: version "), state.history
    assert f"workflow {fired[0]} succeeded" in jobs.client(head).get_job_logs(fired[0])
    job = jobs.client(head).get_job_info(fired[0])
    assert job.runtime_env["env_vars"]["GENPIPE_SCHEDULE_PROBE"] == "carried"
    assert str(mine) not in job.entrypoint
    scheduler.shutdown(time.time())


def test_local_cluster_up_status_down_stops_what_it_started(tmp_path, capsys):
    """`genpipe local-cluster` without S3 or workers: a head and an MLflow server, then gone."""
    folder = str(tmp_path / "lc")
    assert cli.main(["local-cluster", "up", "--dir", folder, "--workers", "0", "--cpus", "1", "--no-s3"]) == 0
    servers = local_cluster.described(Path(folder))
    try:
        assert set(servers) == {"mlflow", "ray-head"} and all(s.running() for s in servers.values())
        env = (Path(folder) / local_cluster.ENV_FILE).read_text()
        assert f"MLFLOW_TRACKING_URI={servers['mlflow'].url}" in env and "GENPIPE_ADDRESS=http://127.0.0.1:" in env
        assert cli.main(["local-cluster", "status", "--dir", folder]) == 0
        assert capsys.readouterr().out.count("running") == 2
        assert cli.main(["local-cluster", "status", "--dir", folder, "--json"]) == 0
        shown = json.loads(capsys.readouterr().out)
        assert {name: entry["running"] for name, entry in shown.items()} == {"mlflow": True, "ray-head": True}
        assert cli.main(["local-cluster", "up", "--dir", folder]) == 1  # one at a time per folder
    finally:
        assert cli.main(["local-cluster", "down", "--dir", folder]) == 0
    assert not any(server.running() for server in servers.values())
    assert local_cluster.described(Path(folder)) == {}
    kept = Path(servers["ray-head"].log).parent / "ray-head-logs"  # the head's own logs outlive it
    assert (kept / "gcs_server.out").is_file() and list(kept.glob("dashboard*.log")), sorted(kept.glob("*"))
