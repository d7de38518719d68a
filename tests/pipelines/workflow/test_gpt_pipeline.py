"""The GPT pipeline end to end on a real local Ray and a real `mlflow server`: the loss falls,
evaluation logs perplexity and bits per byte, the registered model carries its tokenizer, and
`genpipe sample --prompt` continues a prompt from the registry."""

from __future__ import annotations

import math

import mlflow.pyfunc
import pandas as pd
import pytest

from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow

TINY_GPT = [
    "train.max_steps=30",
    "train.log_every=5",
    "train.warmup_steps=5",
    "evaluate.num_samples=16",
    "evaluate.max_new_tokens=20",
]


def test_gpt_trains_evaluates_registers_and_samples(ray_session, mlflow_server, tmp_path, capsys):
    options = [item for setting in TINY_GPT for item in ("--set", setting)]
    args = ["gpt-code-tiny", "--storage", str(tmp_path), "--tracking-uri", mlflow_server, "--workflow-id", "gpt"]
    assert cli.main(["run", *args, *options]) == 0
    # The console ends with the command to type next, aimed at the registry the run used.
    next_line = f"next: genpipe sample models:/gpt-code-tiny/1 --prompt 'def ' --tracking-uri {mlflow_server}"
    assert next_line in capsys.readouterr().out
    meta = Workflow(str(tmp_path), "gpt").meta()
    client = tracking.client(mlflow_server)
    history = sorted(client.get_metric_history(meta["run_id"], "train/transformer_loss"), key=lambda m: m.step)
    assert len(history) == 6 and history[-1].value < 0.75 * history[0].value
    assert history[0].value < 1.05 * math.log(257)  # GPT-2 init starts near uniform
    metrics = client.get_run(meta["run_id"]).data.metrics
    assert metrics["eval/perplexity"] == pytest.approx(math.exp(metrics["eval/val_loss"]), rel=1e-6)
    assert 0 < metrics["eval/bits_per_byte"] < 8 and metrics["train/tokens_per_s"] > 0
    samples = (tmp_path / "workflows" / "gpt" / "samples.md").read_text()
    assert "## 'def '" in samples and "## 'class Message'" in samples
    # Completions as tables: the evaluation's, and the live ones of training (the final step's).
    evaluated = {a.path for a in client.list_artifacts(meta["run_id"], "evaluation")}
    assert "evaluation/completions.json" in evaluated
    assert "train/samples.json" in {a.path for a in client.list_artifacts(meta["run_id"], "train")}
    # The registered MLflow Model carries the weights and the tokenizer, and completes prompts.
    model_id = Workflow(str(tmp_path), "gpt").record("evaluate")["result"]["model_id"]
    weights = {a.path for a in client.list_logged_model_artifacts(model_id, "artifacts/weights")}
    assert {f"artifacts/weights/{name}" for name in ("model.safetensors", "config.json", "tokenizer.json")} <= weights
    with tracking.pointed_at(mlflow_server):
        served = mlflow.pyfunc.load_model("models:/gpt-code-tiny@champion")
        answer = served.predict(pd.DataFrame({"prompt": ["def ", "import "], "max_new_tokens": [8, 8]}))
    assert list(answer.columns) == ["completion"] and answer["completion"][1].startswith("import ")

    capsys.readouterr()
    assert (
        cli.main(
            [
                "sample",
                "models:/gpt-code-tiny@champion",
                "--prompt",
                "import ",
                "--max-new-tokens",
                "30",
                "--tracking-uri",
                mlflow_server,
            ]
        )
        == 0
    )
    printed = capsys.readouterr().out
    assert printed.startswith("import ") and len(printed) > len("import ") + 10
    assert (
        cli.main(
            [
                "sample",
                "models:/gpt-code-tiny@champion",
                "--prompt",
                "x" * 400,
                "--max-new-tokens",
                "5",
                "--tracking-uri",
                mlflow_server,
            ]
        )
        == 0
    )
    assert "longer than the context; keeping its last 127" in capsys.readouterr().err
