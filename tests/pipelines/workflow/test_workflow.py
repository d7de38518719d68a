"""The whole workflow on a real local Ray and a real MLflow: a train step that fails (its run ends
FAILED), a resume that skips prepare (the run ends FINISHED), 2-worker ZeRO-2 training that lowers
the loss, a registered MLflow Model that loads in a fresh process with pickle disabled and answers
over HTTP from `mlflow models serve`, idempotent registration, and a real `mlflow server`."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy
import pytest
from helpers import GROUP, REPO, TINY
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from PIL import Image

from data_prep.manifest import load_verified
from pipelines import cli
from pipelines.registry import tracking
from pipelines.registry.lineage import split_dataset
from pipelines.registry.logged_models import log_evaluated_model
from pipelines.registry.registration import register
from pipelines.registry.versions import aliased_version, logged_model_id
from pipelines.workflow.runner import Workflow

# One pytest-xdist worker runs them all: its tests share one finished workflow (module fixture).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("workflow")]


@pytest.fixture(scope="module")
def finished(ray_session, tmp_path_factory):
    """A quickstart workflow (tiny settings) whose train step failed once and was resumed."""
    storage = tmp_path_factory.mktemp("store")
    options = [item for setting in [*TINY, GROUP] for item in ("--set", setting)]  # the quickstart's group
    assert cli.main(["prepare", "quickstart", "--storage", str(storage), "--workflow-id", "wf", *options]) == 0
    workflow = Workflow(str(storage), "wf")
    prepared = workflow.record("prepare")
    shard = next((storage / "datasets").rglob("train/*.parquet"))
    hidden = shard.with_name("hidden")
    shard.rename(hidden)  # storage loses a shard: the train step must fail, clearly
    # `run` with the same id continues the workflow: prepare is recorded, train fails.
    assert cli.main(["run", "quickstart", "--storage", str(storage), "--workflow-id", "wf", *options]) == 1
    assert workflow.step_states() == {
        "prepare": "succeeded",
        "train": "failed",
        "evaluate": "pending",
        "register": "pending",
    }
    error = json.loads((storage / "workflows" / "wf" / "train.error.json").read_text())["error"]
    assert "shard listed in the manifest is missing" in error and shard.name in error
    meta = workflow.meta()
    assert tracking.client(meta["tracking_uri"]).get_run(meta["run_id"]).info.status == "FAILED"
    hidden.rename(shard)
    assert cli.main(["resume", "wf", "--storage", str(storage)]) == 0
    return storage, workflow, prepared


def test_resume_skipped_prepare_and_finished(finished, capsys):
    storage, workflow, prepared = finished
    assert workflow.record("prepare") == prepared  # not re-run: the record is untouched
    assert workflow.step_states() == dict.fromkeys(["prepare", "train", "evaluate", "register"], "succeeded")
    assert len(list((storage / "datasets").glob("*/write-*"))) == 1  # one dataset write in all
    assert cli.main(["status", "--storage", str(storage)]) == 0
    assert "wf  prepare:succeeded  train:succeeded  evaluate:succeeded  register:succeeded" in capsys.readouterr().out
    meta = workflow.meta()
    run = tracking.client(meta["tracking_uri"]).get_run(meta["run_id"])
    assert run.info.status == "FINISHED" and run.info.end_time > run.info.start_time
    assert run.info.run_name == "wf" and run.data.tags["mlflow.user"]
    assert run.data.tags["mlflow.source.name"].startswith("genpipe prepare quickstart --storage")
    experiment = tracking.client(meta["tracking_uri"]).get_experiment(run.info.experiment_id)
    assert experiment.tags["mlflow.experimentKind"] == "custom_model_development"


def test_two_worker_zero2_training_lowers_the_loss(finished):
    _, workflow, _ = finished
    meta = workflow.meta()
    history = tracking.client(meta["tracking_uri"]).get_metric_history(meta["run_id"], "train/unet_loss")
    losses = [m.value for m in sorted(history, key=lambda m: m.step)]
    assert len(losses) == 6  # 30 steps, logged every 5
    assert losses[-1] < 0.7 * losses[0]
    run = tracking.client(meta["tracking_uri"]).get_run(meta["run_id"])
    assert run.data.params["train.strategy"] == "auto" and run.data.params["train.num_workers"] == "2"
    fingerprint = workflow.record("prepare")["result"]["fingerprint"]
    assert run.data.tags["genpipe.dataset.fingerprint"] == fingerprint
    inputs = {i.dataset.name: i.tags[0].value for i in run.inputs.dataset_inputs}
    assert inputs == {f"{fingerprint}/train": "training", f"{fingerprint}/val": "evaluation"}
    # Live: a sample grid at each checkpoint (steps 15 and 30), system metrics of the node.
    images = {a.path for a in tracking.client(meta["tracking_uri"]).list_artifacts(meta["run_id"], "images")}
    assert any("+step+15+" in path for path in images) and any("+step+30+" in path for path in images)
    assert any(key.startswith("system/node0/") for key in run.data.metrics)
    # Where the start-up went, from fit() to the first step: its phases add up to the whole.
    phases = [run.data.metrics[f"startup/{p}_s"] for p in ("spawn", "imports", "setup", "engines", "first_step")]
    assert all(value >= 0 for value in phases) and run.data.metrics["startup/total_s"] > 0
    assert sum(phases) == pytest.approx(run.data.metrics["startup/total_s"], abs=0.01)


def test_evaluation_logged_metrics_and_pictures(finished):
    _, workflow, _ = finished
    meta = workflow.meta()
    mlflow_client = tracking.client(meta["tracking_uri"])
    metrics = mlflow_client.get_run(meta["run_id"]).data.metrics
    assert metrics["eval/classifier_fid"] > 0 and 0 <= metrics["eval/class_coverage"] <= 10
    assert 0 <= metrics["eval/precision"] <= 1 and 0 <= metrics["eval/recall"] <= 1
    artifacts = {a.path for a in mlflow_client.list_artifacts(meta["run_id"], "evaluation")}
    assert artifacts == {"evaluation/samples.png"}
    grid = Image.open(workflow.record("evaluate")["result"]["samples_uri"])
    assert grid.size[0] > 64


def test_registered_model_samples_in_a_fresh_process(finished, tmp_path):
    storage, workflow, _ = finished
    assert workflow.record("register")["result"]["version"] == 1
    out = tmp_path / "g.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pipelines.cli",
            "sample",
            "models:/quickstart-ddpm@champion",
            "-n",
            "16",
            "--out",
            str(out),
            "--storage",
            str(storage),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert Image.open(out).size == (4 * 9 * 8 + 8, 4 * 9 * 8 + 8)  # 4x4 grid of 8 px digits, upscaled 8x


def test_the_champion_is_an_mlflow_model_that_predicts_without_pickle(finished):
    """A fresh process, pickle deserialization off: the champion loads as a pyfunc model and
    predicts from the input example logged with it."""
    storage, workflow, _ = finished
    script = (
        "import json, mlflow\n"
        "model = mlflow.pyfunc.load_model('models:/quickstart-ddpm@champion')\n"
        "images = model.predict(model.input_example)\n"
        "print(json.dumps({'type': type(images).__name__, 'dtype': str(images.dtype), 'shape': images.shape,\n"
        "    'low': float(images.min()), 'high': float(images.max()),\n"
        "    'inputs': model.metadata.get_input_schema().input_names()}))\n"
    )
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": workflow.meta()["tracking_uri"],
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
    }
    done = subprocess.run(
        [sys.executable, "-c", script], env=environment, capture_output=True, text=True, timeout=300, cwd=storage
    )
    assert done.returncode == 0, done.stderr[-3000:]
    predicted = json.loads(done.stdout.splitlines()[-1])
    assert (predicted["type"], predicted["dtype"], predicted["shape"]) == ("ndarray", "float32", [2, 1, 8, 8])
    assert -1.0 <= predicted["low"] <= predicted["high"] <= 1.0
    assert predicted["inputs"][:2] == ["n", "seed"]


def test_mlflow_models_serve_answers_over_http(finished):
    """`mlflow models serve` on the champion, for real: a request for 3 images, one for a bad column."""
    storage, workflow, _ = finished
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    environment = {
        **os.environ,
        "MLFLOW_TRACKING_URI": workflow.meta()["tracking_uri"],
        "MLFLOW_ALLOW_PICKLE_DESERIALIZATION": "false",
        # MLflow starts `uvicorn` by name: the environment's bin folder on PATH, as when it is activated.
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    command = ["mlflow", "models", "serve", "-m", "models:/quickstart-ddpm@champion", "--env-manager", "local"]
    server = subprocess.Popen(
        [sys.executable, "-m", *command, "-h", "127.0.0.1", "-p", str(port), "-w", "1"],
        env=environment,
        cwd=storage,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 180
        while True:
            assert server.poll() is None, server.stderr.read()[-3000:] if server.stderr else ""
            try:
                if urllib.request.urlopen(f"{url}/ping", timeout=2).status == 200:
                    break
            except OSError:
                assert time.monotonic() < deadline, "mlflow models serve did not come up in 180 s"
                time.sleep(1)
        request = {"dataframe_split": {"columns": ["n", "seed"], "data": [[3, 7]]}}
        answer = _post(f"{url}/invocations", request)
        images = numpy.array(answer["predictions"], dtype=numpy.float32)
        assert images.shape == (3, 1, 8, 8) and -1 <= images.min() <= images.max() <= 1
        with pytest.raises(urllib.error.HTTPError) as refused:
            _post(f"{url}/invocations", {"dataframe_split": {"columns": ["seed"], "data": [[1]]}})
        assert refused.value.code == 400  # the signature requires `n`
    finally:
        server.terminate()
        server.wait(timeout=30)


def _post(url: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.loads(response.read())


def test_logged_models_rank_by_the_evaluation_metric(finished):
    """MLflow 3's LoggedModel: the scores are numbers on the model, measured on the val split."""
    _, workflow, _ = finished
    meta = workflow.meta()
    mlflow_client = tracking.client(meta["tracking_uri"])
    experiment_id = mlflow_client.get_run(meta["run_id"]).info.experiment_id
    ranked = mlflow_client.search_logged_models(
        [experiment_id], order_by=[{"field_name": "metrics.eval/classifier_fid", "ascending": True}]
    )
    scores = [next(m.value for m in model.metrics if m.key == "eval/classifier_fid") for model in ranked]
    assert len(scores) >= 1 and scores == sorted(scores)
    evaluated = workflow.record("evaluate")["result"]
    mine = mlflow_client.get_logged_model(evaluated["model_id"])
    fingerprint = workflow.record("prepare")["result"]["fingerprint"]
    assert {m.key: m.value for m in mine.metrics} == evaluated["metrics"]
    assert {m.dataset_name for m in mine.metrics} == {f"{fingerprint}/val"}
    version = mlflow_client.get_model_version("quickstart-ddpm", "1")
    assert logged_model_id(version) == evaluated["model_id"]
    assert not any(key.startswith("eval/") for key in version.tags)  # scores live on the model, not in tags


def test_registering_twice_makes_one_version(finished):
    _, workflow, _ = finished
    meta, result = workflow.meta(), workflow.record("register")["result"]
    mlflow_client = tracking.client(meta["tracking_uri"])
    before = len(mlflow_client.search_model_versions("name = 'quickstart-ddpm'"))
    again = register(
        workflow.config().register, meta["tracking_uri"], meta["run_id"], workflow.record("evaluate")["result"], {}
    )
    assert again["version"] == result["version"] and not again["created"]
    assert again["decision"] == result["decision"] == "promoted"
    assert len(mlflow_client.search_model_versions("name = 'quickstart-ddpm'")) == before


def _challenger(finished, model_name: str, workflow_id: str, fid: float, key: str | None = None):
    """The finished workflow's model logged again under a new run with `fid` as its score: what
    the register step of another workflow would be given."""
    _, workflow, _ = finished
    config, uri = workflow.config(), workflow.meta()["tracking_uri"]
    run_id, _ = tracking.start_workflow_run(config, uri, workflow_id)
    evaluation = {**workflow.record("evaluate")["result"], "champion": None}
    evaluation["metrics"] = {**evaluation["metrics"], "eval/classifier_fid": fid}
    manifest = load_verified(workflow.record("prepare")["result"]["dataset_uri"])
    model_id = log_evaluated_model(
        workflow.record("train")["result"]["model_uri"],
        uri,
        run_id,
        model_name,
        {},
        evaluation["metrics"],
        split_dataset(manifest, "val"),
    )
    evaluation.update(model_id=model_id, evaluation_key=key or evaluation["evaluation_key"])
    settings = config.register.model_copy(update={"model_name": model_name})
    return settings, uri, run_id, evaluation


def test_a_promotion_cut_short_moves_the_alias_when_register_runs_again(finished, monkeypatch):
    settings, uri, run_id, evaluation = _challenger(finished, "cut-ddpm", "wf-cut", 10.0)

    def connection_lost(*args, **kwargs):
        raise MlflowException("connection lost")

    monkeypatch.setattr(MlflowClient, "set_registered_model_alias", connection_lost)
    with pytest.raises(MlflowException):
        register(settings, uri, run_id, evaluation, {})
    assert aliased_version(uri, "cut-ddpm", "champion") is None  # the version exists, the alias does not
    monkeypatch.undo()
    again = register(settings, uri, run_id, evaluation, {})
    assert not again["created"] and again["decision"] == "promoted"
    assert again["version"] == again["alias_version"] == 1


def test_the_gate_compares_with_the_champion_of_register_time(finished):
    """Two workflows evaluated while there was no champion: the first to register takes the alias,
    the second is compared with it (same evaluation key) or, scored otherwise, not promoted."""
    first = _challenger(finished, "race-ddpm", "wf-race-1", 10.0)
    worse = _challenger(finished, "race-ddpm", "wf-race-2", 20.0)
    elsewise = _challenger(finished, "race-ddpm", "wf-race-3", 5.0, key="another-evaluation")
    assert register(*first, {})["decision"] == "promoted"
    later = register(*worse, {})
    assert later["decision"] == "rejected" and "does not beat the champion's 10" in later["reason"]
    other = register(*elsewise, {})
    assert other["decision"] == "rejected" and "the champion changed to version 1" in other["reason"]
    assert other["alias_version"] == 1


def test_resume_set_changes_the_steps_not_yet_done_and_refuses_the_others(finished, capsys):
    storage, workflow, _ = finished
    copy = storage / "workflows" / "wf-amend"
    shutil.copytree(storage / "workflows" / "wf", copy, ignore=shutil.ignore_patterns("leases", "register.json"))
    base = ["resume", "wf-amend", "--storage", str(storage)]
    assert cli.main([*base, "--set", "train.epochs=2", "--set", "name=other"]) == 2
    err = capsys.readouterr().err
    assert "--set train.epochs=2: train already ran with train" in err and "--set name=other: name is fixed" in err
    assert cli.main([*base, "--set", "register.model_name=amended-ddpm"]) == 0
    amended = Workflow(str(storage), "wf-amend")
    assert amended.record("register")["result"]["model_name"] == "amended-ddpm"
    assert amended.record("train") == workflow.record("train")  # not trained again
    assert [a["sets"] for a in amended.meta()["amendments"]] == [["register.model_name=amended-ddpm"]]


def test_register_with_a_real_mlflow_server(finished, mlflow_server, tmp_path):
    storage, workflow, _ = finished
    config = workflow.config()
    run_id, url = tracking.start_workflow_run(config, mlflow_server, "wf-server")
    assert url.startswith(mlflow_server)
    settings = config.register.model_copy(update={"model_name": "server-ddpm"})
    evaluation = workflow.record("evaluate")["result"]
    manifest = load_verified(workflow.record("prepare")["result"]["dataset_uri"])
    model_id = log_evaluated_model(
        workflow.record("train")["result"]["model_uri"],
        mlflow_server,
        run_id,
        "server-ddpm",
        {"genpipe.workflow_id": "wf-server"},
        evaluation["metrics"],
        split_dataset(manifest, "val"),
    )
    result = register(settings, mlflow_server, run_id, {**evaluation, "model_id": model_id}, {})
    assert result["version"] == 1 and result["alias_version"] == 1
    tracking.end_run(mlflow_server, run_id, "FINISHED")
    out = tmp_path / "s.png"
    assert (
        cli.main(
            ["sample", "models:/server-ddpm@champion", "-n", "4", "--out", str(out), "--tracking-uri", mlflow_server]
        )
        == 0
    )
    assert out.exists()


def test_unchanged_data_skips_training(finished, capsys):
    storage, workflow, _ = finished
    options = [item for setting in TINY for item in ("--set", setting)]
    code = cli.main(
        ["run", "quickstart", "--storage", str(storage), "--workflow-id", "wf-same", "--when", "data-changed", *options]
    )
    assert code == 0
    fingerprint = workflow.record("prepare")["result"]["fingerprint"]
    assert f"skipped: data unchanged: dataset {fingerprint} is already in quickstart-ddpm" in capsys.readouterr().out
    assert Workflow(str(storage), "wf-same").step_states() == dict.fromkeys(
        ["prepare", "train", "evaluate", "register"], "pending"
    )
    assert cli.main(["status", "--storage", str(storage)]) == 0
    assert "wf-same  skipped: data unchanged" in capsys.readouterr().out


def test_the_gate_keeps_a_worse_model_out_and_promote_rolls_back(finished, capsys):
    storage, workflow, _ = finished
    options = [item for setting in TINY for item in ("--set", setting)]
    uri = workflow.meta()["tracking_uri"]
    champion = aliased_version(uri, "quickstart-ddpm", "champion")

    # One optimizer step: registered, scored against the champion on the same split, kept out.
    assert (
        cli.main(
            [
                "run",
                "quickstart",
                "--storage",
                str(storage),
                "--workflow-id",
                "wf-worse",
                *options,
                "--set",
                "train.max_steps=1",
            ]
        )
        == 0
    )
    worse = Workflow(str(storage), "wf-worse").record("register")["result"]
    assert worse["decision"] == "rejected" and worse["alias_version"] == int(champion.version)
    evaluated = Workflow(str(storage), "wf-worse").record("evaluate")["result"]
    assert evaluated["champion"]["version"] == int(champion.version)
    assert not evaluated["champion"]["rescored"]  # same data, same evaluation: its logged scores are reused
    version = tracking.client(uri).get_model_version("quickstart-ddpm", str(worse["version"]))
    assert version.tags["genpipe.gate.decision"] == "rejected"
    assert float(version.tags["genpipe.gate.challenger_score"]) > float(version.tags["genpipe.gate.champion_score"])
    run_tags = tracking.client(uri).get_run(Workflow(str(storage), "wf-worse").meta()["run_id"]).data.tags
    assert run_tags["genpipe.gate.reason"] == version.tags["genpipe.gate.reason"]

    # A manual override makes the worse one champion; then a properly trained one takes it back.
    assert cli.main(["promote", "quickstart-ddpm", str(worse["version"]), "--storage", str(storage)]) == 0
    assert (
        cli.main(
            [
                "run",
                "quickstart",
                "--storage",
                str(storage),
                "--workflow-id",
                "wf-better",
                *options,
                "--set",
                "train.warm_start=true",
            ]
        )
        == 0
    )
    assert Workflow(str(storage), "wf-better").record("train")["result"]["warm_start"] == (
        f"models:/quickstart-ddpm/{worse['version']}"
    )  # it started from the champion of that moment
    better = Workflow(str(storage), "wf-better").record("register")["result"]
    assert better["decision"] == "promoted" and better["alias_version"] == better["version"]
    # Lineage: the model it started from is an input of its run.
    better_run = tracking.client(uri).get_run(Workflow(str(storage), "wf-better").meta()["run_id"])
    worse_version = tracking.client(uri).get_model_version("quickstart-ddpm", str(worse["version"]))
    assert [m.model_id for m in better_run.inputs.model_inputs] == [logged_model_id(worse_version)]

    # Roll back to the original champion by hand; history shows all three and who holds the alias.
    assert cli.main(["promote", "quickstart-ddpm", str(champion.version), "--storage", str(storage)]) == 0
    assert aliased_version(uri, "quickstart-ddpm", "champion").version == champion.version
    capsys.readouterr()
    assert cli.main(["models", "history", "quickstart-ddpm", "--storage", str(storage)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("v")]
    assert len(lines) >= 3 and "@champion" in lines[int(champion.version) - 1]
    assert "rejected" in lines[worse["version"] - 1]


def test_warm_start_refuses_a_champion_of_another_shape(finished, capsys):
    storage, _, _ = finished
    options = [item for setting in TINY for item in ("--set", setting)]
    assert (
        cli.main(
            [
                "run",
                "quickstart",
                "--storage",
                str(storage),
                "--workflow-id",
                "wf-shape",
                *options,
                "--set",
                "train.warm_start=true",
                "--set",
                "model.params.base_channels=16",
            ]
        )
        == 1
    )
    err = capsys.readouterr().err  # a failure is told on stderr
    assert "step train failed: ValueError: train.warm_start: models:/quickstart-ddpm/" in err
    assert "(base_channels differ)" in err
