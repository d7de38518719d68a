"""Chaos on the separated hosts: a scheduled workflow trains while a seeded script kills, at random
moments, the run's driver, a Ray worker node, the scheduler, the MLflow server and the S3 endpoint.

    python benchmarks/chaos_bench.py [--slots 3] [--faults 10] [--steps 300] [--seed 7] [--record]

The cluster is `pipelines/cluster/local.py`'s, each Ray node on a host of its own when mount
namespaces are available (else on this one, said in the report): moto behind a TCP relay (the S3
endpoint everything uses: killing the relay is an S3 outage whose objects survive, as S3's do), an
`mlflow server` (sqlite, artifacts in S3), a Ray head and a worker node, and `genpipe scheduler`
processes (on this machine) firing one schedule every few minutes as Ray jobs (`--overlap queue`,
`--retries 4`, `--retry-delay 20`).

Each fault is followed by what a platform does: the killed node, MLflow server, S3 endpoint and
scheduler come back after a pause (a supervisor, Kubernetes); a killed driver does not: the
scheduler resumes its workflow. The report, from the records the run leaves (MLflow, the schedule's
state, the process table):
- steps redone per fault: optimizer steps run twice (the run logs every step (`log_every: 1`), so a
  step run again is logged again), over the faults injected, and at each resume of training from a
  checkpoint, the steps logged past it before the fault; target at most one checkpoint interval.
  A lower bound: steps a killed rank 0 had not sent to MLflow yet are not counted (a few at most:
  its background sender sends each step as it comes);
- versions registered per slot (exactly one) and outcomes recorded per slot (exactly one; retries
  are noted as `retrying: ...`, not as outcomes);
- processes left behind after the cluster is stopped (zero).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pipelines.cluster import jobs  # noqa: E402
from pipelines.cluster import local as local_cluster  # noqa: E402
from pipelines.schedule.schedules import RETRYING, ScheduleStore  # noqa: E402

RESULTS = REPO / "benchmarks" / "RESULTS.md"
BUCKET = "chaos"
SCHEDULE = "chaos"
MODEL = "chaos-ddpm"
FAULTS = ("driver", "worker node", "scheduler", "MLflow server", "S3 endpoint")
BACK_AFTER_S = {"worker node": 8, "scheduler": 3, "MLflow server": 12, "S3 endpoint": 12}
TICK_S = 2


def run_sets(steps: int, checkpoint_every: int) -> list[str]:
    return [
        "model.params.timesteps=20",
        f"train.max_steps={steps}",
        f"train.checkpoint_every={checkpoint_every}",
        "train.log_every=1",  # every step in MLflow: a step run twice is logged twice
        "train.sample_every=0",
        "train.max_failures=3",
        "evaluate.num_samples=100",
        "evaluate.grid_size=16",
        "evaluate.classifier_epochs=2",
        f"register.model_name={MODEL}",
    ]


@dataclass
class Cluster:
    folder: Path
    own_hosts: bool
    env: dict[str, str]
    relay_port: int
    moto: local_cluster.Server
    mlflow: local_cluster.Server
    head: local_cluster.Server
    worker: local_cluster.Server
    relay: subprocess.Popen | None = None
    schedulers: list[subprocess.Popen] = field(default_factory=list)

    @property
    def storage(self) -> str:
        return f"s3://{BUCKET}/runs"

    def start_relay(self) -> None:
        relay = subprocess.Popen(
            [sys.executable, str(REPO / "tests" / "tcp_relay.py"), str(self.relay_port), self.moto.url.split("//")[1]],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert relay.stdout is not None and relay.stdout.readline().strip() == "listening"
        self.relay = relay

    def start_mlflow(self) -> None:
        port = int(self.mlflow.url.rsplit(":", 1)[1])
        self.mlflow = local_cluster.start_mlflow(
            self.folder, f"s3://{BUCKET}/mlartifacts", env=_s3_only(self.env), port=port
        )

    def start_worker(self) -> None:
        self.worker = local_cluster.start_ray_worker(
            self.folder, self.head, num_cpus=1, env=self.env, own_host=self.own_hosts
        )

    def start_scheduler(self) -> None:
        # On this machine, where genpipe is installed (a host of its own would need it installed there).
        command = [sys.executable, "-m", "pipelines.cli", "scheduler", "--storage", self.storage, "--tick", str(TICK_S)]
        log = (self.folder / "scheduler.log").open("ab")
        self.schedulers.append(
            subprocess.Popen(
                command,
                env={**os.environ, **self.env},
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                cwd=self.folder,
            )
        )

    def scheduler(self) -> subprocess.Popen:
        return self.schedulers[-1]


def _s3_only(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k.startswith("AWS_")}


def start_cluster(folder: Path) -> Cluster:
    own_hosts = local_cluster.own_hosts_unavailable() is None
    moto = local_cluster.start_moto(folder)
    relay_port = local_cluster.free_port()
    direct = local_cluster.s3_environment(moto)
    local_cluster.create_bucket(direct, BUCKET)
    env = {
        **direct,
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{relay_port}",
        "AWS_MAX_ATTEMPTS": "3",  # an outage fails a step in seconds; the scheduler's resume is the retry
        "RAY_AUTH_TOKEN": _token(),
    }
    cluster = Cluster(folder, own_hosts, env, relay_port, moto, moto, moto, moto)
    cluster.start_relay()
    cluster.mlflow = local_cluster.start_mlflow(folder, f"s3://{BUCKET}/mlartifacts", env=_s3_only(env))
    cluster.env["MLFLOW_TRACKING_URI"] = cluster.mlflow.url
    cluster.head = local_cluster.start_ray_head(folder, num_cpus=2, env=cluster.env, own_host=own_hosts)
    cluster.start_worker()
    return cluster


def _token() -> str:
    token_file = jobs.DEFAULT_TOKEN_FILE
    if not token_file.is_file():
        token_file.parent.mkdir(parents=True, exist_ok=True)
        token_file.write_text(os.urandom(16).hex())
        token_file.chmod(0o600)
    return token_file.read_text().strip()


def add_schedule(cluster: Cluster, steps: int, checkpoint_every: int, every_s: int) -> None:
    sets = [item for setting in run_sets(steps, checkpoint_every) for item in ("--set", setting)]
    cron = f"*/{every_s} * * * * *" if every_s < 60 else f"0 */{every_s // 60} * * * *"
    command = [
        sys.executable, "-m", "pipelines.cli", "schedule", "add", SCHEDULE, "quickstart", "--cron", cron,
        "--address", cluster.head.url, "--storage", cluster.storage, "--tracking-uri", cluster.mlflow.url,
        "--overlap", "queue", "--retries", "4", "--retry-delay", "20", *sets,
    ]  # fmt: skip
    subprocess.run(command, check=True, env={**os.environ, **cluster.env}, capture_output=True, cwd=REPO)
    store = ScheduleStore(cluster.storage)  # its first slot now, not up to `every_s` from now
    store.put(store.get(SCHEDULE).model_copy(update={"created_at": time.time() - every_s}))


def _driver_pids(cluster: Cluster) -> list[int]:
    """The running job drivers (`genpipe run` of a fired slot) on the head."""
    found = subprocess.run(["pgrep", "-f", "pipelines.cli run env:"], capture_output=True, text=True).stdout.split()
    return [int(pid) for pid in found if int(pid) != os.getpid()]


def inject(kind: str, cluster: Cluster, say) -> bool:
    """One fault; False when there was nothing to hit (no driver running)."""
    if kind == "driver":
        pids = _driver_pids(cluster)
        if not pids:
            return False
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    elif kind == "worker node":
        cluster.worker.stop(timeout=0)
        time.sleep(BACK_AFTER_S[kind])
        cluster.start_worker()
    elif kind == "scheduler":
        scheduler = cluster.scheduler()
        os.killpg(scheduler.pid, signal.SIGKILL)
        scheduler.wait()
        time.sleep(BACK_AFTER_S[kind])
        cluster.start_scheduler()
    elif kind == "MLflow server":
        cluster.mlflow.stop(timeout=0)
        time.sleep(BACK_AFTER_S[kind])
        cluster.start_mlflow()
    else:
        assert cluster.relay is not None
        cluster.relay.kill()
        cluster.relay.wait()
        time.sleep(BACK_AFTER_S[kind])
        cluster.start_relay()
    say(f"fault: {kind} killed" + ("" if kind == "driver" else f", back after {BACK_AFTER_S[kind]} s"))
    return True


def state_of(cluster: Cluster):
    with contextlib.suppress(Exception):
        return ScheduleStore(cluster.storage).state(SCHEDULE)
    return None


def finished_slots(cluster: Cluster) -> list[dict]:
    state = state_of(cluster)
    if state is None:
        return []
    return [h for h in state.history if h["workflow_id"] and not h["outcome"].startswith(RETRYING)]


def measure(cluster: Cluster, steps: int) -> dict:
    import mlflow
    from mlflow import MlflowClient

    state = state_of(cluster)
    history = state.history if state else []
    outcomes = Counter(h["workflow_id"] for h in history if h["workflow_id"] and not h["outcome"].startswith(RETRYING))
    retries = [h for h in history if h["outcome"].startswith(RETRYING)]
    client = MlflowClient(cluster.mlflow.url)
    versions = client.search_model_versions(f"name='{MODEL}'")
    per_run = Counter(version.run_id for version in versions)
    executed, runs, redone_at_resumes = 0, [], []
    for run in mlflow.search_runs(search_all_experiments=True, output_format="list"):
        logged = client.get_metric_history(run.info.run_id, "train/lr")
        if not logged:
            continue
        executed += len(logged)
        runs.append(run.info.run_id)
        for resume in client.get_metric_history(run.info.run_id, "train/resumed_from_step"):
            reached = max((m.step for m in logged if m.timestamp < resume.timestamp), default=0)
            redone_at_resumes.append(max(0, reached - int(resume.value)))
    return {
        "slots": len(outcomes),
        "outcomes": dict(Counter(h["outcome"].split(":")[0] for h in history if not h["outcome"].startswith(RETRYING))),
        "outcomes_per_slot": sorted(set(outcomes.values())),
        "retries": len(retries),
        "versions": len(versions),
        "versions_per_run": sorted(set(per_run.values())),
        "steps_executed": executed,
        "steps_needed": steps * len(runs),
        "redone_at_resumes": redone_at_resumes,
    }


PROCESS_KINDS = ("ray", "raylet", "gcs_server", "mlflow", "moto", "tcp_relay", "pipelines.cli", "gunicorn", "uvicorn")


def processes() -> dict[int, str]:
    table = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.splitlines()
    return {int(line.split(None, 1)[0]): line.split(None, 1)[1] for line in table if len(line.split(None, 1)) == 2}


def leaked(before: dict[int, str]) -> list[str]:
    """Processes started since the benchmark began (not there before it) that are still alive
    after its stop and are of a kind it starts: Ray, MLflow, moto, the relay, genpipe."""
    return [
        f"{pid} {args[:150]}"
        for pid, args in processes().items()
        if pid not in before and pid != os.getpid() and any(kind in args for kind in PROCESS_KINDS)
    ]


def _stop_once(*_: object) -> None:
    """SIGTERM: stop, once (a second one must not cut the cluster's own stop short)."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    sys.exit(143)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slots", type=int, default=3)
    parser.add_argument("--faults", type=int, default=10)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--checkpoint-every", type=int, default=50)
    parser.add_argument("--every", type=int, default=240, help="seconds between slots")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--limit", type=float, default=40 * 60, help="seconds before the benchmark gives up")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    signal.signal(signal.SIGTERM, _stop_once)
    folder = Path(tempfile.mkdtemp(prefix="genpipe-chaos-"))
    before = processes()
    started = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - started:6.0f} s] {text}", flush=True)

    say(f"cluster in {folder}")
    cluster = start_cluster(folder)
    os.environ.update(cluster.env)  # this process reads the schedule's state and MLflow as the submitter does
    injected: Counter = Counter()
    try:
        say(f"up: Ray head {cluster.head.url}, nodes on hosts of their own: {cluster.own_hosts}")
        add_schedule(cluster, args.steps, args.checkpoint_every, args.every)
        cluster.start_scheduler()
        plan = [FAULTS[i % len(FAULTS)] for i in range(args.faults)]
        rng.shuffle(plan)
        while time.monotonic() - started < args.limit:
            done = finished_slots(cluster)
            if len(done) >= args.slots and not plan:
                break
            state = state_of(cluster)
            fired = {h["workflow_id"] for h in state.history if h["workflow_id"]} if state else set()
            if state and state.running:
                fired.add(state.running.workflow_id)
            if len(fired) >= args.slots and not plan:  # every fault has landed: no more slots
                with contextlib.suppress(Exception):  # no more slots: pause the schedule
                    store = ScheduleStore(cluster.storage)
                    store.put(store.get(SCHEDULE).model_copy(update={"paused": True}))
            time.sleep(rng.uniform(20, 50))
            if plan and inject(plan[0], cluster, say):
                injected[plan.pop(0)] += 1
            elif plan and plan[0] == "driver" and len(plan) > 1:
                plan.append(plan.pop(0))  # no run going now: another fault first
            state = state_of(cluster)
            say(f"slots done {len(finished_slots(cluster))}/{args.slots}; running: "
                f"{state.running.workflow_id if state and state.running else '-'}")  # fmt: skip
        report = measure(cluster, args.steps)
    finally:
        for scheduler in cluster.schedulers:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(scheduler.pid, signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                scheduler.wait(timeout=30)
        for server in (cluster.worker, cluster.head, cluster.mlflow, cluster.moto):
            server.stop()
        if cluster.relay:
            cluster.relay.kill()
    time.sleep(3)
    left = leaked(before)
    faults = sum(injected.values())
    redone = report["steps_executed"] - report["steps_needed"]
    lines = [
        f"faults injected: {faults} ({', '.join(f'{k} {v}' for k, v in sorted(injected.items()))})",
        f"slots: {report['slots']}, outcomes: {report['outcomes']}, outcomes per slot: {report['outcomes_per_slot']}",
        f"resumes by the scheduler: {report['retries']}",
        f"versions registered: {report['versions']} (per run: {report['versions_per_run']})",
        f"optimizer steps: {report['steps_executed']} run for {report['steps_needed']} needed: {redone} redone, "
        f"{redone / max(faults, 1):.1f} per fault (checkpoint interval {args.checkpoint_every}); "
        f"training resumed from a checkpoint {len(report['redone_at_resumes'])} times, redoing "
        f"{report['redone_at_resumes']} steps",
        f"processes left behind: {len(left)}",
        f"wall time: {time.monotonic() - started:.0f} s; hosts of their own: {cluster.own_hosts}",
    ]
    print("\n".join(lines))
    for line in left:
        print("  left:", line)
    if args.record:
        stamp = datetime.now(UTC).strftime("%Y-%m-%d")
        with RESULTS.open("a") as handle:
            handle.write(
                f"\n## Chaos on the separated hosts ({stamp}, {platform.node()}, {os.cpu_count()} cores)\n\n"
                f"`python benchmarks/chaos_bench.py --slots {args.slots} --faults {args.faults} --steps {args.steps} "
                f"--seed {args.seed}`\n\n" + "\n".join(f"- {line}" for line in lines) + "\n"
            )


if __name__ == "__main__":
    main()
