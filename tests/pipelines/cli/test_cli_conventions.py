"""The command line as Ray's and MLflow's users expect it: --version, help without importing the
heavy libraries, --json on listings, completion, `config show`, errors on stderr, bounded logs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from importlib import metadata

import pytest
import yaml
from helpers import REPO

from pipelines import cli
from pipelines.cli import logs
from pipelines.config import load_config

HEAVY = ("torch", "ray", "mlflow", "deepspeed", "pydantic")


def _in_a_new_process(code: str) -> str:
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.parametrize("argv", [["--help"], ["run", "--help"], ["--version"], ["run"], ["completion", "bash"]])
def test_help_version_and_usage_errors_import_none_of_the_heavy_libraries(argv):
    code = (
        "import sys\nfrom pipelines.cli.app import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        f"print(sorted(name for name in {HEAVY!r} if name in sys.modules))"
    )
    assert _in_a_new_process(code).strip().splitlines()[-1] == "[]"


def test_version_names_genpipe_and_the_libraries_it_runs_on(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--version"])
    assert exit_info.value.code == 0
    line = capsys.readouterr().out
    assert line.startswith(f"genpipe {metadata.version('genpipe')} (Python ")
    for name in ("ray", "torch", "deepspeed", "mlflow"):
        assert f"{name} {metadata.version(name)}" in line


def test_completion_scripts_know_every_command(capsys):
    assert cli.main(["completion", "bash"]) == 0
    script = capsys.readouterr().out
    for command in ("run", "resume", "status", "submit", "schedule", "local-cluster", "config"):
        assert command in script
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0  # it parses as bash


def test_config_show_prints_what_a_run_gets_and_it_loads_back_the_same(capsys, tmp_path):
    assert cli.main(["config", "show", "quickstart", "--set", "train.epochs=3", "--storage", str(tmp_path)]) == 0
    shown = capsys.readouterr().out
    path = tmp_path / "shown.yaml"
    path.write_text(shown)
    expected = load_config("quickstart", ["train.epochs=3"], storage=str(tmp_path))
    assert load_config(str(path)) == expected
    assert cli.main(["config", "show", "quickstart", "--json", "--storage", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out)["train"]["epochs"] == load_config("quickstart").train.epochs


def test_config_show_of_a_bad_config_exits_2_naming_the_field_on_stderr(capsys):
    assert cli.main(["config", "show", "quickstart", "--set", "train.epochs=0"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("train.epochs: ")


def test_listings_print_json(capsys, tmp_path):
    assert cli.main(["status", "--json", "--storage", str(tmp_path)]) == 0
    assert json.loads(capsys.readouterr().out) == []
    assert (
        cli.main(["schedule", "add", "nightly", "quickstart", "--cron", "0 3 * * *", "--storage", str(tmp_path)]) == 0
    )
    capsys.readouterr()
    assert cli.main(["schedule", "list", "--json", "--storage", str(tmp_path)]) == 0
    (listed,) = json.loads(capsys.readouterr().out)
    assert listed["name"] == "nightly" and listed["cron"] == "0 3 * * *" and listed["next"].endswith("T03:00:00Z")
    assert listed["last_outcome"] is None and listed["paused"] is False
    assert cli.main(["models", "--json"]) == 0
    zoo = json.loads(capsys.readouterr().out)
    assert zoo["ddpm"]["modality"] == "image" and "tiny" in zoo["ddpm"]["presets"] and zoo["gpt"]["modality"] == "text"
    assert zoo["gpt"]["learns"] == ["text", "music"] and zoo["wavenet"]["learns"] == ["audio"]


def test_a_failed_runs_lines_go_to_stderr(capsys):
    from pipelines.cli.workflow_commands import _failed
    from pipelines.workflow.runner import WorkflowFailed

    failure = WorkflowFailed("wf", "train", "boom", "/store", "/store/wf/errors/train.json")
    assert _failed(failure, "/tmp/x.log") == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "FAILED:" in captured.err and "genpipe resume wf --storage /store" in captured.err


def test_the_log_folder_keeps_a_bound_and_never_a_running_processs_file(tmp_path):
    def log(name: str, age_s: float, text: str = "x") -> os.PathLike:
        path = tmp_path / name
        path.write_text(text)
        os.utime(path, (time.time() - age_s, time.time() - age_s))
        return path

    gone = 2**22 + 7  # above Linux's pid_max: no process has it
    newest = [log(f"genpipe-20261206-1000{i:02d}-{gone}.log", age_s=i) for i in range(3)]
    old = log(f"genpipe-20261201-100000-{gone}.log", age_s=1000)
    empty = log(f"genpipe-20261206-110000-{gone}.log", age_s=0, text="")
    running_old = log(f"genpipe-20261130-100000-{os.getpid()}.log", age_s=2000)  # this process: running
    removed = logs.prune(tmp_path, keep=3)
    assert set(removed) == {old, empty}
    assert all(path.exists() for path in [*newest, running_old])


def test_log_lines_as_json_for_shippers(tmp_path, monkeypatch):
    monkeypatch.setenv("GENPIPE_LOG_DIR", str(tmp_path))
    path = logs.set_up_logging(False, level="DEBUG", as_json=True)
    try:
        logging.getLogger("genpipe.test").debug("a step with s3://key:secret@bucket in it")
        for handler in logging.getLogger().handlers:
            handler.flush()
        entry = json.loads(path.read_text().splitlines()[-1])
    finally:
        logs.set_up_logging(False)  # back to the defaults for the tests that follow in this process
    assert entry["level"] == "DEBUG" and entry["logger"] == "genpipe.test" and entry["pid"] == os.getpid()
    assert "secret" not in entry["message"] and entry["message"].startswith("a step with s3://")


def test_the_shown_yaml_is_plain_yaml():
    shown = subprocess.run(
        [sys.executable, "-m", "pipelines.cli", "config", "show", "quickstart"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert yaml.safe_load(shown.stdout)["name"] == "quickstart" and shown.stderr == ""
