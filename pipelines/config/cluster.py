"""The config's `cluster:` section: how `genpipe submit` (and a schedule with an address) runs the
workflow as a Ray job: how its code gets there, and the rest of its runtime_env.

The whole config is logged as MLflow params and a job's runtime_env is shown by the Ray dashboard
and `ray job list`, so neither may hold a secret: credentials stay in the environment of the
submitting shell (the Ray token) and of the cluster's nodes (AWS keys, MLflow passwords).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator

from data_prep.config import Strict
from storage.secrets import SECRET_NAME, has_credentials
from typed_errors import FieldError

# runtime_env keys a job may set; genpipe owns working_dir (this repository).
RUNTIME_ENV_KEYS = {
    "env_vars",
    "pip",
    "uv",
    "conda",
    "py_modules",
    "py_executable",
    "excludes",
    "image_uri",
    "container",
    "nsight",
    "config",
}


class ClusterConfig(Strict):
    code: Literal["auto", "image", "modules", "working_dir"] = Field(
        "auto",
        description=(
            "how a job gets genpipe's code: image (the nodes have it installed: nothing uploaded), "
            "modules (its packages as Ray py_modules: a few MB, from a checkout or an installed "
            "genpipe), working_dir (the source checkout, with the files beside it); auto: "
            "working_dir from a source checkout, else modules"
        ),
    )
    runtime_env: dict[str, Any] = Field(
        default_factory=dict, description="Ray runtime_env for submitted jobs (env_vars, pip, ...)"
    )
    auth_token_file: str | None = Field(
        None, description="file holding the Ray cluster's auth token (never the token itself: the config is logged)"
    )
    scale_up_timeout_s: float = Field(
        900,
        gt=0,
        description="how long a run waits for an autoscaling cluster to add the nodes its work needs "
        "(a GPU node can take minutes to come up)",
    )

    @field_validator("runtime_env")
    @classmethod
    def _no_secrets_no_working_dir(cls, runtime_env: dict[str, Any]) -> dict[str, Any]:
        if "working_dir" in runtime_env:
            raise FieldError(
                "working_dir",
                "genpipe ships this repository as the job's working_dir; add paths to leave out under excludes",
            )
        unknown = sorted(set(runtime_env) - RUNTIME_ENV_KEYS)
        if unknown:
            raise FieldError(
                f"{unknown[0]}",
                f"not a runtime_env field genpipe passes on (one of {', '.join(sorted(RUNTIME_ENV_KEYS))})",
            )
        env_vars = runtime_env.get("env_vars", {})
        if not isinstance(env_vars, dict):
            raise FieldError("env_vars", "must be a mapping of NAME: value")
        for name in env_vars:
            if SECRET_NAME.search(name):
                raise FieldError(
                    f"env_vars.{name}",
                    "looks like a secret, and the config is logged as MLflow "
                    "params and shown in the Ray dashboard; give it to the cluster's nodes instead",
                )
        for path, value in _strings(runtime_env):
            if has_credentials(value):  # the value itself is never echoed
                raise FieldError(
                    f"{path}",
                    "holds a URI with credentials, and the config is logged as MLflow params and shown "
                    "in the Ray dashboard; use a credential helper or the nodes' environment (PIP_INDEX_URL)",
                )
        return {**runtime_env, "env_vars": {k: str(v) for k, v in env_vars.items()}} if env_vars else runtime_env


def _strings(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string inside `value` with its dotted path."""
    if isinstance(value, str):
        return [(path, value)]
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else []
    return [found for key, item in items for found in _strings(item, f"{path}.{key}" if path else str(key))]


def without_credentials(uri: str | None) -> str | None:
    """A URI with user:password@ would carry its password into logs and MLflow params."""
    if uri and has_credentials(uri):
        raise ValueError(
            "credentials in the URI would be logged; give them through the environment "
            "(MLFLOW_TRACKING_USERNAME/PASSWORD or MLFLOW_TRACKING_TOKEN, AWS_* variables) instead"
        )
    return uri
