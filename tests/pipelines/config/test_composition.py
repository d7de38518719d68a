"""Configs composed from bases with `defaults:`, OmegaConf interpolation resolved after `--set`,
and a bad value named with the file that wrote it."""

from __future__ import annotations

import pytest
import yaml

from pipelines import cli
from pipelines.config import ConfigError, builtin_configs, load_config, read_config_source


def _write(path, mapping) -> str:
    path.write_text(yaml.safe_dump(mapping))
    return str(path)


def test_a_config_merges_its_bases_in_order_and_its_own_keys_win(tmp_path):
    _write(tmp_path / "shared.yaml", {"defaults": ["base/digits-run"], "train": {"epochs": 3, "learning_rate": 0.01}})
    config = _write(
        tmp_path / "mine.yaml",
        {
            "defaults": ["shared"],  # beside this file, .yaml left out; it names a built-in base in turn
            "name": "mine",
            "model": {"family": "ddpm", "preset": "tiny"},
            "train": {"learning_rate": 0.005},
            "evaluate": {"prompts": ["a"]},
        },
    )
    loaded = load_config(config)
    assert loaded.data.source.kind == "digits" and loaded.data.val_fraction == 0.2  # base/digits
    assert loaded.train.num_workers == 2 and loaded.train.log_every == 50  # base/digits-run
    assert loaded.train.epochs == 3  # shared.yaml
    assert loaded.train.learning_rate == 0.005  # mine.yaml over shared.yaml
    assert "defaults" not in read_config_source(config)


def test_a_source_of_another_kind_replaces_the_bases_source_instead_of_merging_into_it(tmp_path):
    """A base's code corpus (`include`, ...) under a config's own text files: the fields of one
    kind are not the other's, so the config's source stands alone; the same kind still merges."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    (corpus / "a.txt").write_text("the river and the stone\n" * 20)
    _write(
        tmp_path / "mine.yaml",
        {"defaults": ["gpt-code-tiny"], "data": {"source": {"kind": "text_files", "path": str(corpus / "*.txt")}}},
    )
    source = load_config(str(tmp_path / "mine.yaml")).data.source
    assert source.kind == "text_files" and source.path == str(corpus / "*.txt")
    _write(
        tmp_path / "same.yaml",
        {"defaults": ["convlstm-digits"], "data": {"source": {"kind": "moving_digits", "videos": 40}}},
    )
    kept, base = load_config(str(tmp_path / "same.yaml")).data.source, load_config("convlstm-digits").data.source
    assert kept.videos == 40 and kept.model_dump(exclude={"videos"}) == base.model_dump(exclude={"videos"})


def test_interpolations_read_the_environment_and_other_keys_after_the_sets(tmp_path, monkeypatch):
    config = _write(
        tmp_path / "c.yaml",
        {
            "defaults": ["base/digits-run"],
            "name": "${oc.env:RUN_NAME,fallback}",
            "model": {"family": "ddpm", "preset": "tiny"},
            "train": {"epochs": 4, "warmup_steps": "${train.epochs}"},
        },
    )
    monkeypatch.delenv("RUN_NAME", raising=False)
    assert load_config(config).name == "fallback"
    monkeypatch.setenv("RUN_NAME", "from-env")
    loaded = load_config(config, ["train.epochs=7"])
    assert loaded.name == "from-env" and loaded.train.warmup_steps == 7  # the reference follows --set


def test_a_bad_value_from_a_base_is_named_with_that_base(tmp_path):
    base = _write(tmp_path / "team.yaml", {"train": {"epochs": 0}})
    config = _write(
        tmp_path / "c.yaml",
        {"defaults": ["base/digits-run", "team"], "name": "c", "model": {"family": "ddpm", "preset": "tiny"}},
    )
    with pytest.raises(ConfigError) as error:
        load_config(config)
    (problem,) = error.value.problems
    assert problem.startswith("train.epochs: ") and problem.endswith(f"(in {base})")
    with pytest.raises(ConfigError) as error:
        load_config(config, ["train.batch_size=0", "train.epochs=1"])
    assert error.value.problems == [error.value.problems[0]] and "(in " not in error.value.problems[0]


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        ({"c.yaml": {"name": "${oc.env:NO_SUCH_VARIABLE_HERE}"}}, "name: "),
        ({"c.yaml": {"name": "x", "train": {"epochs": "${train.nowhere}"}}}, "train.epochs: "),
        ({"c.yaml": {"defaults": ["d"]}, "d.yaml": {"defaults": ["c"]}}, "defaults: a cycle: "),
        ({"c.yaml": {"defaults": ["missing"]}}, "defaults: 'missing' is neither a file in "),
        ({"c.yaml": {"defaults": {"a": 1}}}, "defaults: a list of config names"),
    ],
)
def test_a_composition_problem_is_one_line_naming_where(tmp_path, files, expected, capsys):
    for name, mapping in files.items():
        _write(tmp_path / name, mapping)
    assert cli.main(["config", "show", str(tmp_path / "c.yaml")]) == 2
    assert capsys.readouterr().err.startswith(expected)


def test_a_resolved_config_handed_to_a_job_is_read_as_it_is(monkeypatch):
    raw = read_config_source("quickstart")
    raw["evaluate"]["prompts"] = ["a literal ${not.an.interpolation}"]
    monkeypatch.setenv("GENPIPE_CONFIG", yaml.safe_dump(raw))
    assert read_config_source("env:GENPIPE_CONFIG")["evaluate"]["prompts"] == ["a literal ${not.an.interpolation}"]


def test_the_bases_are_parts_not_configs_of_their_own():
    assert not [name for name in builtin_configs() if name.startswith("base")]
    with pytest.raises(ConfigError, match="neither a file nor a built-in config"):
        load_config("digits-run")
