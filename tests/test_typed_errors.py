"""Errors that carry what they are about: each layer words them for its reader, none parses text."""

from __future__ import annotations

import pickle

import pytest

import models
from pipelines.cli.model_commands import flag
from pipelines.config.errors import in_pipeline_terms
from typed_errors import FieldError, OptionError, first_line


def test_they_cross_process_boundaries_whole():
    for error in (
        FieldError("downsamplings", "8px cannot be halved 3 times"),
        OptionError("horizon", "must be > 0", -1),
    ):
        copy = pickle.loads(pickle.dumps(error))
        assert type(copy) is type(error) and copy.args == error.args and vars(copy) == vars(error)


def test_a_familys_field_is_named_as_the_pipeline_config_has_it():
    assert str(in_pipeline_terms(FieldError("channel_mults", "too deep"))) == "model.params.channel_mults: too deep"
    assert str(in_pipeline_terms(FieldError("image_shape", "not square"))) == "data.image_size: not square"
    assert str(in_pipeline_terms(FieldError("family", "needs labels"))) == "model.family: needs labels"
    with pytest.raises(FieldError) as raised:  # from the family itself, with its own name
        models.build_model(
            "ddpm", models.resolve_config("ddpm", "tiny", {"channel_mults": [1, 2, 2, 2]}, {"image_shape": (1, 4, 4)})
        )
    assert raised.value.field == "channel_mults"


def test_an_option_is_worded_as_the_flag_the_user_typed():
    assert flag(OptionError("steps", "must be > 0"), {}) == "--steps"
    assert flag(OptionError("max_new_tokens", "must be > 0"), {}) == "--max-new-tokens"
    assert flag(OptionError("n", "must be > 0"), {}) == "-n"
    # The family's own options came through --option KEY=VALUE: that is what is shown.
    assert flag(OptionError("temperature", "must be a number > 0", 0), {"temperature": 0}) == "--option temperature=0"
    assert flag(OptionError("horizon", "a ddpm model takes no horizon"), {"horizon": 3}) == "--option horizon=3"


def test_one_line_of_any_error():
    assert first_line(ValueError("\n  first\nsecond")) == "first"
    assert first_line(RuntimeError()) == "RuntimeError"
    assert first_line(ValueError("x" * 50), 10) == "x" * 10


def test_a_model_validator_naming_its_field_is_one_line_under_model_params():
    from pipelines.config import ConfigError, validate_config

    config = {"name": "x", "data": {"source": {"kind": "python_stdlib"}, "seq_len": 32}, "model": {"family": "gpt"}}
    config["model"]["params"] = {"n_embd": 30, "n_head": 4}
    with pytest.raises(ConfigError) as raised:
        validate_config(config)
    assert raised.value.problems == ["model.params.n_embd: 30 is not a multiple of n_head=4"]
