"""A language model of music end to end on a real local Ray and a real `mlflow server`: chorales
from music21's corpus become event ids, GPT learns them, the evaluation scores bits per token and
the pieces it writes, the registered model answers with MIDI, and `genpipe sample --out` writes
a piece as MIDI or WAV."""

from __future__ import annotations

import base64
import io
import math
import wave

import mlflow.pyfunc
import pandas as pd
import pytest

from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow
from serving.music import notes_from_midi

pytestmark = pytest.mark.slow

TINY_MUSIC = [
    "data.source.max_files=12",
    "data.seq_len=128",
    "model.params.block_size=128",
    "train.max_steps=30",
    "train.log_every=10",
    "train.warmup_steps=5",
    "evaluate.num_samples=8",
]


def test_gpt_learns_chorales_registers_and_writes_midi(ray_session, mlflow_server, tmp_path, capsys):
    options = [item for setting in TINY_MUSIC for item in ("--set", setting)]
    args = ["gpt-chorales", "--storage", str(tmp_path), "--tracking-uri", mlflow_server, "--workflow-id", "music"]
    assert cli.main(["run", *args, *options]) == 0
    printed = capsys.readouterr().out
    assert f"next: genpipe sample models:/gpt-chorales/1 -n 4 --out piece.mid --tracking-uri {mlflow_server}" in printed
    meta = Workflow(str(tmp_path), "music").meta()
    client = tracking.client(mlflow_server)
    history = sorted(client.get_metric_history(meta["run_id"], "train/transformer_loss"), key=lambda m: m.step)
    assert history[-1].value < 0.6 * history[0].value
    metrics = client.get_run(meta["run_id"]).data.metrics
    assert metrics["eval/bits_per_token"] == pytest.approx(metrics["eval/val_loss"] / math.log(2))
    assert metrics["eval/bits_per_token"] < math.log2(169)  # better than a uniform guess over the vocabulary
    for name in ("pitch_class_distance", "interval_distance", "note_density_distance"):
        assert metrics[f"eval/{name}"] >= 0 and f"eval/{name}_real_data" in metrics
    assert 0 <= metrics["eval/in_key_share"] <= 1
    pieces = {a.path for a in client.list_artifacts(meta["run_id"], "evaluation/pieces")}
    assert {f"evaluation/pieces/piece_0.{suffix}" for suffix in ("mid", "wav", "png")} <= pieces
    assert (tmp_path / "workflows" / "music" / "samples.png").read_bytes()[:4] == b"\x89PNG"
    # The registered MLflow Model carries its tokenizer and answers with MIDI files.
    with tracking.pointed_at(mlflow_server):
        served = mlflow.pyfunc.load_model("models:/gpt-chorales@champion")
        answer = served.predict(pd.DataFrame({"n": [3], "max_new_tokens": [128], "seed": [3]}))
    assert list(answer.columns) == ["midi", "notes"] and len(answer) == 3 and answer["notes"].sum() > 0
    for midi, notes in zip(answer["midi"], answer["notes"], strict=True):  # a piece may end before its first note
        assert len(notes_from_midi(base64.b64decode(midi), ticks_per_quarter=4)) == notes

    sample = ["sample", "models:/gpt-chorales@champion", "--tracking-uri", mlflow_server, "--max-new-tokens", "96"]
    assert cli.main([*sample, "--out", str(tmp_path / "piece.wav")]) == 0
    assert "wrote 1 sample(s)" in capsys.readouterr().out
    with wave.open(io.BytesIO((tmp_path / "piece.wav").read_bytes())) as sound:
        assert sound.getnframes() > 0
    assert cli.main([*sample, "-n", "2", "--out", str(tmp_path / "p.mid")]) == 0
    assert (tmp_path / "p-0.mid").read_bytes()[:4] == b"MThd" and (tmp_path / "p-1.mid").exists()
    assert cli.main([*sample, "--out", str(tmp_path / "piece.mp3")]) == 2
    assert "--out " in capsys.readouterr().err
    assert cli.main([*sample, "--label", "3"]) == 2  # an option of image models, not of music
    assert "--label: a gpt model takes no label" in capsys.readouterr().err
