"""Time series: sources split in time, windows that never leak the tail into training, rejects
with reasons, bad configs named by field; the AR family fits what statsmodels fits and the LSTM
forecaster beats the naive forecast."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from data_prep.config import DataConfig, SeriesFileSource, StatsmodelsSeriesSource
from data_prep.errors import DataError
from data_prep.modalities.series.build import read_series
from data_prep.prepare import prepare
from data_prep.readers import read_split
from models import build_model, resolve_config
from pipelines.train.model_setup import data_shape


def _ar2_series(n: int = 600, seed: int = 0) -> np.ndarray:
    """x_t = 5 + 0.6 x_{t-1} - 0.3 x_{t-2} + noise (stationary): a process with known answers."""
    rng = np.random.default_rng(seed)
    x = np.zeros(n)
    for t in range(2, n):
        x[t] = 5 * (1 - 0.6 + 0.3) + 0.6 * x[t - 1] - 0.3 * x[t - 2] + rng.normal()
    return x


def test_sunspots_split_in_time_at_split_at(ray_session, tmp_path):
    config = DataConfig(source=StatsmodelsSeriesSource(end=1987), seq_len=9, split_at=1921)
    manifest, _ = prepare(config, str(tmp_path))
    info = manifest.series
    assert info is not None and info.values == {"train": 221, "val": 67}  # 1700-1920 and 1921-1987
    assert manifest.splits["train"].rows == 221 - 9 and manifest.splits["val"].rows == 67
    series = read_series(manifest)
    train_values = series["value"][series["split"] == "train"].to_numpy()
    assert info.mean == pytest.approx(train_values.mean()) and info.std == pytest.approx(train_values.std())
    val = read_split(manifest, "val")["window"] * info.std + info.mean
    # The first held-out window ends at 1921's value and reads the 9 train years before it.
    np.testing.assert_allclose(val[0], series["value"].to_numpy()[221 - 9 : 222], rtol=1e-5)
    train = read_split(manifest, "train")["window"] * info.std + info.mean
    # Training's targets are 1709..1920, each after its 9 years: no held-out value is ever read.
    assert train.shape[1] == 10
    np.testing.assert_allclose(train[:, -1], train_values[9:], rtol=1e-5)
    assert train.max() <= train_values.max() + 1e-3
    assert set(info.criterion_lags) == {"aic", "bic"} and 1 <= info.criterion_lags["bic"] <= 9


def test_a_csv_column_with_bad_cells_becomes_rejects_with_reasons(ray_session, tmp_path):
    values = _ar2_series(200)
    lines = ["t,y"] + [f"{t},{v:.4f}" for t, v in enumerate(values)]
    lines[50] = "49,n/a"
    (tmp_path / "s.csv").write_text("\n".join(lines) + "\n")
    source = SeriesFileSource(kind="series_file", path=str(tmp_path / "s.csv"), column="y", time_column="t")
    manifest, _ = prepare(DataConfig(source=source, seq_len=5, max_reject_fraction=0.05), str(tmp_path / "store"))
    assert manifest.rejects["count"] == 1
    with open(manifest.rejects["uri"]) as handle:
        assert "'n/a' is not a finite number" in handle.read()
    assert manifest.series is not None and sum(manifest.series.values.values()) == 199


@pytest.mark.parametrize(
    "config, field",
    [
        ({"source": {"kind": "statsmodels", "dataset": "sunspots", "column": "SPOTS"}}, "data.source.column"),
        ({"source": {"kind": "statsmodels"}, "seq_len": 400}, "data.seq_len"),
        ({"source": {"kind": "statsmodels"}, "split_at": 3000}, "data.split_at"),
        ({"source": {"kind": "series_file", "path": "/nowhere.csv", "column": "y"}}, "data.source.path"),
    ],
)
def test_a_bad_series_config_names_its_field(ray_session, tmp_path, config, field):
    with pytest.raises(DataError, match=field):
        prepare(DataConfig.model_validate(config), str(tmp_path))


def _fit(family: str, windows: torch.Tensor, steps: int, lr: float, batch: int = 64, **params) -> torch.nn.Module:
    torch.manual_seed(0)
    data = {"context_len": windows.shape[1] - 1, "criterion_lags": {"aic": 2, "bic": 2}}
    model = build_model(family, resolve_config(family, "tiny", params, data))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    for _ in range(steps):
        rows = torch.randint(len(windows), (batch,))
        loss = model.loss(model.network_name, {"window": windows[rows]})
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model.eval()


def _windows(values: np.ndarray, length: int) -> torch.Tensor:
    normalised = (values - values.mean()) / values.std()
    return torch.tensor(np.lib.stride_tricks.sliding_window_view(normalised, length), dtype=torch.float32)


def test_ar_learns_the_coefficients_statsmodels_autoreg_finds():
    from statsmodels.tsa.ar_model import AutoReg

    values = _ar2_series()
    windows = _windows(values, 6)
    model = _fit("ar", windows, 1000, 0.01, batch=len(windows))
    normalised = (values - values.mean()) / values.std()
    reference = AutoReg(normalised, lags=2, trend="c").fit().params  # const, lag 1, lag 2
    ours = model.ar.linear.weight.detach()[0].flip(0).numpy()  # the window's last value is lag 1
    np.testing.assert_allclose(ours, reference[1:], atol=0.03)
    assert model.ar.linear.bias.item() == pytest.approx(reference[0], abs=0.03)
    paths = model.sample(200, torch.Generator().manual_seed(0), horizon=50, context=torch.tensor(normalised[-5:]))
    assert paths.shape == (200, 50)
    # Far ahead the forecast forgets its start: the stationary mean and spread.
    assert abs(paths[:, -1].mean().item()) < 0.2 and 0.7 < paths[:, -1].std().item() < 1.3


def test_lstm_forecaster_beats_the_naive_forecast_on_a_noisy_cycle():
    t = np.arange(800)
    values = np.sin(2 * np.pi * t / 12) + 0.1 * np.random.default_rng(0).normal(size=len(t))
    windows = _windows(values, 25)
    model = _fit("lstm-forecaster", windows[:600], 300, 0.01)
    test = windows[600:]
    mean, _ = model.predict(test[:, :-1])
    rmse = (mean - test[:, -1]).pow(2).mean().sqrt()
    naive = (test[:, -2] - test[:, -1]).pow(2).mean().sqrt()
    assert rmse < 0.5 * naive, (rmse, naive)


def test_the_model_takes_its_normaliser_and_start_from_the_manifest(ray_session, tmp_path):
    manifest, _ = prepare(DataConfig(source=StatsmodelsSeriesSource(end=1987), seq_len=9, split_at=1921), str(tmp_path))
    config = resolve_config("ar", "bic", {}, data_shape(manifest))
    assert config.order == manifest.series.criterion_lags["bic"]
    assert config.last_values == manifest.series.last_values and len(config.last_values) == 9
    with pytest.raises(ValueError, match="lags"):
        resolve_config("ar", "tiny", {"lags": 12}, data_shape(manifest))
