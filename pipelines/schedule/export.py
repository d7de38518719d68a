"""A schedule as a KubeRay RayCronJob: Kubernetes fires it, no genpipe scheduler runs.

The job runs the schedule's resolved config (carried in its runtime_env, as the scheduler's runs
get it) with the schedule's `--when`: a `data-changed` run computes the dataset's fingerprint
inside the job and ends as skipped when the champion was trained on that very data.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from pipelines.config import CONFIG_VARIABLE
from pipelines.config.composition import ENV_CONFIG_PREFIX
from pipelines.schedule.launchers import resolved_config
from pipelines.schedule.schedules import Schedule
from storage import is_local

JOB_TTL_S = 3600  # a finished job's RayJob is kept an hour for `kubectl logs`


class NotExportable(ValueError):
    """A schedule Kubernetes cannot run as it is; the message names the field."""


def kubernetes_name(name: str) -> str:
    """A schedule name as a Kubernetes object name (RFC 1123: lowercase, digits, '-', 63 at most)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", f"genpipe-{name}".lower()).strip("-")
    return cleaned[:52].rstrip("-")  # RayCronJob adds a timestamp suffix to the RayJobs it creates


def raycronjob(schedule: Schedule, cluster: str) -> dict[str, Any]:
    """The RayCronJob manifest that runs `schedule` on the RayCluster named `cluster`."""
    config = resolved_config(schedule)
    if config is None or schedule.resolved is None:
        raise NotExportable(f"{schedule.name}: added before configs were resolved: `genpipe schedule update` it first")
    if len(schedule.cron.split()) != 5:
        raise NotExportable(f"--cron: {schedule.cron!r} has a seconds field; Kubernetes cron takes 5 fields")
    if is_local(config.storage):
        raise NotExportable(f"storage: {config.storage} is a folder on this machine; a cluster's job needs s3://...")
    if not config.tracking_uri or config.tracking_uri.startswith(("sqlite:", "file:", "/")):
        raise NotExportable(
            "--tracking-uri: a job on a cluster needs an MLflow server (schedule update --tracking-uri)"
        )
    runtime_env = dict(config.cluster.runtime_env)  # the code is in the RayCluster's image
    env_vars = {**runtime_env.get("env_vars", {}), CONFIG_VARIABLE: schedule.resolved}
    entrypoint = f"genpipe {schedule.command} {ENV_CONFIG_PREFIX}{CONFIG_VARIABLE} --when {schedule.when}"
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCronJob",
        "metadata": {"name": kubernetes_name(schedule.name), "labels": {"app.kubernetes.io/managed-by": "genpipe"}},
        "spec": {
            "schedule": schedule.cron,
            "timeZone": schedule.timezone,
            "suspend": schedule.paused,
            "jobTemplate": {
                "clusterSelector": {"ray.io/cluster": cluster},
                "entrypoint": entrypoint,
                "runtimeEnvYAML": yaml.safe_dump({**runtime_env, "env_vars": env_vars}, sort_keys=False),
                "submissionMode": "K8sJobMode",
                "ttlSecondsAfterFinished": JOB_TTL_S,
            },
        },
    }


def raycronjob_yaml(schedule: Schedule, cluster: str) -> str:
    header = (
        f"# genpipe schedule {schedule.name} as a KubeRay RayCronJob (KubeRay >= 1.6), exported by\n"
        f"# `genpipe schedule export {schedule.name} --kubernetes`: kubectl apply -f this file.\n"
    )
    return header + yaml.safe_dump(raycronjob(schedule, cluster), sort_keys=False)
