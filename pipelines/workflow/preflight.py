"""Checks that run before any compute: a missing bucket, refused credentials, an MLflow server or
a Ray cluster that cannot be reached are reported in seconds, not after an hour of training.

Each check tries the real thing once, without the long retry loops the clients use during a
run (botocore's and MLflow's retries would otherwise turn a typo into minutes of waiting). Messages
name the setting and the reason, never a credential.
"""

from __future__ import annotations

import glob
import os
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

from data_prep.config import DataConfig
from pipelines.config import ConfigError, PipelineConfig
from pipelines.config.cluster import without_credentials
from pipelines.train.capacity import cluster_capacity, shown_need, worker_resources
from storage import filesystem, is_local, join
from storage.stores import missing_driver, store_of
from typed_errors import first_line

# A service that is not there refuses the connection at once; this bounds one that is there but
# slow: an MLflow server with basic auth checks a password hash on every request, and on a busy
# 2-core machine the probe took over 5 s now and then (a false "cannot reach").
PROBE_TIMEOUT_S = 15


class PreflightError(ConfigError):
    """A service the run needs is missing, unreachable or refuses our credentials (exit 2)."""


def _probing(uri: str) -> tuple[Any, str]:
    """The filesystem for `uri` with one quick try: no retry loop, short timeouts."""
    storage_options: dict[str, Any] = {"skip_instance_cache": True}
    if uri.startswith(("s3://", "s3a://")):
        storage_options["config_kwargs"] = {
            "retries": {"max_attempts": 2},
            "connect_timeout": PROBE_TIMEOUT_S,
            "read_timeout": PROBE_TIMEOUT_S,
        }
    return filesystem(uri, **storage_options) if not is_local(uri) else filesystem(uri)


def check_storage(uri: str, field: str = "storage", write: bool = True) -> None:
    """Write and delete a probe object: proves the bucket exists and the credentials may write.
    `write=False` (commands that only read) lists the bucket instead."""
    if is_local(uri):
        return
    store, missing = store_of(uri), missing_driver(uri)
    if missing:
        raise PreflightError([f"{field}: {uri}: {missing}"])
    fs, path = _probing(uri)
    probe = join(path, f".genpipe-probe-{uuid.uuid4().hex}")
    bucket = path.split("/", 1)[0]
    try:
        if write:
            fs.pipe_file(probe, b"genpipe can write here")
            fs.rm_file(probe)
        else:
            fs.ls(bucket)
    except FileNotFoundError:
        raise PreflightError([f"{field}: {uri}: bucket {bucket!r} does not exist"]) from None
    except PermissionError as exc:
        raise PreflightError(
            [f"{field}: {uri}: the credentials were refused ({_first_line(exc)}); check {store.credentials}"]
        ) from None
    except Exception as exc:  # botocore, aiohttp and OS errors share no base class
        raise PreflightError(
            [
                f"{field}: {uri}: cannot reach it ({type(exc).__name__}: "
                f"{_first_line(exc)}); check {store.endpoint}, the credentials ({store.credentials}) and the network"
            ]
        ) from None


def check_source(data: DataConfig) -> None:
    """Each path the data source names exists (a local glob matches a file; an object store's glob:
    the folder it starts from exists), so a typo is exit 2 naming the field, not a prepare step that
    fails after Ray and MLflow started. Listing a bucket for a glob is prepare's work: it can be large."""
    for field, uri in data.source.locations().items():
        where = uri.split("*", 1)[0].rsplit("/", 1)[0] if glob.has_magic(uri) else uri
        fs, path = _probing(where or ".")
        try:
            found = fs.exists(path)
        except Exception as exc:  # refused credentials, an endpoint that is not there
            raise PreflightError([f"data.source.{field}: {uri}: cannot read it ({_first_line(exc)})"]) from None
        if not found:
            missing = f"{where} does not exist" if where != uri else "does not exist"
            raise PreflightError([f"data.source.{field}: {uri}: {missing}"])
        if where != uri and is_local(uri) and next(glob.iglob(filesystem(uri)[1], recursive=True), None) is None:
            raise PreflightError([f"data.source.{field}: {uri}: matches no file"])  # local: the first match is cheap


def check_tracking(uri: str, field: str = "tracking_uri") -> None:
    """One authenticated request to an MLflow server; database URIs need no server."""
    if not uri.startswith(("http://", "https://")):
        return
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    try:
        response = http_request(
            get_default_host_creds(uri),
            "/api/2.0/mlflow/experiments/search",
            "GET",
            max_retries=0,
            timeout=PROBE_TIMEOUT_S,
            raise_on_status=False,
            params={"max_results": 1},
        )
    except Exception as exc:  # requests' and MLflow's connection errors share no useful base class
        raise PreflightError(
            [f"{field}: cannot reach the MLflow server at {uri} ({type(exc).__name__}); is it running?"]
        ) from None
    if response.status_code in (401, 403):
        raise PreflightError(
            [
                f"{field}: the MLflow server at {uri} refused the credentials (HTTP "
                f"{response.status_code}); set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, "
                "or MLFLOW_TRACKING_TOKEN"
            ]
        )
    if response.status_code != 200:
        raise PreflightError([f"{field}: {uri} answered HTTP {response.status_code}: is it an MLflow server?"])


def check_ray_address(address: str | None, field: str = "--address") -> None:
    """A TCP connection to HOST:PORT: `ray.init` on a dead address waits for minutes."""
    if not address or address in ("auto", "local"):
        return
    try:
        without_credentials(address)
    except ValueError as exc:
        raise PreflightError([f"{field}: {exc}"]) from None
    target = urlsplit(address if "://" in address else f"ray://{address}")
    if target.hostname is None or target.port is None:
        raise PreflightError([f"{field}: {address!r} is not HOST:PORT, ray://HOST:PORT, auto or local"])
    try:
        socket.create_connection((target.hostname, target.port), timeout=PROBE_TIMEOUT_S).close()
    except OSError as exc:
        raise PreflightError([f"{field}: cannot reach the Ray cluster at {address} ({exc.strerror or exc})"]) from None


def check_resources(config: PipelineConfig, steps: tuple[str, ...]) -> None:
    """Every process the steps ask Ray for fits a node that is up, or a node type the cluster's
    autoscaler can add (pipelines/train/capacity.py): Ray would otherwise wait forever for a worker
    no node can host. GENPIPE_SKIP_RESOURCE_CHECK=1 skips the check."""
    if os.environ.get("GENPIPE_SKIP_RESOURCE_CHECK") == "1":
        return
    capacity = cluster_capacity()
    train, problems = config.train, []
    if "train" in steps:
        need, fewest = worker_resources(train, capacity), train.min_workers
        room = capacity.training_slots_possible(train, need)
        if room is not None and room < fewest:
            problems.append(
                f"train.num_workers: {fewest} workers of {shown_need(need)} each ({train.placement_strategy}) "
                f"do not fit the cluster ({capacity.shown()}); only {room} do"
            )
    for section in ("tune", "compare"):  # trials of a sweep or of a comparison
        trials = getattr(config, section)
        need = {"CPU": trials.cpus_per_trial, "GPU": trials.gpus_per_trial} if trials is not None else {}
        if section in steps and trials is not None and capacity.slots_possible(need) == 0:
            problems.append(
                f"{section}.cpus_per_trial: no node has {need['CPU']:g} CPU and {need['GPU']:g} GPU "
                f"for a trial ({capacity.shown()})"
            )
    evaluate = config.evaluate
    if "evaluate" in steps and capacity.slots_possible({"CPU": evaluate.num_cpus, "GPU": evaluate.num_gpus}) == 0:
        problems.append(
            f"evaluate.num_cpus: no node has {evaluate.num_cpus:g} CPU and {evaluate.num_gpus:g} GPU "
            f"for the evaluation ({capacity.shown()})"
        )
    if problems:
        raise PreflightError(problems)


def _first_line(exc: BaseException) -> str:
    return first_line(exc, 200)
