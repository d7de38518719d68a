"""WaveNet and DiffWave on the built-in audio set (issue 32): WaveNet's bits per sample against the
uniform 8 bits and a linear-prediction baseline, the audio Fréchet distance of both families'
clips against real held-out clips, and WaveNet's generation samples/s with and without the cached
dilated states.

`python benchmarks/audio_bench.py [--seeds 3] [--steps 500] [--record]`

The data is the built-in `wavenet-chorales` dataset (chorales rendered by genpipe's synthesiser,
4 kHz, 0.5 s clips, labelled major/minor), prepared by genpipe's own `prepare`. Each family's tiny
preset trains in this process for the same steps (benchmarks/bare_training.py, batch 8) and is
scored by the pipeline's audio evaluation (pipelines/evaluate/audio.py; 128 clips). The linear predictor is
least squares on the previous `order` samples of the train clips, its residual a Gaussian whose
mass over each mu-law level's interval gives an exact likelihood of the same 256 levels WaveNet
predicts. Generation speed: the `small` preset (receptive field 2,047 samples), 4 clips of 1,000
samples, cached (Fast WaveNet) against the whole receptive field recomputed per sample.
`--record` appends the tables to benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.stats import norm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.bare_training import prepared_builtin, train_steps  # noqa: E402
from benchmarks.results_table import append_table, interval  # noqa: E402

BATCH = 8
FAMILIES = ("wavenet", "diffwave")
# Clips each model draws and the val clips they are compared with: more than the classifier's 64
# features, or their covariance is singular and the Fréchet distance swings by the hundreds.
CLIPS = 128


def level_edges() -> np.ndarray:
    """The amplitude interval of each mu-law level: (257,) edges, -inf and +inf at the ends."""
    from models.wavenet import mu_law_decode

    centres = mu_law_decode(torch.arange(256)).double().numpy()
    return np.concatenate([[-np.inf], (centres[1:] + centres[:-1]) / 2, [np.inf]])


def linear_prediction_bits(train: np.ndarray, val: np.ndarray, order: int) -> float:
    """Bits per sample of the val clips' mu-law levels under a least-squares linear predictor of
    the previous `order` samples with a Gaussian residual (the first `order` samples of each clip
    are predicted from zeros, as WaveNet sees silence before a clip)."""
    from models.wavenet import mu_law_encode

    def lagged(clips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        padded = np.pad(clips, ((0, 0), (order, 0)))
        columns = [padded[:, order - k : padded.shape[1] - k] for k in range(1, order + 1)]
        return np.stack(columns, axis=-1).reshape(-1, order), clips.reshape(-1)

    inputs, targets = lagged(train.astype(np.float64))
    weights, *_ = np.linalg.lstsq(inputs, targets, rcond=None)
    sigma = max(float(np.std(targets - inputs @ weights)), 1e-4)
    val_inputs, val_targets = lagged(val.astype(np.float64))
    mean = val_inputs @ weights
    levels = mu_law_encode(torch.from_numpy(val_targets)).numpy()
    edges = level_edges()
    mass = norm.cdf((edges[levels + 1] - mean) / sigma) - norm.cdf((edges[levels] - mean) / sigma)
    return float(-np.log2(np.maximum(mass, 1e-12)).mean())


def generation_speed(samples: int = 1000, clips: int = 4) -> dict[str, float]:
    from models import build_model, resolve_config

    data = {"clip_samples": samples, "sample_rate": 4000, "num_classes": 2, "class_names": ["major", "minor"]}
    model = build_model("wavenet", resolve_config("wavenet", "small", {}, data)).eval()
    speeds = {}
    for cached in (True, False):
        started = time.perf_counter()
        model.sample(clips, torch.Generator().manual_seed(0), use_cache=cached)
        speeds["cached" if cached else "recomputed"] = clips * samples / (time.perf_counter() - started)
    return speeds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--storage", default=None, help="where the dataset is prepared (a temporary folder)")
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(2)

    from data_prep.modalities.audio.modality import audio_info
    from data_prep.readers import read_split
    from models import build_model, resolve_config
    from pipelines.config import EvaluateConfig
    from pipelines.evaluate.audio import audio_scorer
    from pipelines.train.model_setup import data_shape

    manifest = prepared_builtin("wavenet-chorales", args.storage or tempfile.mkdtemp(prefix="audio-bench-"))
    info = audio_info(manifest)
    train, val = read_split(manifest, "train"), read_split(manifest, "val")
    train_audio, train_labels = torch.from_numpy(train["audio"]), torch.from_numpy(train["label"])
    rows: dict[str, dict[str, list[float]]] = {family: {} for family in FAMILIES}

    def batch(order: torch.Generator) -> dict[str, torch.Tensor]:
        drawn = torch.randint(len(train_audio), (BATCH,), generator=order)
        return {"audio": train_audio[drawn], "label": train_labels[drawn]}

    for seed in range(args.seeds):
        settings = EvaluateConfig(num_samples=CLIPS, classifier_epochs=10, seed=seed)
        score = audio_scorer(manifest, settings)[0]  # one classifier per seed scores both families
        for family in FAMILIES:
            started = time.monotonic()
            model = build_model(family, resolve_config(family, "tiny", {}, data_shape(manifest)))
            train_steps(model, batch, args.steps, seed, learning_rate=2e-3)
            with tempfile.TemporaryDirectory() as folder:
                metrics = score(model, Path(folder)) | {"seconds": time.monotonic() - started}
            for name, value in metrics.items():
                rows[family].setdefault(name.removeprefix("eval/"), []).append(value)
            print(f"{family} seed {seed}: {metrics}", flush=True)
    linear = {order: linear_prediction_bits(train["audio"][:, 0], val["audio"][:, 0], order) for order in (1, 16)}
    speeds = generation_speed()
    print(linear, speeds)
    wavenet, diffwave = rows["wavenet"], rows["diffwave"]
    quality = [
        f"| WaveNet tiny ({args.steps} steps) | {interval(wavenet['bits_per_sample'])} | "
        f"{interval(wavenet['audio_fid'], 2)} | {interval(wavenet['class_accuracy'], 2)} |",
        f"| DiffWave tiny ({args.steps} steps) | — | {interval(diffwave['audio_fid'], 2)} | "
        f"{interval(diffwave['class_accuracy'], 2)} |",
        f"| linear prediction, order 16 | {linear[16]:.3f} | — | — |",
        f"| linear prediction, order 1 | {linear[1]:.3f} | — | — |",
        "| uniform over 256 levels | 8.000 | — | — |",
        f"| real train clips | — | {interval(wavenet['audio_fid_real_data'], 2)} | — |",
    ]
    speed = [
        f"| cached dilated states (Fast WaveNet) | {speeds['cached']:,.0f} |",
        f"| receptive field recomputed per sample | {speeds['recomputed']:,.0f} |",
    ]
    print("\n".join(quality + speed))
    if args.record:
        about = [
            f"`python benchmarks/audio_bench.py --seeds {args.seeds} --steps {args.steps}`: the built-in",
            f"wavenet-chorales data ({info.clips['train']} train / {info.clips['val']} val clips of "
            f"{info.clip_samples} samples at {info.sample_rate} Hz, major/minor); each family's tiny preset trained in",
            f"one process (batch {BATCH}) and scored by the pipeline's audio evaluation ({CLIPS} clips; the Fréchet",
            "distance on the yardstick classifier's features of log spectrograms). Mean ± 95% t-interval over",
            f"{args.seeds} seeds.",
        ]
        columns = ["model", "bits/sample (val)", "audio Fréchet distance", "class accuracy"]
        append_table("Audio: WaveNet and DiffWave on rendered chorales (issue 32)", about, columns, quality)
        about = ["WaveNet `small` (2 stacks of 10 layers, receptive field 2,047), 4 clips of 1,000 samples, 2 threads."]
        append_table("Audio: WaveNet generation speed (issue 32)", about, ["generation", "samples/s"], speed)


if __name__ == "__main__":
    main()
