"""URIs and the fsspec filesystem behind each: a local path or an object store (s3://...)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import fsspec


def normalize(uri: str) -> str:
    """Local paths become absolute (Ray workers run in other directories); URIs stay as they are."""
    if "://" in uri:
        return uri.rstrip("/")
    return str(Path(uri).expanduser().resolve())


def is_local(uri: str) -> bool:
    return "://" not in uri or uri.startswith("file://")


def join(uri: str, *parts: str) -> str:
    return "/".join([uri.rstrip("/"), *(p.strip("/") for p in parts)])


# Transient S3 errors (throttling, 5xx, dropped connections) are retried by botocore. Its
# "standard" mode with 10 attempts replaces the legacy default of 5; AWS_RETRY_MODE and
# AWS_MAX_ATTEMPTS in the environment (or ~/.aws/config) still decide when set.
S3_RETRIES = {"mode": "standard", "total_max_attempts": 10}


def _configure_s3_retries() -> None:
    """Applied on first use, not at import: importing storage changes nothing."""
    if os.environ.get("AWS_RETRY_MODE") or os.environ.get("AWS_MAX_ATTEMPTS"):
        return
    defaults = fsspec.config.conf.setdefault("s3", {})
    defaults.setdefault("config_kwargs", {}).setdefault("retries", S3_RETRIES)


def filesystem(uri: str, **storage_options: Any) -> tuple[fsspec.AbstractFileSystem, str]:
    """(filesystem, path inside it) for `uri`.

    Object stores are read without fsspec's listings cache: leases, claims and schedule state are
    written by other processes (and threads sharing the cached instance), and a cached listing made
    `exists` and `ls` answer from the past, e.g. a lease folder that never showed the newer
    generation, so every later taker lost its create and gave up for good."""
    if is_local(uri):
        return fsspec.core.url_to_fs(uri, **storage_options)
    _configure_s3_retries()
    return fsspec.core.url_to_fs(uri, **{"use_listings_cache": False, **storage_options})
