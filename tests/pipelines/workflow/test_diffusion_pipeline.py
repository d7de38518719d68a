"""Conditioned and latent diffusion through `genpipe run`: two Ray Train workers under DeepSpeed,
the EMA registered, per-class scores and grids in MLflow, `genpipe sample --prompt` from the
registry, and a latent model built on a registered VAE."""

from __future__ import annotations

import tempfile
from pathlib import Path

import mlflow.pyfunc
import pandas as pd
import pytest
import torch
from helpers import TINY
from safetensors.torch import load_file

from pipelines import cli
from pipelines.registry import tracking
from pipelines.registry.versions import download, logged_model_id
from pipelines.train.checkpoints import MODEL_STATE_FILE
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow
STEPS = [setting for setting in TINY if not setting.startswith("model.params.")]  # TINY minus diffusion's
DIFFUSION = ["model.params.timesteps=20"]


def run(tmp_path: Path, tracking_uri: str, workflow_id: str, *settings: str) -> str:
    options = [item for setting in [*STEPS, *settings] for item in ("--set", setting)]
    assert (
        cli.main(
            [
                "run",
                "quickstart",
                "--storage",
                str(tmp_path),
                "--tracking-uri",
                tracking_uri,
                "--workflow-id",
                workflow_id,
                *options,
            ]
        )
        == 0
    )
    return Workflow(str(tmp_path), workflow_id).meta()["run_id"]


def registered_weights(model_uri: str, tracking_uri: str) -> dict[str, torch.Tensor]:
    with tempfile.TemporaryDirectory() as folder:
        return load_file(Path(download(model_uri, tracking_uri, folder)) / "model.safetensors")


def test_text_to_image_registers_its_ema_and_answers_prompts(ray_session, mlflow_server, tmp_path):
    run_id = run(
        tmp_path, mlflow_server, "t2i", *DIFFUSION, "model.params.conditioning=text", "register.model_name=t-t2i"
    )
    client = tracking.client(mlflow_server)
    metrics = client.get_run(run_id).data.metrics
    assert {"eval/class_accuracy", "eval/class_accuracy_7", "eval/classifier_fid"} <= set(metrics)
    grids = {a.path for a in client.list_artifacts(run_id, "evaluation/samples_by_class")}
    assert {"evaluation/samples_by_class/7_7.png", "evaluation/samples_by_class/README.md"} <= grids

    # The registry holds the EMA the last checkpoint kept, not the raw weights DeepSpeed saved.
    checkpoint = Path(Workflow(str(tmp_path), "t2i").record("train")["result"]["checkpoint_uri"])
    ema = {
        k.removeprefix("ema.shadow."): v
        for k, v in load_file(checkpoint / MODEL_STATE_FILE).items()
        if k.startswith("ema.shadow.")
    }
    raw = torch.load(next(checkpoint.glob("unet/*/mp_rank_00_model_states.pt")), weights_only=False)["module"]
    registered = registered_weights("models:/t-t2i@champion", mlflow_server)
    assert ema and all(torch.equal(registered[f"unet.{k}"], v) for k, v in ema.items())
    assert any(not torch.allclose(registered[f"unet.{k}"], raw[k].float()) for k in ema)

    out = tmp_path / "g.png"
    assert (
        cli.main(
            [
                "sample",
                "models:/t-t2i@champion",
                "--prompt",
                "a handwritten seven",
                "-n",
                "16",
                "--steps",
                "10",
                "--sampler",
                "ddim",
                "--out",
                str(out),
                "--tracking-uri",
                mlflow_server,
            ]
        )
        == 0
    )
    assert out.stat().st_size > 0
    assert (
        cli.main(
            ["sample", "models:/t-t2i@champion", "--label", "seven", "--out", str(out), "--tracking-uri", mlflow_server]
        )
        == 0
    )  # a text model takes a class as its prompt too
    # The same through MLflow's pyfunc: a row per request, by prompt or by class.
    with tracking.pointed_at(mlflow_server):
        served = mlflow.pyfunc.load_model("models:/t-t2i@champion")
        images = served.predict(pd.DataFrame({"n": [2, 1], "prompt": ["a seven", None], "label": [None, "seven"]}))
    assert images.shape == (3, 1, 8, 8)
    assert (
        cli.main(
            ["sample", "models:/quickstart-missing@champion", "--prompt", "a seven", "--tracking-uri", mlflow_server]
        )
        == 1
    )


def test_latent_diffusion_runs_in_a_registered_vaes_space(ray_session, mlflow_server, tmp_path):
    run(tmp_path, mlflow_server, "vae", "model.family=conv-vae", "register.model_name=t-latent-vae")
    run_id = run(
        tmp_path,
        mlflow_server,
        "ldm",
        *DIFFUSION,
        "model.family=latent-ddpm",
        "register.model_name=t-ldm",
        "model.params.autoencoder=models:/t-latent-vae@champion",
    )
    tags = tracking.client(mlflow_server).get_run(run_id).data.tags
    assert tags["genpipe.autoencoder"] == "models:/t-latent-vae/1"  # pinned to the version it trained on
    vae_version = tracking.client(mlflow_server).get_model_version("t-latent-vae", "1")
    inputs = tracking.client(mlflow_server).get_run(run_id).inputs.model_inputs
    assert [model.model_id for model in inputs] == [logged_model_id(vae_version)]  # lineage: the VAE it builds on
    vae = registered_weights("models:/t-latent-vae@champion", mlflow_server)
    latent = registered_weights("models:/t-ldm@champion", mlflow_server)
    assert all(torch.equal(latent[f"vae.{k}"], v) for k, v in vae.items())  # the VAE travels, frozen
    out = tmp_path / "latent.png"
    assert (
        cli.main(["sample", "models:/t-ldm@champion", "-n", "4", "--out", str(out), "--tracking-uri", mlflow_server])
        == 0
    )
    assert out.stat().st_size > 0
    # A latent model needs a VAE that exists: named in the error, before any training.
    assert (
        cli.main(
            [
                "run",
                "quickstart",
                "--storage",
                str(tmp_path),
                "--tracking-uri",
                mlflow_server,
                "--set",
                "model.family=latent-ddpm",
                "--set",
                "model.params.autoencoder=models:/nope@champion",
                *[item for s in TINY for item in ("--set", s)],
            ]
        )
        != 0
    )
