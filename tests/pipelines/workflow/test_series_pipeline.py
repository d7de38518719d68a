"""A time series from a user's CSV through `genpipe run`: a config mistake exits 2 naming the field,
the fixed config trains AR(p) on a Ray Train worker, scores the held-out tail against the naive
forecast, registers, and `genpipe sample` writes forecast paths."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow


def _config(tmp_path, **model_params) -> str:
    rng = np.random.default_rng(1)
    values = np.zeros(400)
    for t in range(2, len(values)):
        values[t] = 0.7 * values[t - 1] - 0.2 * values[t - 2] + rng.normal()
    lines = ["month,sales"] + [f"{t},{v + 100:.3f}" for t, v in enumerate(values)]
    lines[200] = "199,"  # a missing cell: a reject, not a NaN in training
    (tmp_path / "sales.csv").write_text("\n".join(lines) + "\n")
    config = {
        "name": "sales",
        "data": {
            "source": {
                "kind": "series_file",
                "path": str(tmp_path / "sales.csv"),
                "column": "sales",
                "time_column": "month",
            },
            "seq_len": 8,
            "split_at": 320,
        },
        "model": {"family": "ar", "preset": "bic", "params": model_params},
        "train": {"num_workers": 1, "batch_size": 64, "max_steps": 400, "learning_rate": 0.02, "log_every": 100},
        "evaluate": {"num_samples": 50},
        "register": {"model_name": "t-sales"},
    }
    path = tmp_path / "sales.yaml"
    path.write_text(yaml.safe_dump(config))
    return str(path)


def test_a_csv_series_trains_scores_registers_and_forecasts(ray_session, mlflow_server, tmp_path, capsys):
    common = ["--storage", str(tmp_path / "store"), "--tracking-uri", mlflow_server]
    assert cli.main(["run", _config(tmp_path, lags=20), *common]) == 2
    assert "model.params.lags" in capsys.readouterr().err

    assert cli.main(["run", _config(tmp_path), *common, "--workflow-id", "sales"]) == 0
    run_id = Workflow(str(tmp_path / "store"), "sales").meta()["run_id"]
    client = tracking.client(mlflow_server)
    logged = client.get_run(run_id).data.metrics
    assert logged["eval/rmse"] < 0.95 * logged["eval/naive_rmse"], logged
    assert 0.8 < logged["eval/interval_coverage"] <= 1.0
    assert "evaluation/samples.png" in {a.path for a in client.list_artifacts(run_id, "evaluation")}

    out = tmp_path / "forecast.png"
    sample = ["sample", "models:/t-sales@champion", "-n", "50", "--option", "horizon=10", "--out", str(out)]
    assert cli.main([*sample, "--tracking-uri", mlflow_server]) == 0
    rows = (tmp_path / "forecast.csv").read_text().splitlines()
    assert len(rows) == 11 and rows[0].startswith("step,median,low_95,high_95,path_0")
    assert out.stat().st_size > 0
