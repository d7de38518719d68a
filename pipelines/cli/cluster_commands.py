"""`genpipe submit`, `genpipe jobs` and `genpipe local-cluster`: the cluster half of the CLI.

A submitted workflow is `genpipe run` as a Ray job whose id is the workflow id, so
`genpipe jobs logs ID` and `genpipe status ID --storage ...` name the same thing.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from pipelines.cli.output import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, say, say_json
from pipelines.cluster import jobs
from pipelines.cluster import local as local_cluster
from pipelines.cluster.submission import job_server, submit_workflow
from pipelines.config import ConfigError
from typed_errors import first_line


def _address(args: argparse.Namespace) -> str:
    return job_server(args.address, getattr(args, "token_file", None))


def cmd_submit(args: argparse.Namespace) -> int:
    """Validate and check everything here, then hand the resolved config to `genpipe run` on the cluster."""
    job = submit_workflow(
        args.config,
        args.set,
        storage=args.storage,
        tracking_uri=args.tracking_uri,
        address=args.address,
        workflow_id=args.workflow_id,
        token_file=args.token_file,
        echo=say,
    )
    say(f"job {job.job_id} submitted to {job.address}")
    say(f"  logs:   genpipe jobs logs {job.job_id} --address {job.address} --follow")
    say(f"  status: genpipe status {job.job_id} --storage {job.storage}")
    if not args.follow:
        return EXIT_OK
    return _follow(job.address, job.job_id)


def _follow(address: str, job_id: str) -> int:
    from ray.job_submission import JobStatus

    try:
        status = jobs.follow(address, job_id, say)
    except KeyboardInterrupt:
        say(f"stopped following; the job goes on (genpipe jobs stop {job_id} --address {address})")
        return EXIT_INTERRUPTED
    say(f"job {job_id}: {status.value}")
    return EXIT_OK if status == JobStatus.SUCCEEDED else EXIT_FAILED


def cmd_jobs_list(args: argparse.Namespace) -> int:
    listed = jobs.client(_address(args)).list_jobs()
    if args.json:
        fields = ("submission_id", "job_id", "status", "entrypoint", "start_time", "end_time", "message")
        say_json([{name: getattr(job, name, None) for name in fields} for job in listed])
        return EXIT_OK
    if not listed:
        say("no jobs")
    for job in sorted(listed, key=lambda j: j.start_time or 0):
        started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime((job.start_time or 0) / 1000))
        ended = job.end_time or time.time() * 1000
        took = f"{(ended - job.start_time) / 1000:.0f}s" if job.start_time else "-"
        name = job.submission_id or job.job_id
        say(f"{name}  {job.status.value:<9} {started} UTC  {took:>6}  {job.entrypoint[:60]}")
    return EXIT_OK


def cmd_jobs_logs(args: argparse.Namespace) -> int:
    address = _address(args)
    if args.follow:
        return _follow(address, args.job_id)
    job_client = jobs.client(address)
    _job_exists(job_client, args.job_id)
    print(job_client.get_job_logs(args.job_id), end="", flush=True)
    return EXIT_OK


def cmd_jobs_stop(args: argparse.Namespace) -> int:
    job_client = jobs.client(_address(args))
    _job_exists(job_client, args.job_id)
    stopped = job_client.stop_job(args.job_id)
    say(f"job {args.job_id}: {'stop requested' if stopped else 'already ended'}")
    return EXIT_OK


def _job_exists(job_client, job_id: str) -> None:
    try:
        job_client.get_job_info(job_id)
    except RuntimeError as exc:
        raise ConfigError([f"JOB_ID: no job {job_id!r} on this cluster ({first_line(exc, 120)})"]) from None


def cmd_local_cluster_up(args: argparse.Namespace) -> int:
    folder = Path(args.dir).resolve()
    started = time.monotonic()
    try:
        servers = local_cluster.up(folder, workers=args.workers, num_cpus=args.cpus, s3=not args.no_s3)
    except RuntimeError as exc:
        say(f"FAILED: {exc}")
        return EXIT_FAILED
    for name, server in servers.items():
        say(f"{name:<12} pid {server.pid:<8} {server.url}")
    say(f"up in {time.monotonic() - started:.0f}s; logs in {folder}")
    env_file = folder / local_cluster.ENV_FILE
    say(
        f"try it:\n  source {env_file}\n  genpipe submit quickstart --address $GENPIPE_ADDRESS "
        "--storage $GENPIPE_STORAGE --tracking-uri $MLFLOW_TRACKING_URI --follow"
    )
    return EXIT_OK


def cmd_local_cluster_down(args: argparse.Namespace) -> int:
    stopped = local_cluster.down(Path(args.dir).resolve())
    say(f"stopped {', '.join(stopped)}" if stopped else f"no local cluster described in {args.dir}")
    return EXIT_OK


def cmd_local_cluster_status(args: argparse.Namespace) -> int:
    servers = local_cluster.described(Path(args.dir).resolve())
    if args.json:
        say_json({name: {"pid": s.pid, "url": s.url, "running": s.running()} for name, s in servers.items()})
        return EXIT_OK
    if not servers:
        say(f"no local cluster described in {args.dir}")
    for name, server in servers.items():
        say(f"{name:<12} pid {server.pid:<8} {'running' if server.running() else 'STOPPED'}  {server.url}")
    return EXIT_OK
