"""evaluate: score the trained model on the val split, log it as an MLflow Model with the scores as
its metrics (pipelines/registry/logged_models.py), log the artifacts (sample grid, or text
completions as a table) to the workflow's MLflow run, and score the champion the same way.

Images: classifier-FID and class coverage of generated samples. Text: val loss, perplexity and bits
per byte, plus completions of fixed prompts.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ray
import torch

from data_prep.manifest import Manifest
from models.weights import load_model
from pipelines.config import EvaluateConfig, PipelineConfig, cpu_threads
from pipelines.evaluate.key import evaluation_key
from pipelines.evaluate.scorers import EVALUATIONS, TABLE_FILE, Scorer, scorer_for
from pipelines.registry import lineage, tracking
from pipelines.registry.logged_models import log_evaluated_model
from pipelines.registry.registration import EVAL_KEY_TAG
from pipelines.registry.versions import aliased_version, download, version_metrics
from storage import join, local_copy, write_bytes_atomic


def _silent(stage: str, **event: Any) -> None:
    """No console to report to."""


def _threads(requested: float) -> int:
    if ray.is_initialized() and ray.get_runtime_context().get_task_id():
        requested = ray.get_runtime_context().get_assigned_resources().get("CPU", requested)
    return cpu_threads(requested)


def _device(settings: EvaluateConfig) -> torch.device:
    return torch.device("cuda" if settings.num_gpus > 0 and torch.cuda.is_available() else "cpu")


def _champion(
    config: PipelineConfig,
    key: str,
    score: Scorer,
    tracking_uri: str,
    folder: str,
    device: torch.device,
    report: Callable[..., None],
) -> dict[str, Any] | None:
    """The current champion's scores under this very evaluation: read from its tags when it was
    scored the same way (same evaluation key), else re-scored now."""
    version = aliased_version(tracking_uri, config.register.model_name, config.register.alias)
    if version is None:
        return None
    if version.tags.get(EVAL_KEY_TAG) == key:
        metrics = version_metrics(tracking_uri, version)
        return {"version": int(version.version), "metrics": metrics, "rescored": False}
    report("evaluate", text=f"scoring the champion (version {version.version}) the same way")
    model = load_model(download(f"models:/{version.name}/{version.version}", tracking_uri, f"{folder}/champion")).to(
        device
    )
    return {"version": int(version.version), "metrics": score(model, None), "rescored": True}


def evaluate(
    config: PipelineConfig,
    manifest: Manifest,
    model_uri: str,
    workflow_uri: str,
    tracking_uri: str,
    run_id: str,
    model_tags: dict[str, str],
    report: Callable[..., None] = _silent,
) -> dict[str, Any]:
    """Scores of the model at `model_uri` (and of the champion), the id of the logged model that
    carries them, and where its samples are."""
    settings = config.evaluate
    torch.set_num_threads(_threads(settings.num_cpus))
    device = _device(settings)
    key = evaluation_key(manifest.fingerprint, settings)
    with tempfile.TemporaryDirectory() as folder:
        artifacts = Path(folder) / "evaluation"
        artifacts.mkdir()
        model = load_model(local_copy(model_uri, f"{folder}/model")).to(device)
        report("evaluate", text=EVALUATIONS[manifest.modality].description)
        score, info = scorer_for(manifest, settings)
        metrics = score(model, artifacts)
        report("evaluate", text=", ".join(f"{k.removeprefix('eval/')}={v:.4g}" for k, v in metrics.items()))
        champion = _champion(config, key, score, tracking_uri, folder, device, report)

        sample_file = next(artifacts.glob("samples.*"))
        samples_uri = join(workflow_uri, sample_file.name)
        write_bytes_atomic(samples_uri, sample_file.read_bytes())
        report("evaluate", text="logging the model to MLflow")
        evaluation_data = lineage.log_dataset(tracking_uri, run_id, manifest, "val", "evaluation")
        model_id = log_evaluated_model(
            model_uri, tracking_uri, run_id, config.register.model_name, model_tags, metrics, evaluation_data
        )
        if champion:
            tracking.log_metrics(tracking_uri, run_id, {f"champion/{k}": v for k, v in champion["metrics"].items()})
        for artifact in sorted(artifacts.iterdir()):
            if artifact.name == TABLE_FILE:
                tracking.client(tracking_uri).log_table(
                    run_id, json.loads(artifact.read_text()), f"evaluation/{TABLE_FILE}"
                )
            else:
                tracking.log_artifact(tracking_uri, run_id, str(artifact), "evaluation")
    return {
        "metrics": metrics,
        "samples_uri": samples_uri,
        **info,
        "evaluation_key": key,
        "champion": champion,
        "model_id": model_id,
    }
