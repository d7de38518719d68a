"""Screenshots of what a user sees in MLflow's UI after a quickstart (not part of CI).

Starts an `mlflow server` on 127.0.0.1, runs `genpipe run quickstart` against it, and photographs
the experiment, the run page, the logged model and the registered version in headless Chromium,
Debian's own (no browser download; Chromium's `--screenshot`, no driver library):

    apt-get install chromium
    .venv/bin/python infra/mlflow_screenshots.py --out docs/mlflow

The pages are MLflow's single-page app, addressed by fragment (`#/experiments/...`); Chromium's
virtual time budget lets the app fetch its data and draw its charts before the shot.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from pipelines.cluster import local as local_cluster
from pipelines.registry import tracking

REPO = Path(__file__).resolve().parent.parent
MODEL = "quickstart-ddpm"


def run_quickstart(tracking_uri: str, storage: Path) -> dict[str, str]:
    """The quickstart against the server; the ids the pages are addressed by."""
    command = [str(REPO / ".venv" / "bin" / "genpipe"), "run", "quickstart"]
    command += ["--storage", str(storage), "--tracking-uri", tracking_uri]
    subprocess.run(command, check=True, cwd=REPO)
    client = tracking.client(tracking_uri)
    version = client.get_model_version_by_alias(MODEL, "champion")
    run = client.get_run(version.run_id)
    return {
        "experiment": run.info.experiment_id,
        "run": run.info.run_id,
        "model": (version.source or "").removeprefix("models:/"),
        "version": str(version.version),
    }


def pages(url: str, ids: dict[str, str]) -> dict[str, str]:
    experiment = f"{url}/#/experiments/{ids['experiment']}"
    return {
        "experiment.png": experiment,
        "run.png": f"{experiment}/runs/{ids['run']}",
        "run-charts.png": f"{experiment}/runs/{ids['run']}/model-metrics",
        "run-images.png": f"{experiment}/runs/{ids['run']}/artifacts",
        "logged-model.png": f"{experiment}/models/{ids['model']}",
        "models.png": f"{experiment}/models",
        "model-version.png": f"{url}/#/models/{MODEL}/versions/{ids['version']}",
    }


CHROMIUM_FLAGS = [
    # As this workplace's machines need it: root, no GPU, and no background connections to a
    # network that refuses them (FIELD_NOTES, "These machines").
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
    "--window-size=1500,950",
    "--virtual-time-budget=25000",
]


def photograph(targets: dict[str, str], out: Path, browser: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for name, address in targets.items():
        with tempfile.TemporaryDirectory() as profile:
            shot = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={out / name}", address]
            subprocess.run(shot, check=True, capture_output=True, timeout=120)
        print(f"{out / name}: {address}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/mlflow", help="folder for the PNGs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium", help="the browser")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        server = local_cluster.start_mlflow(root / "mlflow", str(root / "mlflow" / "artifacts"))
        try:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            ids = run_quickstart(server.url, root / "store")
            photograph(pages(server.url, ids), Path(args.out), args.chromium)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
