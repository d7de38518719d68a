"""evaluate: score the trained model on the val split, log the scores and artifacts (sample grid
or text completions, loss curve) to the workflow's MLflow run, and score the champion the same way.

Images: classifier-FID and class coverage of generated samples. Text: val loss, perplexity and bits
per byte, plus completions of fixed prompts.
"""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch

from data_prep.manifest import Manifest
from models.weights import load_model
from pipelines.config import EvaluateConfig, PipelineConfig
from pipelines.evaluate.key import evaluation_key
from pipelines.evaluate.pictures import save_loss_curve
from pipelines.evaluate.scorers import Scorer, image_scorer, text_scorer
from pipelines.registry import tracking
from pipelines.registry.registration import EVAL_KEY_TAG
from pipelines.registry.versions import aliased_version, download
from storage import join, local_copy, write_bytes_atomic


def _threads(requested: float) -> int:
    if ray.is_initialized() and ray.get_runtime_context().get_task_id():
        requested = ray.get_runtime_context().get_assigned_resources().get("CPU", requested)
    return max(1, math.floor(requested))


def _device(settings: EvaluateConfig) -> torch.device:
    return torch.device("cuda" if settings.num_gpus > 0 and torch.cuda.is_available() else "cpu")


def loss_history(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    mlflow_client = tracking.client(uri)
    keys = [k for k in mlflow_client.get_run(run_id).data.metrics if k.startswith("train/") and k.endswith("_loss")]
    return {k: [(m.step, m.value) for m in mlflow_client.get_metric_history(run_id, k)] for k in keys}


def _champion(
    config: PipelineConfig, key: str, score: Scorer, tracking_uri: str, folder: str, device: torch.device
) -> dict[str, Any] | None:
    """The current champion's scores under this very evaluation: read from its tags when it was
    scored the same way (same evaluation key), else re-scored now."""
    version = aliased_version(tracking_uri, config.register.model_name, config.register.alias)
    if version is None:
        return None
    if version.tags.get(EVAL_KEY_TAG) == key:
        metrics = {k: float(v) for k, v in version.tags.items() if k.startswith("eval/")}
        return {"version": int(version.version), "metrics": metrics, "rescored": False}
    model = load_model(download(f"models:/{version.name}/{version.version}", tracking_uri, f"{folder}/champion")).to(
        device
    )
    return {"version": int(version.version), "metrics": score(model, None), "rescored": True}


def evaluate(
    config: PipelineConfig, manifest: Manifest, model_uri: str, workflow_uri: str, tracking_uri: str, run_id: str
) -> dict[str, Any]:
    settings = config.evaluate
    torch.set_num_threads(_threads(settings.num_cpus))
    device = _device(settings)
    key = evaluation_key(manifest.fingerprint, settings)
    with tempfile.TemporaryDirectory() as folder:
        artifacts = Path(folder) / "evaluation"
        artifacts.mkdir()
        model = load_model(local_copy(model_uri, f"{folder}/model")).to(device)
        score, info = (text_scorer if manifest.text else image_scorer)(manifest, settings)
        metrics = score(model, artifacts)
        champion = _champion(config, key, score, tracking_uri, folder, device)
        # A sweep's losses are on its best trial's child run.
        curve_run = tracking.client(tracking_uri).get_run(run_id).data.tags.get("genpipe.tune.best_run_id") or run_id
        save_loss_curve(loss_history(tracking_uri, curve_run), artifacts / "loss_curve.png")

        sample_file = next(artifacts.glob("samples.*"))
        samples_uri = join(workflow_uri, sample_file.name)
        write_bytes_atomic(samples_uri, sample_file.read_bytes())
        logged = dict(metrics)
        if champion:
            logged.update({f"champion/{k}": v for k, v in champion["metrics"].items()})
        tracking.log_metrics(tracking_uri, run_id, logged)
        for artifact in sorted(artifacts.iterdir()):
            tracking.log_artifact(tracking_uri, run_id, str(artifact), "evaluation")
    return {"metrics": metrics, "samples_uri": samples_uri, **info, "evaluation_key": key, "champion": champion}
