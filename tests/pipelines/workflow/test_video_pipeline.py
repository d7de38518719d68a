"""Video prediction end to end on a real local Ray and a real `mlflow server`: moving digits
prepared, a ConvLSTM trained, scored per horizon step against copy-last-frame, registered as a
model that answers predicted frames, and `genpipe sample --input clip.gif --horizon`."""

from __future__ import annotations

import json
from pathlib import Path

import imageio.v3 as iio
import mlflow.pyfunc
import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageSequence

from data_prep.modalities.video.sources import MovingDigitsSource, moving_digits_video
from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow

TINY_VIDEO = [
    "data.source.videos=120",
    "train.max_steps=30",
    "train.log_every=10",
    "train.warmup_steps=5",
    "evaluate.num_samples=8",
    "evaluate.classifier_epochs=2",
]


def test_convlstm_predicts_moving_digits_registers_and_continues_a_gif(ray_session, mlflow_server, tmp_path, capsys):
    options = [item for setting in TINY_VIDEO for item in ("--set", setting)]
    args = ["convlstm-digits", "--storage", str(tmp_path), "--tracking-uri", mlflow_server, "--workflow-id", "video"]
    assert cli.main(["run", *args, *options]) == 0
    out = capsys.readouterr().out
    assert "next: genpipe sample models:/convlstm-digits/1 --input CLIP.gif --horizon 5 --out prediction.gif" in out
    meta = Workflow(str(tmp_path), "video").meta()
    client = tracking.client(mlflow_server)
    history = sorted(client.get_metric_history(meta["run_id"], "train/convlstm_loss"), key=lambda m: m.step)
    assert history[-1].value < history[0].value
    metrics = client.get_run(meta["run_id"]).data.metrics
    assert 0 < metrics["eval/frame_mse"] < 1 and 0 < metrics["eval/frame_mse_copy_last"] < 1
    assert -1 <= metrics["eval/frame_ssim"] <= 1 and metrics["eval/frame_fid"] > metrics["eval/frame_fid_real_data"]
    assert metrics["eval/frames_per_second"] > 0
    artifacts = {a.path for a in client.list_artifacts(meta["run_id"], "evaluation")}
    assert {"evaluation/samples.gif", "evaluation/samples.png", "evaluation/horizon.json"} <= artifacts
    live = {a.path for a in client.list_artifacts(meta["run_id"], "images")}
    assert any(path.startswith("images/predictions+step+30+") for path in live)  # the live preview, at the end
    horizon_file = client.download_artifacts(meta["run_id"], "evaluation/horizon.json", str(tmp_path))
    horizon = json.loads(Path(horizon_file).read_text())
    assert horizon["step"] == [1, 2, 3, 4, 5] and len(horizon["mse"]) == len(horizon["ssim_copy_last"]) == 5
    assert np.mean(horizon["mse"]) == pytest.approx(metrics["eval/frame_mse"], rel=1e-5)
    with tracking.pointed_at(mlflow_server):
        served = mlflow.pyfunc.load_model("models:/convlstm-digits@champion")
        context = -np.ones((2, 5, 1, 32, 32), dtype=np.float32)
        request = {"n": [2], "seed": [1], "options": [json.dumps({"input": context.tolist(), "horizon": 3})]}
        answer = served.predict(pd.DataFrame(request))
    assert answer.dtype == np.float32 and answer.shape == (2, 3, 1, 32, 32) and np.abs(answer).max() <= 1

    row = moving_digits_video(MovingDigitsSource(frames=8, seed=5), {"id": 0})
    frames = np.frombuffer(row["frames"], dtype=np.uint8).reshape(row["shape"])
    iio.imwrite(tmp_path / "clip.gif", frames[..., 0], duration=100, loop=0)
    sample = ["sample", "models:/convlstm-digits@champion", "--tracking-uri", mlflow_server]
    asked = ["--input", str(tmp_path / "clip.gif"), "--horizon", "7", "--out", str(tmp_path / "prediction.gif")]
    assert cli.main([*sample, *asked]) == 0
    with Image.open(tmp_path / "prediction.gif") as gif:  # Pillow joins equal frames: count their time
        shown = sum(frame.info["duration"] for frame in ImageSequence.Iterator(gif))
    assert shown == (5 + 7) * 200  # the last 5 frames of the clip, then the 7 predicted, at 5 frames/s
    assert cli.main([*sample, "--out", str(tmp_path / "x.gif")]) == 2
    assert "--input: a convlstm model continues clips" in capsys.readouterr().err
    assert cli.main([*sample, "--input", str(tmp_path / "clip.gif"), "--horizon", "0"]) == 2
    assert "--horizon: a whole number of frames from 1 to 1000" in capsys.readouterr().err
