"""MLflow defaults genpipe runs with, set by entry points (never on import)."""

from __future__ import annotations

import os
import sys

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
    if "mlflow" in sys.modules:
        from mlflow.telemetry.client import get_telemetry_client, set_telemetry_client

        if get_telemetry_client() is not None:
            set_telemetry_client()
