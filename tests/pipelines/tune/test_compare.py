"""`genpipe compare` against a real Ray and a real MLflow server: two image families over two seeds
at an equal 2-second budget (and a text family listed as not fitting), the driver killed once a
trial has finished, `genpipe resume` completing the comparison without training that trial again;
then the leaderboard on the parent run, a child run per trial, the winner registered."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import REPO, TINY, seed_dataset

from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow

FID = "eval/classifier_fid"
FAMILIES = ("vae", "dcgan")
BUDGET_S = 2.0


def finished_children(uri: str, run_id: str) -> dict[str, int]:
    """trial id -> how many times its child run logged the score, for the trials that finished."""
    mlflow_client = tracking.client(uri)
    return {
        run.data.tags["genpipe.trial_id"]: len(mlflow_client.get_metric_history(run.info.run_id, FID))
        for run in tracking.child_runs(uri, run_id)
        if run.info.status == "FINISHED"
    }


def test_a_killed_comparison_resumes_and_ranks_registers_the_winner(
    ray_session, mlflow_server, quickstart_dataset, tmp_path
):
    storage = tmp_path / "store"
    seed_dataset(quickstart_dataset, storage)
    settings = [item for setting in TINY for item in ("--set", setting)]
    log = (tmp_path / "compare.log").open("w")
    command = [
        *("compare", "quickstart", "--families", ",".join((*FAMILIES, "gpt"))),
        *("--budget", f"{BUDGET_S:g}s", "--seeds", "2", "--workflow-id", "cmp"),
        *("--storage", str(storage), "--tracking-uri", mlflow_server, *settings),
    ]
    driver = subprocess.Popen(
        [sys.executable, "-m", "pipelines.cli", *command],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    workflow = Workflow(str(storage), "cmp")
    deadline = time.monotonic() + 300
    while not workflow.exists() or not finished_children(mlflow_server, workflow.meta()["run_id"]):
        assert driver.poll() is None and time.monotonic() < deadline, (tmp_path / "compare.log").read_text()[-3000:]
        time.sleep(0.5)
    time.sleep(1)  # Tune records the trial's end (a trial killed before it did runs again)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and every Ray process it started
    driver.wait()
    log.close()
    run_id = workflow.meta()["run_id"]
    before = finished_children(mlflow_server, run_id)
    assert workflow.step_states()["compare"] == "interrupted"

    assert cli.main(["resume", "cmp", "--storage", str(storage)]) == 0
    children = tracking.child_runs(mlflow_server, run_id)
    assert len(children) == 4 and len({run.data.tags["genpipe.trial_id"] for run in children}) == 4
    after = finished_children(mlflow_server, run_id)
    assert len(after) == 4 and all(after[trial] == 1 for trial in before), (before, after)  # none trained twice
    for run in children:  # each family trained for the budget, give or take a step's length
        assert run.data.params["family"] in FAMILIES
        assert BUDGET_S * 0.5 < run.data.metrics["cost/train_seconds"] < BUDGET_S * 3
        assert run.data.metrics["cost/samples_per_second"] > 0 and run.data.metrics["cost/parameters"] > 0

    result = workflow.record("compare")["result"]
    ranked = [row for row in result["leaderboard"] if "rank" in row]
    assert [row[FID] for row in ranked] == sorted(row[FID] for row in ranked) and len(ranked) == len(FAMILIES)
    assert all(row["seeds"] == 2 and row[f"{FID}_ci95"] is not None for row in ranked)
    gpt = next(row for row in result["leaderboard"] if row["family"] == "gpt")
    assert gpt["status"] == "does not fit: learns text or music, not image"
    assert result["family"] == ranked[0]["family"] and result["metric"] == FID
    scores = {run.data.tags["genpipe.trial_id"]: run.data.metrics[FID] for run in children}
    winners = [t for t, run in zip(scores, children, strict=True) if run.data.params["family"] == result["family"]]
    assert scores[result["best_trial"]] == min(scores[t] for t in winners)  # the best seed of the first family

    mlflow_client = tracking.client(mlflow_server)
    parent = mlflow_client.get_run(run_id)
    assert parent.data.tags["genpipe.compare.winner"] == result["family"]
    assert parent.data.metrics["compare/families_ranked"] == 2 and "compare/seed_kendall_tau" in parent.data.metrics
    artifacts = {item.path for item in mlflow_client.list_artifacts(run_id, "compare")}
    assert "compare/quality_vs_cost.png" in artifacts
    table = json.loads(Path(mlflow_client.download_artifacts(run_id, "leaderboard.json", str(tmp_path))).read_text())
    assert table["columns"][:2] == ["family", "seeds"] and len(table["data"]) == 3

    registered = workflow.record("register")["result"]
    version = mlflow_client.get_model_version(registered["model_name"], registered["version"])
    assert version.tags["genpipe.family"] == result["family"]
    assert version.tags["genpipe.compare.best_trial"] == result["best_trial"]
    evaluated = workflow.record("evaluate")["result"]["metrics"]
    assert evaluated[FID] > 0 and registered["decision"] == "promoted"


def test_compare_dry_run_lists_the_entrants_and_a_config_error_is_one_line(capsys):
    base = ["compare", "quickstart", "--storage", "/nonexistent-not-used", "--dry-run"]
    assert cli.main([*base, "--families", "vae,gpt", "--seeds", "3", "--budget", "1m"]) == 0
    out = capsys.readouterr().out
    assert "2. compare   1 families x 3 seeds (vae), 60 s of training each" in out
    assert "ranked by min eval/classifier_fid; 1 do not fit: gpt" in out
    assert cli.main([*base, "--families", "gpt"]) == 2
    assert "compare.families: none of them learns image data" in capsys.readouterr().err
