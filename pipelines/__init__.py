"""genpipe's pipelines: config, workflow steps, training, sweeps, evaluation, registry, CLI."""

import os

# MLflow 3's telemetry thread sets and unsets _MLFLOW_TELEMETRY_SESSION_ID in os.environ while other
# threads iterate os.environ (requests reads proxies from it on every call): a KeyError that fails
# an MLflow request now and then (seen in CI: runs/create). Off unless the user turns it on; set
# before MLflow is imported, and inherited by the Ray processes started from here.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

# An MLflow server that proxies artifacts to S3 hands clients presigned S3 URLs for downloads
# (MLflow 3's multipart download): the client must then reach the S3 endpoint the server uses,
# often an internal one. genpipe's artifacts go through the server it was given, unless the user
# turns this on.
os.environ.setdefault("MLFLOW_ENABLE_PROXY_MULTIPART_DOWNLOAD", "false")
