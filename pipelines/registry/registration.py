"""register: the evaluated model (a LoggedModel, pipelines/registry/logged_models.py) becomes a
version of the registered model, once per workflow run; the alias goes to the version only when the
gate lets it past the champion."""

from __future__ import annotations

import time
from typing import Any

from mlflow.exceptions import MlflowException

from pipelines.config import RegisterConfig
from pipelines.registry import tracking
from pipelines.registry.gate import decide
from pipelines.registry.versions import aliased_version, version_metrics

EVAL_KEY_TAG = "genpipe.evaluation_key"  # a version's scores compare only under the same key


def register(
    settings: RegisterConfig, tracking_uri: str, run_id: str, evaluation: dict[str, Any], tags: dict[str, str]
) -> dict[str, Any]:
    """Register the evaluated model (the logged model the evaluate step made) as a new version
    (once per workflow run) and move the alias to it only if the gate lets it past the champion."""
    mlflow_client = tracking.client(tracking_uri)
    name = settings.model_name
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(name, description="Registered by genpipe.")

    # One workflow = one MLflow run = at most one version: a re-run finds its own version and
    # the decision already taken for it.
    existing = mlflow_client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'")
    if existing:
        version = existing[0]
        decision_tags = {k: v for k, v in version.tags.items() if k.startswith("genpipe.gate.")}
    else:
        champion = evaluation.get("champion")
        decision = decide(
            settings.gate, evaluation["metrics"], champion and champion["metrics"], champion and champion["version"]
        )
        decision_tags = decision.tags()
        model_id = evaluation.get("model_id")
        if not model_id:  # an evaluation recorded by a genpipe that logged no MLflow Model
            raise ValueError("register: the evaluate record names no logged model; evaluate again")
        version_tags = {**tags, **decision_tags, EVAL_KEY_TAG: evaluation["evaluation_key"]}
        # A `models:/<id>` source links the version to its logged model (MLflow's UI follows it);
        # the registry resolves it through MLflow's process-wide tracking URI, not this client's.
        with tracking.pointed_at(tracking_uri):
            version = mlflow_client.create_model_version(
                name, f"models:/{model_id}", run_id=run_id, tags=version_tags, model_id=model_id
            )
        for key, value in decision_tags.items():
            mlflow_client.set_tag(run_id, key, value)
        if decision.promote:
            mlflow_client.set_registered_model_alias(name, settings.alias, version.version)

    holder = aliased_version(tracking_uri, name, settings.alias)
    return {
        "model_name": name,
        "version": int(version.version),
        "alias": settings.alias,
        "alias_version": int(holder.version) if holder else None,
        "created": not existing,
        "decision": decision_tags.get("genpipe.gate.decision"),
        "reason": decision_tags.get("genpipe.gate.reason"),
        "model_uri": f"models:/{name}/{version.version}",
    }


def promote(tracking_uri: str, model_name: str, version: int, alias: str) -> int | None:
    """Move `alias` to `version` by hand (an override or a rollback); returns the previous holder."""
    mlflow_client = tracking.client(tracking_uri)
    mlflow_client.get_model_version(model_name, str(version))  # fails clearly if it does not exist
    previous = aliased_version(tracking_uri, model_name, alias)
    mlflow_client.set_registered_model_alias(model_name, alias, str(version))
    mlflow_client.set_model_version_tag(
        model_name, str(version), "genpipe.gate.manual_promotion", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    )
    return int(previous.version) if previous else None


def history(tracking_uri: str, model_name: str) -> list[dict[str, Any]]:
    """Every version, oldest first, with its scores and the gate's decision."""
    mlflow_client = tracking.client(tracking_uri)
    model = mlflow_client.get_registered_model(model_name)
    holders = {str(v): a for a, v in model.aliases.items()}
    rows = []
    for version in sorted(mlflow_client.search_model_versions(f"name = '{model_name}'"), key=lambda v: int(v.version)):
        rows.append(
            {
                "version": int(version.version),
                "created": version.creation_timestamp,
                "alias": holders.get(str(version.version)),
                "workflow": version.tags.get("genpipe.workflow_id"),
                "dataset": version.tags.get("genpipe.dataset.fingerprint"),
                "decision": version.tags.get("genpipe.gate.decision"),
                "reason": version.tags.get("genpipe.gate.reason"),
                "metrics": version_metrics(tracking_uri, version),
            }
        )
    return rows
