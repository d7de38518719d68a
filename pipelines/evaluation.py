"""evaluate: sample the trained model, score it with classifier-FID and class coverage, and log
the sample grid and the loss curve to the workflow's MLflow run."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import ray
import torch

from data_prep.manifest import Manifest
from data_prep.readers import read_arrays
from models.base import GenerativeModel
from models.weights import load_model
from pipelines import registry, tracking
from pipelines.config import EvaluateConfig, PipelineConfig
from pipelines.gate import evaluation_key
from pipelines.grids import save_grid, save_loss_curve
from pipelines.image_metrics import DigitClassifier, load_or_train_classifier, score_samples
from pipelines.registry import EVAL_KEY_TAG
from pipelines.storage import join, local_copy, write_bytes_atomic


def _threads(requested: float) -> int:
    if ray.is_initialized() and ray.get_runtime_context().get_task_id():
        requested = ray.get_runtime_context().get_assigned_resources().get("CPU", requested)
    return max(1, math.floor(requested))


def loss_history(uri: str, run_id: str) -> dict[str, list[tuple[int, float]]]:
    mlflow_client = tracking.client(uri)
    keys = [k for k in mlflow_client.get_run(run_id).data.metrics if k.startswith("train/") and k.endswith("_loss")]
    return {k: [(m.step, m.value) for m in mlflow_client.get_metric_history(run_id, k)] for k in keys}


def _score(model: GenerativeModel, classifier: DigitClassifier, val_images: torch.Tensor,
           settings: EvaluateConfig) -> tuple[dict[str, float], torch.Tensor]:
    """Sample with the evaluation's seed and score against the val split."""
    samples = model.sample(settings.num_samples, generator=torch.Generator().manual_seed(settings.seed))
    return {f"eval/{k}": v for k, v in score_samples(classifier, samples, val_images).items()}, samples


def _champion(config: PipelineConfig, key: str, classifier: DigitClassifier, val_images: torch.Tensor,
              tracking_uri: str, folder: str) -> dict[str, Any] | None:
    """The current champion's scores under this very evaluation: read from its tags when it was
    scored the same way (same evaluation key), else re-scored now."""
    version = registry.aliased_version(tracking_uri, config.register.model_name, config.register.alias)
    if version is None:
        return None
    if version.tags.get(EVAL_KEY_TAG) == key:
        metrics = {k: float(v) for k, v in version.tags.items() if k.startswith("eval/")}
        return {"version": int(version.version), "metrics": metrics, "rescored": False}
    model = load_model(registry.download(f"models:/{version.name}/{version.version}", tracking_uri,
                                         f"{folder}/champion"))
    metrics, _ = _score(model, classifier, val_images, config.evaluate)
    return {"version": int(version.version), "metrics": metrics, "rescored": True}


def evaluate(config: PipelineConfig, manifest: Manifest, model_uri: str, workflow_uri: str,
             tracking_uri: str, run_id: str) -> dict[str, Any]:
    settings = config.evaluate
    torch.set_num_threads(_threads(settings.num_cpus))
    key = evaluation_key(manifest.fingerprint, settings)
    with tempfile.TemporaryDirectory() as folder:
        model = load_model(local_copy(model_uri, f"{folder}/model"))
        classifier, cached = load_or_train_classifier(manifest, settings.classifier_epochs, settings.seed)
        val_images = torch.from_numpy(read_arrays(manifest, "val")[0])
        metrics, samples = _score(model, classifier, val_images, settings)
        # The floor to read the score against: real train images scored the same way.
        train_images = torch.from_numpy(read_arrays(manifest, "train")[0][: settings.num_samples])
        metrics["eval/classifier_fid_real_data"] = score_samples(classifier, train_images, val_images)[
            "classifier_fid"]
        champion = _champion(config, key, classifier, val_images, tracking_uri, folder)

        grid = save_grid(samples[: settings.grid_size], Path(folder) / "samples.png")
        curve = save_loss_curve(loss_history(tracking_uri, run_id), Path(folder) / "loss_curve.png")
        grid_uri = join(workflow_uri, "samples.png")
        write_bytes_atomic(grid_uri, grid.read_bytes())
        logged = dict(metrics)
        if champion:
            logged.update({f"champion/{k}": v for k, v in champion["metrics"].items()})
        tracking.log_metrics(tracking_uri, run_id, logged)
        tracking.log_artifact(tracking_uri, run_id, str(grid), "evaluation")
        tracking.log_artifact(tracking_uri, run_id, str(curve), "evaluation")
    return {"metrics": metrics, "grid_uri": grid_uri, "classifier_cached": cached, "evaluation_key": key,
            "champion": champion}
