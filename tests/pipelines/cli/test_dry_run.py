"""`--dry-run` validates as a run does and tells what the run would do, with the dataset fingerprint
prepare will use, and starts and writes nothing."""

from __future__ import annotations

import subprocess
import sys

import pytest
from helpers import REPO, TINY, seed_dataset

from pipelines import cli


def _sets(*extra: str) -> list[str]:
    return [word for setting in [*TINY, *extra] for word in ("--set", setting)]


def test_a_dry_run_says_what_would_run_and_writes_and_starts_nothing(tmp_path):
    storage = tmp_path / "store"
    argv = ["run", "quickstart", "--dry-run", "--storage", str(storage), *_sets()]
    code = f"import ray\nfrom pipelines.cli.app import main\nassert main({argv!r}) == 0\nprint(ray.is_initialized())"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "1. prepare   to prepare: digits (image) into dataset " in out
    assert "2. train     1 Ray Train workers x 0.5 CPU, batch 64 each, 30 steps; " in out
    assert "strategy ddp (one worker" in out and "M parameters, fp32" in out
    assert "4. register  as quickstart-ddpm; @champion moves when its eval/classifier_fid" in out
    assert out.splitlines()[-1] == "False" and not storage.exists()  # no Ray started, nothing written


@pytest.mark.slow
def test_the_dry_runs_fingerprint_is_the_one_prepare_made_and_it_sees_the_cache(capsys, tmp_path, quickstart_dataset):
    storage = tmp_path / "store"
    seed_dataset(quickstart_dataset, storage)
    assert cli.main(["prepare", "quickstart", "--dry-run", "--storage", str(storage), *_sets()]) == 0
    out = capsys.readouterr().out
    assert f"1. prepare   cached: dataset {quickstart_dataset.name} from digits (image) is in storage (" in out
    assert "2. train" not in out  # `genpipe prepare` runs prepare alone


def test_a_bad_config_exits_2_naming_the_field_as_the_run_would(capsys, tmp_path):
    code = cli.main(["run", "quickstart", "--dry-run", "--storage", str(tmp_path), "--set", "train.batch_size=0"])
    assert code == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("train.batch_size: ") and "plan of" not in captured.out


def test_a_text_models_size_waits_for_its_tokenizer(capsys, tmp_path):
    assert cli.main(["run", "lstm-code", "--dry-run", "--storage", str(tmp_path)]) == 0
    assert "parameters known after prepare (they depend on the data)" in capsys.readouterr().out
