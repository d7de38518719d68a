"""Config validation and the CLI's promise: an invalid config exits 2 and starts nothing."""

from __future__ import annotations

import pytest
import ray
import torch

from pipelines import cli
from pipelines.config import ConfigError, apply_overrides, flatten, load_config
from pipelines.config.loading import validate_config
from pipelines.registry import tracking


def _sets(*assignments: str) -> list[str]:
    return [item for assignment in assignments for item in ("--set", assignment)]


def test_quickstart_builtin_is_valid():
    config = load_config("quickstart")
    assert config.model.family == "ddpm" and config.train.num_workers == 2
    assert config.register.model_name == "quickstart-ddpm"


def test_overrides_parse_yaml_values():
    raw = apply_overrides({"train": {"epochs": 1}}, ["train.epochs=7", "train.use_gpu=false", "data.image_size=16"])
    assert raw == {"train": {"epochs": 7, "use_gpu": False}, "data": {"image_size": 16}}


def test_each_problem_is_a_line_naming_its_field():
    with pytest.raises(ConfigError) as caught:
        load_config(
            "quickstart",
            [
                "train.batch_size=0",
                "train.strategy=zero4",
                "train.zero_stage=4",
                "bogus=1",
                "model.params.base_channels=-1",
                "data.source.kind=image_folder",
                "data.source.path=/nowhere",
            ],
        )
    assert set(caught.value.problems) == {
        "train.batch_size: must be > 0",
        "train.strategy: Input should be 'auto', 'ddp', 'zero1', 'zero2' or 'zero3'",
        "train.zero_stage: must be <= 3",
        "bogus: unknown field",
        "model.params.base_channels: must be > 0",
        "data.image_size: required for image_folder and parquet image sources",
    }


def test_unknown_preset_and_family_are_named():
    with pytest.raises(ConfigError) as caught:
        load_config("quickstart", ["model.preset=huge"])
    assert caught.value.problems[0].startswith("model.preset: 'huge' is not one of")
    with pytest.raises(ConfigError) as caught:
        load_config("quickstart", ["model.family=nope"])
    assert "unknown model family 'nope'" in caught.value.problems[0]


def test_invalid_config_exits_2_and_starts_nothing(tmp_path, monkeypatch, capsys):
    def must_not_start(*args, **kwargs):
        raise AssertionError("started something for an invalid config")

    monkeypatch.setattr(ray, "init", must_not_start)
    monkeypatch.setattr(tracking, "start_workflow_run", must_not_start)
    storage = tmp_path / "store"
    code = cli.main(
        ["run", "quickstart", "--storage", str(storage), *_sets("train.batch_size=0", "evaluate.num_samples=1")]
    )
    err = capsys.readouterr().err.splitlines()
    assert code == 2
    assert err == ["train.batch_size: must be > 0", "evaluate.num_samples: must be > 1"]
    assert not storage.exists()


def test_missing_config_file_exits_2(capsys):
    assert cli.main(["run", "no-such-config.yaml"]) == 2
    assert "CONFIG: 'no-such-config.yaml' is neither a file nor a built-in config" in capsys.readouterr().err


def test_yaml_file_config(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: mine\nregister: {model_name: m1}\ntrain: {epochs: 3}\n")
    config = load_config(str(path), ["train.epochs=5"], storage=str(tmp_path))
    assert (config.name, config.train.epochs, config.storage) == ("mine", 5, str(tmp_path))


def test_flatten_for_mlflow_params():
    assert flatten({"a": {"b": 1, "c": {"d": [1, 2]}}, "e": {}}) == {"a.b": 1, "a.c.d": [1, 2], "e": {}}


def test_models_command_lists_the_zoo(capsys):
    assert cli.main(["models"]) == 0
    out = capsys.readouterr().out
    assert "ddpm (image):" in out and "tiny:" in out and "small:" in out
    assert "stylegan (image):" in out and "cyclegan (image):" in out and "gpt (text or music):" in out


@pytest.mark.parametrize("name", ["cyclegan-digits", "stylegan-digits", "stylegan-sweep-digits"])
def test_the_gan_frontier_builtins_are_valid(name):
    config = load_config(name)
    assert config.model.family in ("stylegan", "cyclegan") and config.register.model_name


@pytest.mark.parametrize(
    "name, metric, mode",
    [
        ("quickstart", "eval/recall", "max"),
        ("cyclegan-digits", "eval/a2b_class_accuracy", "max"),
        ("quickstart", "eval/classifier_fid", "min"),
    ],
)
def test_a_named_metric_without_a_mode_is_minimised_or_maximised_as_it_means(name, metric, mode):
    assert load_config(name, [f"register.gate={{metric: {metric}}}"]).register.gate.mode == mode
    assert load_config(name, [f"register.gate.metric={metric}", "register.gate.mode=min"]).register.gate.mode == "min"


@pytest.mark.parametrize("metric, mode", [("eval/recall", "max"), ("eval/classifier_fid", "min")])
def test_a_sweep_metric_without_a_mode_is_minimised_or_maximised_as_it_means(metric, mode):
    raw = load_config("gan-sweep-digits").model_dump(mode="json")
    del raw["tune"]["mode"]
    raw["tune"]["metric"] = metric
    assert validate_config(raw).sweep.mode == mode


def test_a_translation_family_needs_two_domains():
    with pytest.raises(ConfigError) as caught:
        load_config("quickstart", ["model.family=cyclegan"])
    assert caught.value.problems == [
        "model.family: cyclegan translates between two image domains; set data.source to kind: domains "
        "(a and b, or a and b_from_a)"
    ]
    # Two sources: no known map, so no truth to measure against.
    two_sources = ["data.source.b={kind: digits}", "data.source.b_from_a=null"]
    with pytest.raises(ConfigError) as caught:
        load_config("cyclegan-digits", two_sources)
    assert caught.value.problems[0].startswith("register.gate.metric: eval/l1_to_truth needs the true translation")
    assert load_config("cyclegan-digits", [*two_sources, "register.gate.metric=eval/class_accuracy"])
    # Any image family can learn from a two-domain dataset (both domains as one distribution).
    other = ["model.family=dcgan", "model.params={}", "register.gate.metric=eval/recall", "register.gate.mode=max"]
    assert load_config("cyclegan-digits", other).model.family == "dcgan"


def test_storage_comes_from_genpipe_storage_unless_given(tmp_path, monkeypatch):
    monkeypatch.setenv("GENPIPE_STORAGE", "s3://bucket/from-env")
    assert load_config("quickstart").storage == "s3://bucket/from-env"
    assert load_config("quickstart", storage=str(tmp_path)).storage == str(tmp_path)  # --storage wins
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\nstorage: s3://bucket/named\nregister: {model_name: m}\n")
    assert load_config(str(path)).storage == "s3://bucket/named"  # a config that names one keeps it
    monkeypatch.delenv("GENPIPE_STORAGE")
    assert load_config("quickstart").storage == "./.genpipe"


def test_the_gate_defaults_to_the_family_metric_unless_named(tmp_path):
    assert load_config("quickstart").register.gate.metric == "eval/classifier_fid"
    path = tmp_path / "text.yaml"
    path.write_text(
        "name: text\ndata: {source: {kind: python_stdlib}, seq_len: 64}\nmodel: {family: gpt}\n"
        "register: {model_name: t}\n"
    )
    gate = load_config(str(path)).register.gate
    assert (gate.metric, gate.mode) == ("eval/val_loss", "min")  # what every language model reports
    named = load_config(str(path), ["register.gate.metric=eval/bits_per_byte"]).register.gate
    assert (named.metric, named.mode) == ("eval/bits_per_byte", "min")


def test_a_config_without_register_registers_under_its_name(tmp_path):
    path = tmp_path / "mine.yaml"
    path.write_text("name: mine\ndata: {source: {kind: digits}}\n")
    register = load_config(str(path)).register
    assert (register.model_name, register.alias) == ("mine", "champion")


@pytest.mark.parametrize(
    ("setting", "problem"),
    [
        ("name=../../x", "name: '../../x' does not match"),
        ("name=a/b", "name: 'a/b' does not match"),
        ("register.model_name=.hidden", "register.model_name: '.hidden' does not match"),
        ("register.alias=latest", "register.alias: 'latest' is reserved by MLflow"),
        ("register.alias=V3", "register.alias: 'V3' is reserved by MLflow"),
        ("register.alias=a b", "register.alias: 'a b' does not match"),
        ("register.gate.metric=eval/perplexity", "register.gate.metric: ddpm models do not report 'eval/perplexity'"),
    ],
)
def test_unsafe_names_reserved_aliases_and_foreign_gate_metrics_are_refused(setting, problem):
    with pytest.raises(ConfigError) as caught:
        load_config("quickstart", [setting])
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems


def test_a_sweep_refuses_max_steps():
    with pytest.raises(ConfigError, match="train.max_steps: a sweep counts a trial's length in epochs"):
        load_config("gan-sweep-digits", ["train.max_steps=10"])


def test_max_steps_is_the_run_length_and_overrides_epochs():
    from pipelines.train.settings import loop_settings
    from pipelines.train.strategy import Strategy

    train = load_config("quickstart", ["train.epochs=1", "train.max_steps=60"]).train
    ddp = Strategy("ddp", "a test")
    settings = loop_settings(train, ddp, 0, 2, torch.device("cpu"), split_rows=1437)
    assert settings.steps_per_epoch == 11 and settings.total_steps == 60  # 6 epochs' worth, not 11
    by_epochs = loop_settings(train.model_copy(update={"max_steps": None}), ddp, 0, 2, torch.device("cpu"), 1437)
    assert by_epochs.total_steps == 11


def test_resources_no_node_has_exit_2_before_anything_starts(ray_session, tmp_path, capsys):
    storage = tmp_path / "store"
    code = cli.main(
        ["run", "quickstart", "--storage", str(storage), *_sets("train.cpus_per_worker=3", "train.num_workers=1")]
    )
    assert code == 2
    assert "train.num_workers: 1 workers of 3 CPU each (PACK) do not fit the cluster (2 CPU/0 GPU)" in (
        capsys.readouterr().err
    )
    assert not (storage / "workflows").exists()


@pytest.mark.parametrize(
    "command", ["run quickstart --workflow-id", "submit quickstart --workflow-id", "resume", "status"]
)
def test_an_unsafe_workflow_id_exits_2_and_writes_nothing(tmp_path, capsys, command):
    storage = tmp_path / "store"
    code = cli.main([*command.split(), "a b/../../x", "--storage", str(storage)])
    assert code == 2
    assert "--workflow-id: 'a b/../../x' does not match" in capsys.readouterr().err
    assert not list(tmp_path.rglob("*.json"))


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("{kind: image_folder, path: NOWHERE}", "data.source.path: NOWHERE: does not exist"),
        ("{kind: text_files, path: 'NOWHERE/**/*.txt'}", "data.source.path: NOWHERE/**/*.txt: NOWHERE does not exist"),
        ("{kind: text_files, path: 'HERE/*.md'}", "data.source.path: HERE/*.md: matches no file"),
        ("{kind: domains, a: {kind: digits}, b: {kind: image_folder, path: NOWHERE}}", "data.source.b.path: NOWHERE"),
    ],
)
def test_a_data_path_that_is_not_there_exits_2_before_anything_starts(tmp_path, capsys, source, problem):
    (tmp_path / "here").mkdir()
    (tmp_path / "here" / "a.txt").write_text("text")
    places = {"NOWHERE": str(tmp_path / "nowhere"), "HERE": str(tmp_path / "here")}
    for word, place in places.items():
        source, problem = source.replace(word, place), problem.replace(word, place)
    family = "gpt" if "text_files" in source else "cyclegan" if "domains" in source else "ddpm"
    config = tmp_path / "config.yaml"
    config.write_text(f"name: x\ndata: {{source: {source}, image_size: 8}}\nmodel: {{family: {family}}}\n")
    assert cli.main(["run", str(config), "--storage", str(tmp_path / "store")]) == 2
    assert problem in capsys.readouterr().err
    assert not (tmp_path / "store" / "workflows").exists()


@pytest.mark.parametrize(
    ("family", "preset", "size", "problem"),
    [
        ("dcgan", "tiny", 6, "model.params.depth: 6px cannot be halved 2 times"),
        ("realnvp", "small", 5, "model.params.scales: 2 levels halve the image 1 times"),
        ("ddpm", "tiny", 7, "model.params.channel_mults: 7px cannot be halved 1 times"),
        ("ebm", "tiny", 3, "data.image_size: ebm (tiny) cannot run on 3x3 images"),
        ("cyclegan", "tiny", 4, "data.image_size: cyclegan (tiny) cannot run on 4x4 images"),
    ],
)
def test_an_image_size_the_model_cannot_take_is_refused_before_anything_starts(family, preset, size, problem):
    sets = [f"model.family={family}", f"model.preset={preset}", f"data.image_size={size}"]
    if family == "cyclegan":
        sets.append("data.source={kind: domains, a: {kind: digits}, b_from_a: invert}")
    with pytest.raises(ConfigError) as caught:
        load_config("quickstart", sets)
    assert any(line.startswith(problem) for line in caught.value.problems), caught.value.problems
    load_config("quickstart", [*sets[:2], "data.image_size=8", *sets[3:]])  # the size it can take passes
