"""register: the evaluated model (a LoggedModel, pipelines/registry/logged_models.py) becomes a
version of the registered model, once per workflow run; the alias goes to the version only when the
gate lets it past the champion."""

from __future__ import annotations

import time
from typing import Any

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException

from pipelines.config import RegisterConfig
from pipelines.registry import tracking
from pipelines.registry.gate import Decision, decide
from pipelines.registry.versions import aliased_version, version_metrics

EVAL_KEY_TAG = "genpipe.evaluation_key"  # a version's scores compare only under the same key


ALIAS_SET_TAG = "genpipe.gate.alias_set"  # on a promoted version once its alias move is done


def register(
    settings: RegisterConfig, tracking_uri: str, run_id: str, evaluation: dict[str, Any], tags: dict[str, str]
) -> dict[str, Any]:
    """Register the evaluated model (the logged model the evaluate step made) as a new version
    (once per workflow run) and move the alias to it only if the gate lets it past the champion
    as it is now. Safe to repeat: a re-run finds its version and finishes a promotion it began."""
    mlflow_client = tracking.client(tracking_uri)
    name = settings.model_name
    try:
        mlflow_client.get_registered_model(name)
    except MlflowException:
        mlflow_client.create_registered_model(name, description="Registered by genpipe.")

    # One workflow = one MLflow run = at most one version: a re-run finds its own version and
    # the decision already taken for it.
    version = _version_of_run(mlflow_client, name, run_id)
    created = version is None
    if version is None:
        decision = _decide_now(settings, tracking_uri, evaluation)
        model_id = evaluation.get("model_id")
        if not model_id:  # an evaluation recorded by a genpipe that logged no MLflow Model
            raise ValueError("register: the evaluate record names no logged model; evaluate again")
        version_tags = {**tags, **decision.tags(), EVAL_KEY_TAG: evaluation["evaluation_key"]}
        # A `models:/<id>` source links the version to its logged model (MLflow's UI follows it);
        # the registry resolves it through MLflow's process-wide tracking URI, not this client's.
        with tracking.pointed_at(tracking_uri):
            mlflow_client.create_model_version(
                name, f"models:/{model_id}", run_id=run_id, tags=version_tags, model_id=model_id
            )
        version = _version_of_run(mlflow_client, name, run_id)  # the one kept if a retry made two
        assert version is not None
    decision_tags = {k: v for k, v in version.tags.items() if k.startswith("genpipe.gate.")}
    for key, value in decision_tags.items():
        mlflow_client.set_tag(run_id, key, value)
    if decision_tags.get("genpipe.gate.decision") == "promoted" and ALIAS_SET_TAG not in decision_tags:
        _move_alias_unless_overtaken(mlflow_client, tracking_uri, settings, version, decision_tags)

    holder = aliased_version(tracking_uri, name, settings.alias)
    return {
        "model_name": name,
        "version": int(version.version),
        "alias": settings.alias,
        "alias_version": int(holder.version) if holder else None,
        "created": created,
        "decision": decision_tags.get("genpipe.gate.decision"),
        "reason": decision_tags.get("genpipe.gate.reason"),
        "model_uri": f"models:/{name}/{version.version}",
    }


def _version_of_run(mlflow_client: Any, name: str, run_id: str) -> ModelVersion | None:
    """The run's version; should a retried request have created two, the first is kept and the
    others deleted."""
    versions = sorted(
        mlflow_client.search_model_versions(f"name = '{name}' and run_id = '{run_id}'"), key=lambda v: int(v.version)
    )
    for extra in versions[1:]:
        mlflow_client.delete_model_version(name, extra.version)
    return versions[0] if versions else None


def _decide_now(settings: RegisterConfig, tracking_uri: str, evaluation: dict[str, Any]) -> Decision:
    """The gate against the champion as it is at register time. The evaluate step scored the
    champion it saw; if another version took the alias since, its own scores count when they were
    made under the same evaluation key, and otherwise the challenger is not promoted."""
    seen = evaluation.get("champion")
    holder = aliased_version(tracking_uri, settings.model_name, settings.alias)
    if holder is None or (seen is not None and int(holder.version) == int(seen["version"])):
        return decide(settings.gate, evaluation["metrics"], seen and seen["metrics"], seen and seen["version"])
    if holder.tags.get(EVAL_KEY_TAG) == evaluation["evaluation_key"]:
        return decide(settings.gate, evaluation["metrics"], version_metrics(tracking_uri, holder), int(holder.version))
    score = evaluation["metrics"][settings.gate.metric]
    return Decision(
        False,
        f"the champion changed to version {holder.version} after this evaluation, under other evaluation "
        f"settings; promote by hand (genpipe promote) or run again to compare",
        score,
        None,
        int(holder.version),
    )


def _move_alias_unless_overtaken(
    mlflow_client: Any, tracking_uri: str, settings: RegisterConfig, version: ModelVersion, tags: dict[str, str]
) -> None:
    """Finish a promotion: move the alias, unless a version that beat the same champion took it
    first (then this decision is stale and the alias stays)."""
    holder = aliased_version(tracking_uri, settings.model_name, settings.alias)
    expected = tags.get("genpipe.gate.champion_version")
    if holder is None or str(holder.version) in (expected, version.version):
        mlflow_client.set_registered_model_alias(settings.model_name, settings.alias, version.version)
    mlflow_client.set_model_version_tag(settings.model_name, version.version, ALIAS_SET_TAG, "true")


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
