"""The cluster path on one machine: a Ray head and worker nodes, an `mlflow server` and an S3
(moto) server, each a real process on 127.0.0.1 in its own process group.

`genpipe local-cluster up|down|status` (and `infra/local-cluster.sh`) start and stop them; the
integration tests start the same servers through the same functions. A server is stopped by its
process group id, never by `ray stop`, which kills every Ray process on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil

from pipelines.train.capacity import AUTOSCALING_CONFIG_VARIABLE
from pipelines.train.startup import EMBEDDED_RAY_VARIABLE

BIN = Path(sys.executable).parent
REPO_ROOT = Path(__file__).resolve().parents[2]  # the checkout, or site-packages when installed
HOST = "127.0.0.1"
START_TIMEOUT_S = 120
MOTO_REGION = "us-east-1"
RAY_LOGS_KEPT = ("dashboard*.log", "gcs_server.out", "raylet.out", "job-driver-*.log", "runtime_env*.log")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


@dataclass
class Server:
    """One started server: its process group, where it listens, its log. `started` is the group
    leader's start time: a test session starts ~30,000 processes, so Linux (pid_max 32768) hands
    a dead server's pid to a new process within minutes, and a signal by pid alone could land on
    whatever got it (None: a state file from before genpipe recorded it)."""

    name: str
    pid: int
    url: str
    log: str
    extra: dict[str, str] = field(default_factory=dict)
    started: float | None = None

    def running(self) -> bool:
        _reap(self.pid)  # a child that exited stays a zombie, and "running", until reaped
        if self._pid_reused():
            return False  # the leader is gone, so its group is: a pid in use as a group id is never handed out
        try:
            os.killpg(self.pid, 0)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def _pid_reused(self) -> bool:
        try:
            return self.started is not None and psutil.Process(self.pid).create_time() != self.started
        except psutil.Error:
            return False  # no process has the pid: the leader exited, its group may live on

    def stop(self, timeout: float = 10) -> None:
        """SIGTERM the process group, SIGKILL what is left after `timeout` (a Ray head lingers ~30 s).
        A Ray head's own logs are kept beside its console log first: its temp folder goes with it
        (on a host of its own, with the whole namespace)."""
        self._keep_ray_logs()
        # Those in sessions of their own too (a Ray job's driver is one), held as psutil processes:
        # their kill checks that the pid still names the same process.
        strays = _descendants(self.pid) if self.running() else []
        for signum in (signal.SIGTERM, signal.SIGKILL):
            if not self.running():
                break
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signum)
            deadline = time.monotonic() + timeout
            while self.running() and time.monotonic() < deadline:
                time.sleep(0.2)
        _reap(self.pid)
        for stray in strays:  # what outlived its group: a job driver left to wait for a GCS that is gone
            with contextlib.suppress(psutil.Error):
                stray.kill()
        temp_dir = self.extra.get("temp_dir")
        if temp_dir:
            shutil.rmtree(temp_dir, ignore_errors=True)

    def _keep_ray_logs(self) -> None:
        """The job server's, GCS's and the jobs' logs of a Ray head, into `<name>-logs/` beside its
        console log: what tells why a submission failed, after the head is gone."""
        temp_dir = self.extra.get("temp_dir")
        if not temp_dir or not self.running():
            return
        root = self.extra.get("root", "/")
        latest = Path(root, temp_dir.lstrip("/"), "session_latest")
        # An absolute link, meant inside the node's own view of the files (its host's, or its
        # mount namespace's): followed from here it would land in this machine's /tmp.
        with contextlib.suppress(OSError):
            latest = Path(root, os.readlink(latest).lstrip("/"))
        logs = latest / "logs"
        kept = Path(self.log).parent / f"{self.name}-logs"
        for pattern in RAY_LOGS_KEPT:
            for found in logs.glob(pattern):
                with contextlib.suppress(OSError):  # a log rotated or the node gone meanwhile
                    kept.mkdir(exist_ok=True)
                    shutil.copyfile(found, kept / found.name)


# A node on "a host of its own" (`own_host=True`): a Linux mount namespace (`unshare`, as root) in
# which /tmp, HOME and genpipe's checkout are empty tmpfs, and only the Python environment (and the
# interpreter it was made from) is mounted back. Nodes then share nothing with the submitter or
# each other but the network, as on a real cluster: a path that exists only on the submitting
# machine is not there, and genpipe's code is there only if a job ships it.
OWN_HOST_SCRIPT = """\
set -e
fd=3  # each kept path held open, so it can be mounted back from the old view once hidden
while [ "$1" != --hide ]; do eval "exec $fd<\\"\\$1\\""; eval "kept$fd=\\"\\$1\\""; fd=$((fd + 1)); shift; done
shift
mount -t tmpfs genpipe-host /tmp
while [ "$1" != -- ]; do
    if [ -d "$1" ]; then mount -t tmpfs genpipe-host "$1"; fi  # (one under /tmp is gone already)
    shift
done
shift
i=3
while [ $i -lt $fd ]; do
    eval "path=\\"\\$kept$i\\""
    mkdir -p "$path"
    mount --no-canonicalize --bind /proc/self/fd/$i "$path"  # canonicalized, it would name the new view
    eval "exec $i<&-"
    i=$((i + 1))
done
cd /
exec "$@"
"""


def on_own_host(command: list[str]) -> list[str]:
    """`command` run in a mount namespace of its own (see OWN_HOST_SCRIPT)."""
    keep = [sys.prefix, sys.base_prefix]  # the environment; its interpreter may live under HOME
    hidden = [str(Path.home()), str(REPO_ROOT)]
    script = ["sh", "-c", OWN_HOST_SCRIPT, "sh", *keep, "--hide", *hidden, "--"]
    return ["unshare", "--mount", "--propagation", "private", "--", *script, *command]


def own_hosts_unavailable() -> str | None:
    """Why nodes cannot have hosts of their own here (None when they can): mount namespaces
    need Linux, util-linux's `unshare` and root (CAP_SYS_ADMIN)."""
    if shutil.which("unshare") is None:
        return "no `unshare` (util-linux) on this machine"
    probe = subprocess.run(on_own_host(["true"]), capture_output=True, text=True, timeout=30)
    if probe.returncode != 0:
        return f"mount namespaces refused: {(probe.stderr.strip().splitlines() or ['?'])[-1]} (root needed)"
    return None


def _descendants(pid: int) -> list[psutil.Process]:
    """Every process below `pid` in the process tree, whatever its session or group."""
    with contextlib.suppress(psutil.Error):
        return psutil.Process(pid).children(recursive=True)
    return []


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def _spawn(
    name: str, command: list[str], folder: Path, env: dict[str, str] | None = None
) -> tuple[int, str, float | None]:
    """Start `command` in a process group of its own, its output in `<name>.log`; its pid, log
    and start time (None when it is gone already: the caller's wait reports its log)."""
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / f"{name}.log"
    with log.open("ab") as handle:
        process = subprocess.Popen(
            command,
            stdout=handle,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(env or {})},
            cwd=folder,
        )
    started = None
    with contextlib.suppress(psutil.Error):
        started = psutil.Process(process.pid).create_time()
    return process.pid, str(log), started


def wait_until_up(server: Server, probe_url: str, timeout: float = START_TIMEOUT_S) -> Server:
    """Poll `probe_url` until the server answers (any HTTP status counts: a server that refuses
    a request without a token is up); raise with the log's tail if it dies or never answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(probe_url, timeout=2)
            return server
        except urllib.error.HTTPError:
            return server
        except OSError:
            if not server.running() or time.monotonic() > deadline:
                server.stop(timeout=5)
                tail = Path(server.log).read_text(errors="replace")[-3000:]
                raise RuntimeError(f"{server.name} did not start on {server.url}:\n{tail}") from None
            time.sleep(0.5)


def start_moto(folder: Path, *, authenticated: bool = False) -> Server:
    """A moto S3 server. `authenticated`: requests must be signed with a key moto knows; the key
    (created here through moto's IAM, with an allow-all policy) is in `extra`."""
    port = free_port()
    env = {"INITIAL_NO_AUTH_ACTION_COUNT": "3"} if authenticated else {}
    pid, log, started = _spawn("moto", [str(BIN / "moto_server"), "-H", HOST, "-p", str(port)], folder, env)
    server = wait_until_up(
        Server("moto", pid, f"http://{HOST}:{port}", log, started=started), f"http://{HOST}:{port}/moto-api/"
    )
    if authenticated:
        server.extra.update(_moto_access_key(server.url))
    return server


def _moto_access_key(endpoint: str) -> dict[str, str]:
    """The three unauthenticated actions moto allows: a user, its policy, its key."""
    import boto3

    iam = boto3.client(
        "iam",
        endpoint_url=endpoint,
        region_name=MOTO_REGION,
        aws_access_key_id="bootstrap",
        aws_secret_access_key="bootstrap",
    )
    iam.create_user(UserName="genpipe")
    iam.put_user_policy(
        UserName="genpipe",
        PolicyName="all",
        PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
        ),
    )
    key = iam.create_access_key(UserName="genpipe")["AccessKey"]
    return {"AWS_ACCESS_KEY_ID": key["AccessKeyId"], "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"]}


def s3_environment(moto: Server) -> dict[str, str]:
    """The standard AWS variables that point boto3, s3fs and MLflow at the moto server."""
    return {
        "AWS_ENDPOINT_URL": moto.url,
        "AWS_DEFAULT_REGION": MOTO_REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        **moto.extra,
    }


def start_mlflow(
    folder: Path,
    artifacts: str,
    *,
    env: dict[str, str] | None = None,
    admin_password: str | None = None,
    port: int | None = None,
) -> Server:
    """`mlflow server` with an sqlite store; artifacts proxied to `artifacts` (a folder or
    s3://...). `admin_password`: the basic-auth app, with `admin` as its only user. `port`: a given
    one (a server started again where its clients expect it), else a free one."""
    port = port or free_port()
    command = [
        str(BIN / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{folder / 'mlflow.db'}",
        "--artifacts-destination",
        artifacts,
        "--host",
        HOST,
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    # MLflow 3's server also starts a job runner for its GenAI jobs (scorers, trace roll-ups): a
    # pool of huey consumer processes, ~1.7 GB in all, that genpipe never gives work.
    server_env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", **(env or {}), "MLFLOW_DISABLE_TELEMETRY": "true"}
    if admin_password:
        ini = folder / "basic_auth.ini"
        ini.parent.mkdir(parents=True, exist_ok=True)
        ini.write_text(
            f"[mlflow]\ndefault_permission = READ\ndatabase_uri = sqlite:///{folder / 'auth.db'}\n"
            "admin_username = admin\n"
            "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n"
            # Each request otherwise checks the password's PBKDF2 hash again: ~0.29 s of a core
            # per request (measured), most of the server's work during a run. One worker process
            # (--workers 1) and password changes through the API invalidate its cache at once.
            "auth_cache_ttl_seconds = 300\n"
        )
        command += ["--app-name", "basic-auth"]
        server_env.update(
            MLFLOW_AUTH_CONFIG_PATH=str(ini),
            MLFLOW_AUTH_ADMIN_PASSWORD=admin_password,
            MLFLOW_FLASK_SERVER_SECRET_KEY=secrets.token_hex(16),
        )  # CSRF protection
    pid, log, started = _spawn("mlflow", command, folder, server_env)
    url = f"http://{HOST}:{port}"
    return wait_until_up(Server("mlflow", pid, url, log, started=started), f"{url}/health")


def _ray_node_ports() -> list[str]:
    # Ray's one fixed default (the dashboard agent's HTTP port, 52365) clashes with any other Ray on
    # this machine; 0 lets each agent bind a free port itself and publish it in the GCS, where the
    # job server looks it up. (Ports picked here and passed on raced the other Rays started meanwhile:
    # an agent that lost its port left the job server forwarding submissions to nothing.) The agent's
    # gRPC, runtime-env and metrics ports are already chosen by Ray when not given.
    return ["--dashboard-agent-listen-port", "0"]


def _head_command(port: int, dashboard: int, temp_dir: str, num_cpus: int, *more: str) -> list[str]:
    """`ray start --head --block` on 127.0.0.1 with its dashboard (the Jobs API) and its own
    --temp-dir."""
    return [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--port",
        str(port),
        "--node-ip-address",
        HOST,
        "--dashboard-host",
        HOST,
        "--dashboard-port",
        str(dashboard),
        "--include-dashboard",
        "true",
        "--num-cpus",
        str(num_cpus),
        "--temp-dir",
        temp_dir,
        "--ray-client-server-port",
        str(free_port()),
        *more,
        *_ray_node_ports(),
    ]


def start_ray_head(folder: Path, num_cpus: int, env: dict[str, str] | None = None, own_host: bool = False) -> Server:
    """`ray start --head --block` with its dashboard (the Jobs API) on 127.0.0.1; `own_host`: in a
    mount namespace of its own (its files then under `extra["root"]`, /proc/PID/root).

    Its own short --temp-dir keeps its `ray_current_cluster` file out of /tmp/ray, where a later
    plain `ray.init()` on this machine would find it and join a cluster that is gone."""
    port, dashboard = free_port(), free_port()
    temp_dir = tempfile.mkdtemp(prefix="rayhead-", dir="/tmp")  # Ray's socket paths must stay short
    command = _head_command(port, dashboard, temp_dir, num_cpus)
    pid, log, started = _spawn("ray-head", on_own_host(command) if own_host else command, folder, _ray_env(env))
    extra = {"gcs_address": f"{HOST}:{port}", "temp_dir": temp_dir, "root": f"/proc/{pid}/root" if own_host else "/"}
    head = Server("ray-head", pid, f"http://{HOST}:{dashboard}", log, extra, started)
    return wait_until_up(head, f"{head.url}/api/version")


def start_autoscaling_head(
    folder: Path, node_types: dict[str, dict[str, Any]], env: dict[str, str] | None = None
) -> Server:
    """A Ray head with no CPUs of its own and an autoscaler that starts and stops worker nodes on
    this machine as the work asks for them: Ray's fake multi-node provider (the one Ray's own
    autoscaler tests use), each node a real raylet with the resources of its type (GPUs included,
    as a number). `node_types`: {name: {"resources": {...}, "max_workers": N}}.

    (`ray.cluster_utils.AutoscalingCluster` does the same for Ray's tests, but its config template
    is not in the wheel and its start runs `ray stop --force`, which stops every Ray on the machine.)
    Its job drivers and clients find the node types through GENPIPE_AUTOSCALING_CONFIG, as a
    cluster launcher's head keeps them in ~/ray_bootstrap_config.yaml (pipelines/train/capacity.py)."""
    port = free_port()
    gcs_address = f"{HOST}:{port}"
    temp_dir = tempfile.mkdtemp(prefix="rayauto-", dir="/tmp")
    config_path = Path(temp_dir) / "autoscaling.json"
    config_path.write_text(json.dumps(_fake_autoscaling_config(gcs_address, node_types)))
    dashboard = free_port()
    command = _head_command(port, dashboard, temp_dir, 0, f"--autoscaling-config={config_path}")
    head_env = {
        **(env or {}),
        "RAY_FAKE_CLUSTER": "1",  # the fake provider refuses to run without it
        "AUTOSCALER_UPDATE_INTERVAL_S": "1",  # decide every second, not every 5
        AUTOSCALING_CONFIG_VARIABLE: str(config_path),
    }
    pid, log, started = _spawn("ray-autoscaling-head", command, folder, _ray_env(head_env))
    extra = {"gcs_address": gcs_address, "temp_dir": temp_dir, "root": "/", "autoscaling_config": str(config_path)}
    head = Server("ray-autoscaling-head", pid, f"http://{HOST}:{dashboard}", log, extra, started)
    return wait_until_up(head, f"{head.url}/api/version")


def _fake_autoscaling_config(gcs_address: str, node_types: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """The cluster launcher's config, as much of it as the fake provider reads."""
    workers = {
        name: {"resources": spec["resources"], "node_config": {}, "min_workers": 0, "max_workers": spec["max_workers"]}
        for name, spec in node_types.items()
    }
    return {
        "cluster_name": "genpipe-autoscaling",
        "max_workers": sum(spec["max_workers"] for spec in node_types.values()),
        "provider": {
            "type": "fake_multinode",
            "gcs_address": gcs_address,
            "use_node_id_as_ip": True,
            "disable_node_updaters": True,
            "disable_launch_config_check": True,
        },
        "available_node_types": {
            "ray.head.default": {"resources": {}, "node_config": {}, "max_workers": 0},
            **workers,
        },
        "head_node_type": "ray.head.default",
        "upscaling_speed": 1.0,
        "idle_timeout_minutes": 1,
        **{key: {} for key in ("auth", "docker", "file_mounts")},
        **{
            key: []
            for key in (
                "initialization_commands",
                "setup_commands",
                "head_setup_commands",
                "worker_setup_commands",
                "head_start_ray_commands",
                "worker_start_ray_commands",
                "cluster_synced_files",
                "rsync_exclude",
                "rsync_filter",
            )
        },
        "file_mounts_sync_continuously": False,
    }


def start_ray_worker(
    folder: Path,
    head: Server,
    num_cpus: int,
    env: dict[str, str] | None = None,
    index: int = 1,
    own_host: bool = False,
) -> Server:
    """A second raylet joining `head` (`ray start --address`): a real multi-node cluster;
    `own_host`: in a mount namespace of its own."""
    name = f"ray-worker-{index}"
    command = [
        str(BIN / "ray"),
        "start",
        "--block",
        "--address",
        head.extra["gcs_address"],
        "--node-ip-address",
        HOST,
        "--num-cpus",
        str(num_cpus),
        *_ray_node_ports(),
    ]
    pid, log, started = _spawn(name, on_own_host(command) if own_host else command, folder, _ray_env(env))
    worker = Server(name, pid, head.extra["gcs_address"], log, started=started)
    _wait_for_nodes(head, worker, expected=index + 1)
    return worker


def _ray_env(env: dict[str, str] | None) -> dict[str, str]:
    # The Ray processes (and the jobs they run) must find genpipe's own `python`, `ray`, `genpipe`.
    # A node told to stop drains for 30 s first by default, so that Ray Serve's proxies can move
    # traffic off it: a machine's own cluster serves nothing, and `down` waited it out per node.
    drain = {"RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": os.environ.get("RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S", "0")}
    return {
        **drain,
        **(env or {}),
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_ADDRESS": "",
        "RAY_AUTH_MODE": "token",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        EMBEDDED_RAY_VARIABLE: "",  # a cluster's node, even when started by a process that runs its own Ray
    }


def _wait_for_nodes(head: Server, worker: Server, expected: int) -> None:
    from ray.util.state.exception import RayStateApiException

    from pipelines.cluster import jobs

    jobs.use_token()  # the head has written ~/.ray/auth_token by now
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        try:
            alive = jobs.alive_nodes(head.url)
        except (OSError, RuntimeError, RayStateApiException):  # a busy head's state API drops requests
            alive = 0
        if alive >= expected:
            return
        if not worker.running() or time.monotonic() > deadline:
            worker.stop(timeout=5)
            raise RuntimeError(
                f"{worker.name} did not join {head.url}:\n{Path(worker.log).read_text(errors='replace')[-3000:]}"
            )
        time.sleep(1)


# `genpipe local-cluster`: the same servers, left running in the background between commands.

STATE_FILE = "servers.json"
ENV_FILE = "env.sh"
BUCKET = "genpipe"


def up(folder: Path, workers: int = 1, num_cpus: int = 2, s3: bool = True) -> dict[str, Server]:
    """Start everything, write `servers.json` (ids) and `env.sh` (the variables a client needs)."""
    if (folder / STATE_FILE).exists():
        raise RuntimeError(
            f"a local cluster is already described in {folder / STATE_FILE}: `genpipe local-cluster down` first"
        )
    folder.mkdir(parents=True, exist_ok=True)
    servers: dict[str, Server] = {}
    try:
        env: dict[str, str] = {}
        artifacts = str(folder / "mlartifacts")
        if s3:
            servers["moto"] = start_moto(folder)
            env = s3_environment(servers["moto"])
            create_bucket(env, BUCKET)
            artifacts = f"s3://{BUCKET}/mlartifacts"
        servers["mlflow"] = start_mlflow(folder, artifacts, env=env)
        servers["ray-head"] = start_ray_head(folder, num_cpus, env)
        for index in range(1, workers + 1):
            servers[f"ray-worker-{index}"] = start_ray_worker(folder, servers["ray-head"], num_cpus, env, index)
    except BaseException:
        for server in reversed(servers.values()):
            server.stop(timeout=10)
        raise
    state = {name: asdict(server) for name, server in servers.items()}
    (folder / STATE_FILE).write_text(json.dumps(state, indent=2))
    exports = {
        **env,
        "GENPIPE_ADDRESS": servers["ray-head"].url,
        "MLFLOW_TRACKING_URI": servers["mlflow"].url,
        "GENPIPE_STORAGE": f"s3://{BUCKET}/runs" if s3 else str(folder / "storage"),
        "RAY_AUTH_MODE": "token",
    }
    (folder / ENV_FILE).write_text("".join(f"export {k}={v}\n" for k, v in exports.items()))
    return servers


def create_bucket(env: dict[str, str], bucket: str) -> str:
    """Create `bucket` with the credentials and endpoint of `env` (see s3_environment); its name."""
    import boto3

    boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        region_name=env["AWS_DEFAULT_REGION"],
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
    ).create_bucket(Bucket=bucket)
    return bucket


def described(folder: Path) -> dict[str, Server]:
    path = folder / STATE_FILE
    if not path.exists():
        return {}
    return {name: Server(**fields) for name, fields in json.loads(path.read_text()).items()}


def down(folder: Path) -> list[str]:
    """Stop the servers `up` started (workers before the head), by their process group ids."""
    servers = described(folder)
    for server in reversed(servers.values()):
        server.stop()
    (folder / STATE_FILE).unlink(missing_ok=True)
    (folder / ENV_FILE).unlink(missing_ok=True)
    return list(servers)
