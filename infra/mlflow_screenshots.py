"""Screenshots of what a user sees in MLflow's UI after a quickstart (not part of CI).

Starts an `mlflow server` on 127.0.0.1, runs `genpipe run quickstart` against it, and photographs
the experiment, the run page, the logged model and the registered version in headless Chromium,
Debian's own (no browser download; Chromium's `--screenshot`, no driver library):

    apt-get install chromium
    .venv/bin/python infra/mlflow_screenshots.py --out docs/pictures

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


# MLflow 3.17 opens an experiment in its GenAI view unless the page asks for the training one
# (the experiment's `mlflow.experimentKind` tag, which genpipe sets, decides only the default of a
# browser that has not chosen yet).
TRAINING_VIEW = "?workflowType=machine_learning"


def pages(url: str, ids: dict[str, str]) -> dict[str, str]:
    experiment = f"{url}/#/experiments/{ids['experiment']}"
    return {
        "mlflow-experiment.png": f"{experiment}/runs{TRAINING_VIEW}",
        "mlflow-run.png": f"{experiment}/runs/{ids['run']}{TRAINING_VIEW}",
        "mlflow-run-charts.png": f"{experiment}/runs/{ids['run']}/model-metrics{TRAINING_VIEW}",
        "mlflow-logged-model.png": f"{experiment}/models/{ids['model']}{TRAINING_VIEW}",
        "mlflow-model-version.png": f"{url}/#/models/{MODEL}/versions/{ids['version']}{TRAINING_VIEW}",
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


ASSISTANT_PANEL_X = 1115  # MLflow's assistant panel opens on a new browser's first page, right of here


def photograph(targets: dict[str, str], out: Path, browser: str) -> None:
    """Each page as a small PNG: the assistant panel cut off, 256 colours."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    for name, address in targets.items():
        with tempfile.TemporaryDirectory() as profile:
            shot = Path(profile) / "shot.png"
            command = [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={shot}", address]
            subprocess.run(command, check=True, capture_output=True, timeout=120)
            with Image.open(shot) as image:
                page = image.convert("RGB").crop((0, 0, ASSISTANT_PANEL_X, image.height))
                page.quantize(colors=256).save(out / name, optimize=True)
        print(f"{out / name}: {address}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/pictures", help="folder for the PNGs")
    parser.add_argument("--chromium", default=shutil.which("chromium") or "chromium", help="the browser")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        server = local_cluster.start_mlflow(root / "mlflow", str(root / "mlflow" / "artifacts"))
        try:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
            ids = run_quickstart(server.url, root / "store")
            photograph(pages(server.url, ids), Path(args.out), args.chromium)
            samples = next((root / "store" / "workflows").glob("*/samples.png"))
            shutil.copyfile(samples, Path(args.out) / "samples-digits-ddpm.png")
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
