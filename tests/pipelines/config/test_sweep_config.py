"""A sweep's config is checked before any trial starts: every problem is exit 2 naming the field,
and nothing is written to the storage."""

from __future__ import annotations

import pytest

from pipelines import cli
from pipelines.config import ConfigError, load_config
from pipelines.config.sweep import Distribution


def problems(*assignments: str) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_config("gan-sweep-digits", list(assignments))
    return error.value.problems


@pytest.mark.parametrize(
    ("assignment", "expected"),
    [
        ("tune.space={}", "tune.space: empty"),
        (
            "tune.space={train.learning_rate: {uniform: [0.1, 0.01]}}",
            "tune.space.train.learning_rate.uniform: the low bound 0.1 must be below",
        ),
        (
            "tune.space={train.learning_rate: {uniform: [0.1, 0.2], choice: [1]}}",
            "tune.space.train.learning_rate: give exactly one of choice, uniform, loguniform, randint "
            "(got choice, uniform)",
        ),
        (
            "tune.space={train.learning_rate: {gaussian: [0, 1]}}",
            "tune.space.train.learning_rate.gaussian: unknown field",
        ),
        ("tune.space={train.learning_rate: 0.1}", "tune.space.train.learning_rate: Input should be"),
        (
            "tune.space={model.family: {choice: [dcgan, nosuchgan]}}",
            "tune.space.model.family: model.family='nosuchgan' gives an invalid config: "
            "model.family: unknown model family",
        ),
        (
            "tune.space={model.params.beta: {uniform: [1, 2]}}",
            "tune.space.model.params.beta: model.params.beta=1.0 gives an invalid config: model.params: "
            "unknown field(s) beta for dcgan",
        ),
        (
            "tune.space={train.batch_size: {randint: [0, 8]}}",
            "tune.space.train.batch_size: train.batch_size=0 gives an invalid config: train.batch_size: must be > 0",
        ),
        (
            "tune.space={data.val_fraction: {uniform: [0.1, 0.2]}}",
            "tune.space.data.val_fraction: only model.* and train.*",
        ),
        ("tune.metric=eval/elbo", "tune.metric: 'eval/elbo' is not reported by gan trials; they report eval/"),
        ("tune.scheduler=hyperband", "tune.scheduler: Input should be 'asha' or 'none'"),
    ],
)
def test_bad_sweeps_are_refused_naming_the_field(assignment, expected):
    found = problems(assignment)
    assert any(expected in problem for problem in found), found


def test_every_family_in_the_space_must_report_the_metric():
    found = problems(
        "tune.space={model.family: {choice: [vae, dae]}}",
        "tune.metric=eval/nll_iw",
        "model.family=vae",
    )
    assert any("tune.metric: 'eval/nll_iw' is not reported by dae trials" in p for p in found), found
    # the gate's metric, too, must be one that every family of the space reports
    found = problems(
        "tune.space={model.family: {choice: [vae, dae]}}", "model.family=vae", "register.gate.metric=eval/nll_iw"
    )
    assert any("register.gate.metric: dae models do not report 'eval/nll_iw'" in p for p in found), found


def test_the_built_in_sweeps_are_valid():
    for name in ("gan-sweep-digits", "vae-sweep-digits"):
        config = load_config(name)
        assert config.tune is not None and config.tune.space


def test_cli_exits_2_before_anything_starts(tmp_path, capsys):
    storage = tmp_path / "store"
    code = cli.main(
        [
            "tune",
            "gan-sweep-digits",
            "--storage",
            str(storage),
            "--set",
            "tune.space={model.family: {choice: [dcgan, nope]}}",
        ]
    )
    assert code == 2 and not storage.exists()
    assert "tune.space.model.family" in capsys.readouterr().err
    assert cli.main(["tune", "quickstart", "--storage", str(storage)]) == 2
    assert "tune: missing" in capsys.readouterr().err and not storage.exists()


def test_distribution_extremes_bound_what_a_trial_draws():
    assert Distribution(randint=(4, 33)).extremes() == [4, 32]  # the high end is excluded, as in Ray Tune
    assert Distribution(loguniform=(1e-4, 1e-2)).extremes() == [1e-4, 1e-2]
    assert Distribution(choice=["a", "b"]).extremes() == ["a", "b"]
