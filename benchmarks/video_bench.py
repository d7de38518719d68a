"""ConvLSTM and video diffusion on moving digits (issue 32): per-frame MSE and SSIM at each
horizon step against the copy-last-frame baseline, classifier-FID of the predicted frames, and
prediction speed in frames/s.

`python benchmarks/video_bench.py [--seeds 3] [--steps 600] [--record]`

The data is the built-in `convlstm-digits` dataset (600 videos of two digits bouncing on a 32x32
canvas, clips of 10 frames: 5 given, 5 predicted), prepared by genpipe's own `prepare`. Each
family's tiny preset trains in this process for the same steps (benchmarks/bare_training.py,
batch 16) and is scored by the pipeline's video evaluation (pipelines/evaluate/video.py) on 64
val clips. `--record` appends the tables to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bare_training import prepared_builtin, train_steps  # noqa: E402
from benchmarks.results_table import append_table, interval  # noqa: E402

BATCH = 16
FAMILIES = ("convlstm", "video-diffusion")
CLIPS = 64


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=600)
    parser.add_argument("--storage", default=None, help="where the dataset is prepared (a temporary folder)")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from data_prep.modalities.video.modality import video_info
    from data_prep.readers import read_split
    from models import build_model, resolve_config
    from pipelines.config import EvaluateConfig
    from pipelines.evaluate.video import HORIZON_FILE, video_scorer
    from pipelines.train.model_setup import data_shape

    manifest = prepared_builtin("convlstm-digits", args.storage or tempfile.mkdtemp(prefix="video-bench-"))
    info = video_info(manifest)
    train = read_split(manifest, "train")
    clips, labels = torch.from_numpy(train["video"]), torch.from_numpy(train["label"])
    scores: dict[str, dict[str, list]] = {family: {} for family in (*FAMILIES, "copy-last")}

    def batch(order: torch.Generator) -> dict[str, torch.Tensor]:
        drawn = torch.randint(len(clips), (BATCH,), generator=order)
        return {"video": clips[drawn], "label": labels[drawn]}

    def keep(family: str, name: str, value: object) -> None:
        scores[family].setdefault(name, []).append(value)

    for seed in range(args.seeds):
        score = video_scorer(manifest, EvaluateConfig(num_samples=CLIPS, classifier_epochs=3, seed=seed))[0]
        for family in FAMILIES:
            started = time.monotonic()
            model = build_model(family, resolve_config(family, "tiny", {}, data_shape(manifest)))
            train_steps(model, batch, args.steps, seed, learning_rate=2e-3)
            trained = time.monotonic() - started
            with tempfile.TemporaryDirectory() as folder:
                metrics = score(model, Path(folder))
                table = json.loads((Path(folder) / HORIZON_FILE).read_text())
            for name, value in metrics.items():
                keep(family, name.removeprefix("eval/"), value)
            keep(family, "train_seconds", trained)
            keep(family, "mse_by_step", table["mse"])
            keep(family, "ssim_by_step", table["ssim"])
            if family == FAMILIES[0]:  # the baseline is the same for every family
                keep("copy-last", "mse_by_step", table["mse_copy_last"])
                keep("copy-last", "ssim_by_step", table["ssim_copy_last"])
            print(f"{family} seed {seed}: {metrics} (trained in {trained:.0f} s)", flush=True)

    horizon = info.clip_frames - info.context_frames

    def by_step(family: str, name: str, step: int) -> list[float]:
        return [run[step] for run in scores[family][f"{name}_by_step"]]

    names = {"convlstm": "ConvLSTM tiny", "video-diffusion": "video diffusion tiny", "copy-last": "copy last frame"}
    quality = []
    for family in (*FAMILIES, "copy-last"):
        mse = " | ".join(interval(by_step(family, "mse", h), 4) for h in range(horizon))
        ssim = " | ".join(interval(by_step(family, "ssim", h), 3) for h in range(horizon))
        quality.append(f"| {names[family]} | MSE | {mse} |")
        quality.append(f"| {names[family]} | SSIM | {ssim} |")
    summary = [
        f"| {names[family]} | {interval(scores[family]['frame_mse'], 4)} | {interval(scores[family]['frame_ssim'], 3)} "
        f"| {interval(scores[family]['frame_fid'], 1)} | {interval(scores[family]['frames_per_second'], 0)} "
        f"| {interval(scores[family]['train_seconds'], 0)} |"
        for family in FAMILIES
    ]
    summary.append(
        f"| copy last frame | {interval(scores[FAMILIES[0]]['frame_mse_copy_last'], 4)} "
        f"| {interval(scores[FAMILIES[0]]['frame_ssim_copy_last'], 3)} | — | — | — |"
    )
    floor = interval(scores[FAMILIES[0]]["frame_fid_real_data"], 1)
    summary.append(f"| real train futures | — | — | {floor} | — | — |")
    print("\n".join(quality + summary))
    if args.record:
        about = [
            f"`python benchmarks/video_bench.py --seeds {args.seeds} --steps {args.steps}`: the built-in",
            f"convlstm-digits data ({info.clips['train']} train / {info.clips['val']} val clips of {info.clip_frames}",
            f"frames of {info.frame_shape[1]}x{info.frame_shape[2]}, {info.context_frames} given); each family's tiny",
            f"preset trained in one process for {args.steps} steps (batch {BATCH}) and scored by the pipeline's video",
            f"evaluation on {CLIPS} val clips (pixels in [0, 1]). Mean ± 95% t-interval over {args.seeds} seeds.",
        ]
        columns = ["model", "score", *(f"step {h + 1}" for h in range(horizon))]
        append_table("Video: MSE and SSIM per horizon step on moving digits (issue 32)", about, columns, quality)
        columns = ["model", "MSE (mean over horizon)", "SSIM", "classifier-FID", "frames/s predicted", "train s"]
        about = ["The same runs: means over the horizon, FID of predicted frames against the true ones."]
        append_table("Video: prediction quality and speed (issue 32)", about, columns, summary)


if __name__ == "__main__":
    main()
