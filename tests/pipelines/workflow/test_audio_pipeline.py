"""WaveNet end to end on a real local Ray and a real `mlflow server`: chorales rendered as audio,
trained, scored (bits per sample, the audio Fréchet distance, class accuracy), registered as a
model that answers with clips, and `genpipe sample --label --out clip.wav`."""

from __future__ import annotations

import io
import wave

import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest

from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow

TINY_AUDIO = [
    "data.source.max_files=6",
    "data.clip_seconds=0.25",
    "train.max_steps=40",
    "train.log_every=10",
    "train.warmup_steps=5",
    "evaluate.num_samples=8",
    "evaluate.classifier_epochs=3",
]


def test_wavenet_learns_rendered_chorales_registers_and_writes_wav(ray_session, mlflow_server, tmp_path, capsys):
    options = [item for setting in TINY_AUDIO for item in ("--set", setting)]
    args = ["wavenet-chorales", "--storage", str(tmp_path), "--tracking-uri", mlflow_server, "--workflow-id", "audio"]
    assert cli.main(["run", *args, *options]) == 0
    assert "next: genpipe sample models:/wavenet-chorales/1 -n 4 --out clip.wav" in capsys.readouterr().out
    meta = Workflow(str(tmp_path), "audio").meta()
    client = tracking.client(mlflow_server)
    history = sorted(client.get_metric_history(meta["run_id"], "train/wavenet_loss"), key=lambda m: m.step)
    assert history[-1].value < history[0].value
    metrics = client.get_run(meta["run_id"]).data.metrics
    assert 0 < metrics["eval/bits_per_sample"] < metrics["eval/uniform_bits_per_sample"] == 8
    assert metrics["eval/audio_fid"] > metrics["eval/audio_fid_real_data"] >= 0
    assert 0 <= metrics["eval/class_accuracy"] <= 1
    clips = {a.path for a in client.list_artifacts(meta["run_id"], "evaluation/clips")}
    assert {"evaluation/clips/clip_0.wav", "evaluation/clips/clip_0.png"} <= clips
    with tracking.pointed_at(mlflow_server):
        served = mlflow.pyfunc.load_model("models:/wavenet-chorales@champion")
        answer = served.predict(pd.DataFrame({"n": [2], "seed": [1], "label": ["major"]}))
    assert answer.dtype == np.float32 and answer.shape == (2, 1, 1000) and np.abs(answer).max() <= 1

    sample = ["sample", "models:/wavenet-chorales@champion", "--tracking-uri", mlflow_server]
    assert cli.main([*sample, "--label", "major", "--out", str(tmp_path / "clip.wav")]) == 0
    with wave.open(io.BytesIO((tmp_path / "clip.wav").read_bytes())) as sound:
        assert sound.getframerate() == 4000 and sound.getnframes() == 1000
    assert cli.main([*sample, "--label", "lydian"]) == 2
    assert "--label: 'lydian' is none of the model's classes" in capsys.readouterr().err
    assert cli.main([*sample, "--prompt", "a fugue"]) == 2
    assert "--prompt: a wavenet model takes no prompt" in capsys.readouterr().err
