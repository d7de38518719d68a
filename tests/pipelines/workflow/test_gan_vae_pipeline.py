"""GAN, VAE and flow families through `genpipe run`: two Ray Train workers under DeepSpeed ZeRO-2,
one engine per network (the WGAN-GP critic stepped n_critic times, StyleGAN's lazy R1 through its
engine's bare network, Glow's actnorm initialised alike on both workers), evaluated with their own
metrics and pictures, registered, sampled from the registry."""

from __future__ import annotations

import pytest
from helpers import seed_dataset

from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow

TINY = [
    "train.max_steps=24",
    "train.log_every=6",
    "train.checkpoint_every=12",
    "train.strategy=zero2",
    "evaluate.num_samples=100",
    "evaluate.grid_size=16",
    "evaluate.classifier_epochs=2",
    "evaluate.iw_samples=4",
]


@pytest.mark.parametrize(
    ("family", "losses", "metrics", "pictures"),
    [
        (
            "wgan-gp",
            ["train/discriminator_loss", "train/generator_loss"],
            ["eval/classifier_fid"],
            ["interpolation.png"],
        ),
        (
            "stylegan",
            ["train/discriminator_loss", "train/generator_loss"],
            ["eval/classifier_fid", "eval/precision", "eval/recall"],
            ["interpolation.png", "style_mixing.png"],
        ),
        (  # actnorm initialised from the first batch, its statistics averaged over both workers
            "glow",
            ["train/flow_loss"],
            ["eval/bits_per_dim", "eval/uniform_bits_per_dim", "eval/precision"],
            [],
        ),
        (
            "conv-vae",
            ["train/autoencoder_loss"],
            ["eval/elbo", "eval/nll_iw", "eval/reconstruction_mse"],
            ["interpolation.png", "reconstructions.png"],
        ),
    ],
)
def test_family_runs_through_the_pipeline(
    family, losses, metrics, pictures, ray_session, mlflow_server, quickstart_dataset, tmp_path
):
    seed_dataset(quickstart_dataset, tmp_path)  # prepare is not what this test is about
    options = [
        item
        for setting in [*TINY, f"model.family={family}", f"register.model_name=t-{family}"]
        for item in ("--set", setting)
    ]
    assert (
        cli.main(
            [
                "run",
                "quickstart",
                "--storage",
                str(tmp_path),
                "--tracking-uri",
                mlflow_server,
                "--workflow-id",
                family,
                *options,
            ]
        )
        == 0
    )
    run_id = Workflow(str(tmp_path), family).meta()["run_id"]
    client = tracking.client(mlflow_server)
    logged = client.get_run(run_id).data.metrics
    assert set(losses + metrics) <= set(logged), sorted(logged)
    if family == "glow":  # below the uniform model's log2(17) after 24 steps
        assert logged["eval/bits_per_dim"] < logged["eval/uniform_bits_per_dim"] == pytest.approx(4.087, abs=1e-3)
    if family == "conv-vae":
        history = sorted(client.get_metric_history(run_id, "train/autoencoder_loss"), key=lambda m: m.step)
        assert history[-1].value < history[0].value
        assert logged["eval/nll_iw"] <= -logged["eval/elbo"] + 1.0  # a tighter bound than -ELBO, up to noise
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {f"evaluation/{name}" for name in ["samples.png", *pictures]} <= artifacts
    out = tmp_path / "grid.png"
    assert (
        cli.main(
            ["sample", f"models:/t-{family}@champion", "-n", "9", "--out", str(out), "--tracking-uri", mlflow_server]
        )
        == 0
    )
    assert out.stat().st_size > 0
