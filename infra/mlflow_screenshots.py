"""Screenshots of what a user sees in MLflow's UI after a quickstart (not part of CI).

Starts an `mlflow server` on 127.0.0.1, runs `genpipe run quickstart` against it, and photographs
the experiment, the run page, the logged model and the registered version in headless Chromium:

    .venv/bin/pip install playwright && .venv/bin/playwright install chromium   # needs the internet
    .venv/bin/python infra/mlflow_screenshots.py --out docs/mlflow

The pages are MLflow's single-page app, addressed by fragment (`#/experiments/...`); each shot
waits for the page's network to go quiet and then a little more for the charts to draw.
"""

from __future__ import annotations

import argparse
import os
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


def photograph(targets: dict[str, str], out: Path) -> None:
    from playwright.sync_api import sync_playwright  # optional: only this script needs it

    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch()
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        for name, address in targets.items():
            page.goto(address)
            page.wait_for_load_state("networkidle")
            page.wait_for_timeout(2000)
            page.screenshot(path=str(out / name), full_page=True)
            print(f"{out / name}: {address}")
        browser.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/mlflow", help="folder for the PNGs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        server = local_cluster.start_mlflow(root / "mlflow", str(root / "mlflow" / "artifacts"))
        try:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            ids = run_quickstart(server.url, root / "store")
            photograph(pages(server.url, ids), Path(args.out))
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
