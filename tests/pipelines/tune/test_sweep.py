"""`genpipe tune` against a real Ray and a real MLflow server: a 4-trial ASHA sweep stops the
hopeless trials, leaves one child run per trial under the parent and registers the best trial's
model; a sweep whose driver is killed after its first trial finished is completed by
`genpipe resume` without re-running that trial."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from itertools import pairwise
from pathlib import Path

import pytest
from helpers import REPO

from models import family_class
from pipelines import cli
from pipelines.registry import tracking
from pipelines.workflow.runner import Workflow

pytestmark = pytest.mark.slow

# One family, and a learning rate that either learns or cannot (1e-7): the hopeless trials are
# far behind at the first rung, so ASHA (one trial at a time, reduction factor 2) stops them.
SWEEP = [
    "tune.space={train.learning_rate: {choice: [0.002, 1.0e-7]}, model.params.latent_dim: {choice: [16, 32]}}",
    "model.family=gan",
    "tune.num_samples=4",
    "tune.max_concurrent=1",
    "tune.grace_period=1",
    "tune.seed=3",
    "evaluate.num_samples=150",
    "evaluate.classifier_epochs=2",
]


def finished_children(uri: str, run_id: str) -> dict[str, int]:
    """trial id -> how many epochs its child run logged, for the trials that ran to their end."""
    mlflow_client = tracking.client(uri)
    return {
        run.data.tags["genpipe.trial_id"]: len(mlflow_client.get_metric_history(run.info.run_id, "eval/classifier_fid"))
        for run in tracking.child_runs(uri, run_id)
        if run.info.status == "FINISHED"
    }


def terminated_trials(sweep_folder: Path) -> set[str]:
    """The trials Tune's latest saved experiment state records as ended."""
    states = sorted(sweep_folder.glob("*/experiment_state-*.json"))
    if not states:
        return set()
    try:
        trials = [json.loads(state) for state, _ in json.loads(states[-1].read_text())["trial_data"]]
    except json.JSONDecodeError:  # caught mid-write
        return set()
    return {trial["trial_id"] for trial in trials if trial["status"] == "TERMINATED"}


def sweep_options(*extra: str) -> list[str]:
    return [item for setting in [*SWEEP, *extra] for item in ("--set", setting)]


def test_asha_sweep_stops_hopeless_trials_and_registers_the_best(ray_session, mlflow_server, tmp_path, capsys):
    storage = str(tmp_path / "store")
    assert (
        cli.main(
            [
                "tune",
                "gan-sweep-digits",
                "--storage",
                storage,
                "--tracking-uri",
                mlflow_server,
                "--workflow-id",
                "asha",
                *sweep_options("train.epochs=4"),
            ]
        )
        == 0
    )
    workflow = Workflow(storage, "asha")
    run_id = workflow.meta()["run_id"]
    result = workflow.record("tune")["result"]
    console = capsys.readouterr().out
    assert "  tune 1/4 trials (25%)  best so far: trial " in console  # as each trial ends, with an ETA
    assert "  tune 4/4 trials (100%)  best so far: trial " in console
    children = tracking.child_runs(mlflow_server, run_id)
    assert len(children) == 4 and all(run.info.status == "FINISHED" for run in children)
    assert result["trials"] == 4 and result["stopped_early"] >= 1
    stopped = [run for run in children if run.data.tags["genpipe.tune.stopped_early"] == "true"]
    assert len(stopped) == result["stopped_early"]
    assert all(int(run.data.tags["genpipe.tune.epochs"]) < 4 for run in stopped)
    assert result["best_params"]["train.learning_rate"] == 0.002
    best = next(run for run in children if run.data.tags["genpipe.trial_id"] == result["best_trial"])
    assert set(family_class("gan").metric_names()) <= set(best.data.metrics)  # what the config check promises
    parent = tracking.client(mlflow_server).get_run(run_id)
    assert parent.data.tags["genpipe.tune.best_trial"] == result["best_trial"]
    assert parent.data.metrics["tune/trials"] == 4 and "best/eval/classifier_fid" in parent.data.metrics
    registered = workflow.record("register")["result"]
    version = tracking.client(mlflow_server).get_model_version(registered["model_name"], registered["version"])
    assert version.tags["genpipe.tune.best_trial"] == result["best_trial"] and version.tags["genpipe.family"] == "gan"
    spans = sorted(trial_span(path) for path in (tmp_path / "store" / "tune" / "asha" / "sweep").glob("*/result.json"))
    assert all(later[0] >= earlier[1] - 1.5 for earlier, later in pairwise(spans)), spans  # max_concurrent 1


def trial_span(result_file) -> tuple[float, float]:
    """(start, end) of a trial in seconds, from its Tune results (whole-second timestamps)."""
    rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    return rows[0]["timestamp"] - rows[0]["time_total_s"], rows[-1]["timestamp"]


def test_killed_sweep_resumes_without_rerunning_finished_trials(ray_session, mlflow_server, tmp_path):
    storage = tmp_path / "store"
    log = (tmp_path / "tune.log").open("w")
    sweep = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "tune",
            "gan-sweep-digits",
            "--storage",
            str(storage),
            "--tracking-uri",
            mlflow_server,
            "--workflow-id",
            "sweep",
            *sweep_options("train.epochs=6"),
        ],
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    workflow = Workflow(str(storage), "sweep")
    deadline = time.monotonic() + 400
    # Finished as Tune's saved state knows it (saved every 10 s or so): a trial that ended after
    # the last save is, for the resumed sweep, one to finish again from its last checkpoint.
    while not (workflow.exists() and terminated_trials(storage / "tune" / "sweep")):
        assert sweep.poll() is None and time.monotonic() < deadline, (tmp_path / "tune.log").read_text()[-3000:]
        time.sleep(0.5)
    os.killpg(sweep.pid, signal.SIGKILL)  # the driver and every Ray process it started
    sweep.wait()
    log.close()
    run_id = workflow.meta()["run_id"]
    terminated = terminated_trials(storage / "tune" / "sweep")
    before = {trial: n for trial, n in finished_children(mlflow_server, run_id).items() if trial in terminated}
    assert before and workflow.step_states()["tune"] == "interrupted"  # its driver died in it

    assert cli.main(["resume", "sweep", "--storage", str(storage)]) == 0
    trial_ids = [run.data.tags["genpipe.trial_id"] for run in tracking.child_runs(mlflow_server, run_id)]
    assert len(trial_ids) == 4 and len(set(trial_ids)) == 4  # one child per trial, none made twice
    after = finished_children(mlflow_server, run_id)
    assert len(after) == 4
    for trial_id, epochs in before.items():
        assert after[trial_id] == epochs, f"{trial_id} was trained again after the resume"
    assert workflow.step_states()["register"] == "succeeded"


def test_optuna_sweep_of_autoencoders_ranks_by_the_iw_nll(ray_session, mlflow_server, tmp_path):
    storage = str(tmp_path / "store")
    settings = [
        "tune.num_samples=3",
        "train.epochs=2",
        "tune.grace_period=1",
        "evaluate.num_samples=100",
        "evaluate.classifier_epochs=2",
        "evaluate.iw_samples=4",
    ]
    assert (
        cli.main(
            [
                "tune",
                "vae-sweep-digits",
                "--storage",
                storage,
                "--tracking-uri",
                mlflow_server,
                "--workflow-id",
                "tpe",
                *[item for s in settings for item in ("--set", s)],
            ]
        )
        == 0
    )
    workflow = Workflow(storage, "tpe")
    result = workflow.record("tune")["result"]
    children = tracking.child_runs(mlflow_server, workflow.meta()["run_id"])
    assert result["trials"] == 3 and len(children) == 3
    scores = {run.data.tags["genpipe.trial_id"]: run.data.metrics["eval/nll_iw"] for run in children}
    assert scores[result["best_trial"]] == min(scores.values())  # the lowest last-reported NLL
    assert result["family"] in {"vae", "conv-vae", "beta-vae"}
    assert workflow.record("evaluate")["result"]["metrics"]["eval/nll_iw"] > 0


def test_a_sweep_of_forecasters_ranks_them_by_the_held_out_rmse(ray_session, mlflow_server, tmp_path):
    """A series sweep: trials score themselves with the series scorer (one-step RMSE on the tail)."""
    storage = str(tmp_path / "store")
    settings = ["tune.num_samples=2", "train.epochs=2", "tune.scheduler=none", "evaluate.num_samples=20"]
    command = ["tune", "forecast-sweep-sunspots", "--storage", storage, "--tracking-uri", mlflow_server]
    assert cli.main([*command, "--workflow-id", "series", *[i for s in settings for i in ("--set", s)]]) == 0
    workflow = Workflow(storage, "series")
    result = workflow.record("tune")["result"]
    children = tracking.child_runs(mlflow_server, workflow.meta()["run_id"])
    scores = {run.data.tags["genpipe.trial_id"]: run.data.metrics["eval/rmse"] for run in children}
    assert len(scores) == 2 and scores[result["best_trial"]] == min(scores.values())
    evaluated = workflow.record("evaluate")["result"]["metrics"]
    assert evaluated["eval/rmse"] == pytest.approx(scores[result["best_trial"]], rel=1e-3)  # the same scorer
