"""CycleGAN through `genpipe run cyclegan-digits`: a two-domain dataset, four networks (two
generators, two discriminators) each with its own DeepSpeed engine on two Ray Train workers,
evaluated both ways against the known translation, registered, and translating a user's PNG
through `genpipe sample --input`."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow

SMALL = [
    "train.num_workers=2",
    "train.cpus_per_worker=0.5",
    "train.strategy=zero2",
    "train.max_steps=20",
    "train.checkpoint_every=10",
    "train.sample_every=10",
    "evaluate.num_samples=60",
    "evaluate.classifier_epochs=2",
    "register.model_name=t-cyclegan",
]


def test_cyclegan_translates_both_ways_through_the_pipeline(ray_session, mlflow_server, tmp_path, capsys):
    settings = [item for setting in SMALL for item in ("--set", setting)]
    storage = ["--storage", str(tmp_path), "--tracking-uri", mlflow_server]
    assert cli.main(["run", "cyclegan-digits", *storage, "--workflow-id", "cg", *settings]) == 0
    run_id = Workflow(str(tmp_path), "cg").meta()["run_id"]
    client = tracking.client(mlflow_server)
    logged = client.get_run(run_id).data.metrics
    losses = {f"train/{n}_loss" for n in ("generator_ab", "generator_ba", "discriminator_a", "discriminator_b")}
    both_ways = {f"eval/{d}_{m}" for d in ("a2b", "b2a") for m in ("l1_to_truth", "class_accuracy", "precision")}
    assert losses | both_ways | {"eval/l1_to_truth", "eval/identity_l1_to_truth", "eval/recall"} <= set(logged)
    assert logged["eval/identity_l1_to_truth"] > 1.0 and 0 <= logged["eval/class_accuracy"] <= 1
    artifacts = {a.path for a in client.list_artifacts(run_id, "evaluation")}
    assert {"evaluation/samples.png", "evaluation/translations_b2a.png"} <= artifacts
    live = {a.path for a in client.list_artifacts(run_id, "images")}
    assert any("+step+10+" in path for path in live)  # live grids translate the last training inputs

    # A user's own digit, 32 px, translated to the inverted domain and back.
    digit = np.zeros((32, 32), np.uint8)
    digit[6:26, 12:20] = 255
    Image.fromarray(digit).save(tmp_path / "mine.png")
    registry = ["--tracking-uri", mlflow_server]
    for direction in ("a2b", "b2a"):
        out = tmp_path / f"{direction}.png"
        command = ["sample", "models:/t-cyclegan@champion", "--input", str(tmp_path / "mine.png"), "--out", str(out)]
        assert cli.main([*command, "--direction", direction, *registry]) == 0
        assert out.stat().st_size > 0
    capsys.readouterr()
    assert cli.main(["sample", "models:/t-cyclegan@champion", *registry]) == 2
    assert "--input: a cyclegan model translates images" in capsys.readouterr().err
    missing = ["sample", "models:/t-cyclegan@champion", "--input", str(tmp_path / "nope.png"), *registry]
    assert cli.main(missing) == 2
    assert "nope.png" in capsys.readouterr().err
