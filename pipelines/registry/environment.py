"""MLflow defaults genpipe runs with, set by entry points (never on import)."""

from __future__ import annotations

import os
import sys
from urllib.parse import unquote, urlsplit, urlunsplit

COMMAND_VARIABLE = "GENPIPE_COMMAND"  # the command line a run comes from, its MLflow source

MLFLOW_DEFAULTS = {
    # MLflow 3's telemetry thread sets and unsets _MLFLOW_TELEMETRY_SESSION_ID in os.environ while
    # other threads iterate os.environ (requests reads proxies from it on every call): a KeyError
    # that fails an MLflow request now and then (seen in CI: runs/create). Off unless the user
    # turns it on.
    "MLFLOW_DISABLE_TELEMETRY": "true",
    # An MLflow server that proxies artifacts to S3 hands clients presigned S3 URLs for downloads
    # (MLflow 3's multipart download): the client must then reach the S3 endpoint the server uses,
    # often an internal one. genpipe's artifacts go through the server it was given.
    "MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD": "false",
    "MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR": "false",
}


def apply_mlflow_defaults() -> None:
    """Set each default the user has not set, in this process and the Ray processes it starts.
    MLflow starts its telemetry client when imported: if that has happened, it is asked again."""
    for name, value in MLFLOW_DEFAULTS.items():
        os.environ.setdefault(name, value)
    move_credentials_out_of_tracking_uri()
    if "mlflow" in sys.modules:
        from mlflow.telemetry.client import get_telemetry_client, set_telemetry_client

        if get_telemetry_client() is not None:
            set_telemetry_client()


def move_credentials_out_of_tracking_uri() -> None:
    """MLFLOW_TRACKING_URI=https://user:password@host would be stored with every workflow, logged,
    shown and handed to jobs: the credentials move to MLFLOW_TRACKING_USERNAME / _PASSWORD (a lone
    token to MLFLOW_TRACKING_TOKEN), which MLflow reads, and the URI keeps only the host."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    parts = urlsplit(uri) if "://" in uri else None
    if parts is None or not (parts.username or parts.password):
        return
    if parts.password is not None:
        os.environ.setdefault("MLFLOW_TRACKING_USERNAME", unquote(parts.username or ""))
        os.environ.setdefault("MLFLOW_TRACKING_PASSWORD", unquote(parts.password))
    else:
        os.environ.setdefault("MLFLOW_TRACKING_TOKEN", unquote(parts.username or ""))
    host = parts.netloc.rpartition("@")[2]
    os.environ["MLFLOW_TRACKING_URI"] = urlunsplit(parts._replace(netloc=host))
