"""Scoring a forecaster on the held-out tail of its series, and drawing its forecasts.

One-step-ahead forecasts of every held-out value from the true values before it: RMSE and MAE in
the data's units, the Gaussian NLL per value, the share of values inside the 95% interval, and
the naive forecast's RMSE (tomorrow = today) to read them by. The picture: the series, the
one-step forecasts with their intervals over the tail, and a fan of sampled paths past the end.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from data_prep.manifest import Manifest
from data_prep.modalities.series.build import read_series
from data_prep.modalities.series.modality import series_info
from data_prep.readers import read_split
from models.base import GenerativeModel
from models.capabilities import forecaster

Z_95 = 1.959964


@torch.no_grad()
def one_step_forecasts(model: GenerativeModel, windows: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(mean, standard deviation) of each window's last value from the values before it, in the
    data's units."""
    device = next(model.parameters()).device
    series = forecaster(model)
    mean, std = series.to_data_units(*series.predict(windows[:, :-1].to(device)))
    return mean.cpu().numpy(), std.cpu().numpy()


def pyplot() -> Any:
    """matplotlib's pyplot on the file-only Agg backend (no display on a cluster node)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def forecast_metrics(truth: np.ndarray, mean: np.ndarray, std: np.ndarray, previous: np.ndarray) -> dict[str, float]:
    error = mean - truth
    nll = 0.5 * np.log(2 * math.pi * std**2) + 0.5 * (error / std) ** 2
    return {
        "eval/rmse": float(np.sqrt(np.mean(error**2))),
        "eval/mae": float(np.mean(np.abs(error))),
        "eval/nll": float(np.mean(nll)),
        "eval/interval_coverage": float(np.mean(np.abs(error) <= Z_95 * std)),
        "eval/naive_rmse": float(np.sqrt(np.mean((previous - truth) ** 2))),
    }


def series_scorer(manifest: Manifest, num_paths: int, seed: int):
    """A scorer (pipelines/evaluate/scorers.py) for a time-series dataset."""
    info = series_info(manifest)
    windows = torch.from_numpy(read_split(manifest, "val")["window"])
    truth = windows[:, -1].numpy() * info.std + info.mean
    previous = windows[:, -2].numpy() * info.std + info.mean
    series = read_series(manifest)

    def score(model: GenerativeModel, artifacts: Path | None) -> dict[str, float]:
        mean, std = one_step_forecasts(model, windows)
        metrics = forecast_metrics(truth, mean, std, previous)
        if artifacts is not None:
            generator = torch.Generator(next(model.parameters()).device).manual_seed(seed)
            paths = model.sample(num_paths, generator=generator).cpu().numpy()
            draw_forecasts(series, mean, std, paths, metrics, artifacts / "samples.png")
        return metrics

    return score, {"val_values": len(windows)}


def draw_forecasts(
    series: Any, mean: np.ndarray, std: np.ndarray, paths: np.ndarray, metrics: dict[str, float], path: Path
) -> Path:
    """The series, one-step forecasts over the held-out tail with 95% intervals, and the median
    and 95% band of sampled paths after the end."""
    plt = pyplot()
    times, values = series["time"].to_numpy(), series["value"].to_numpy()
    held_out = times[len(times) - len(mean) :]
    step = float(np.median(np.diff(times))) if len(times) > 1 else 1.0
    future = times[-1] + step * np.arange(1, paths.shape[1] + 1)
    figure, axes = plt.subplots(figsize=(10, 4), dpi=100)
    axes.plot(times, values, color="black", linewidth=0.8, label="series")
    axes.plot(held_out, mean, color="tab:blue", linewidth=1.0, label="one-step forecast")
    axes.fill_between(held_out, mean - Z_95 * std, mean + Z_95 * std, color="tab:blue", alpha=0.2, label="95% interval")
    low, median, high = np.percentile(paths, [2.5, 50, 97.5], axis=0)
    axes.plot(future, median, color="tab:orange", linewidth=1.0, label="sampled paths: median")
    axes.fill_between(future, low, high, color="tab:orange", alpha=0.2, label="sampled paths: 95%")
    axes.axvline(held_out[0], color="grey", linestyle=":", linewidth=0.8)
    axes.set_title(f"held-out RMSE {metrics['eval/rmse']:.4g} (naive {metrics['eval/naive_rmse']:.4g})")
    axes.legend(loc="upper left", fontsize=7)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def save_paths(paths: np.ndarray, out: str | Path) -> tuple[Path, Path]:
    """Forecast paths (n, horizon) as a CSV (the median, the 95% band, then each path by step)
    and a fan chart beside it (`out`, a .png)."""
    plt = pyplot()
    picture = Path(out).with_suffix(".png")
    table = picture.with_suffix(".csv")
    low, median, high = np.percentile(paths, [2.5, 50, 97.5], axis=0)
    header = ["step", "median", "low_95", "high_95", *(f"path_{i}" for i in range(len(paths)))]
    rows = [",".join(header)]
    for step in range(paths.shape[1]):
        numbers = [median[step], low[step], high[step], *paths[:, step]]
        rows.append(",".join([str(step + 1), *(f"{value:.6g}" for value in numbers)]))
    table.write_text("\n".join(rows) + "\n")
    figure, axes = plt.subplots(figsize=(8, 3.5), dpi=100)
    steps = np.arange(1, paths.shape[1] + 1)
    for path in paths[:20]:
        axes.plot(steps, path, color="grey", linewidth=0.5, alpha=0.5)
    axes.plot(steps, median, color="tab:orange", label="median")
    axes.fill_between(steps, low, high, color="tab:orange", alpha=0.2, label="95% of paths")
    axes.set_xlabel("steps after the series ends")
    axes.legend(fontsize=7)
    figure.tight_layout()
    figure.savefig(picture)
    plt.close(figure)
    return picture, table
