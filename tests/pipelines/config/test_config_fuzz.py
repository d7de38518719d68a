"""Generated configs through validation: every one is accepted or refused with lines that name a
field (ConfigError, exit 2); none ends in another exception (a traceback for the user)."""

from __future__ import annotations

import contextlib

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipelines.config import ConfigError, load_config
from pipelines.config.composition import builtin_configs
from pipelines.config.loading import read_config_source, validate_config
from pipelines.config.overrides import flatten

BUILTINS = tuple(builtin_configs())  # every family and modality: images, text, series, two domains, sweeps
# Every field path the built-in configs set, plus sections and fields they do not.
PATHS = sorted(
    {path for name in BUILTINS for path in flatten(read_config_source(name))}
    | {"register", "train", "data.source", "model.params", "tune.space", "register.gate.metric", "cluster.env_vars"}
    | {"data.source.kind", "data.source.column", "data.split_at", "data.source.b_from_a", "model.preset"}
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**40), max_value=2**40),
    st.integers(min_value=1, max_value=64),  # mostly valid: the accepted paths are exercised too
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["digits", "gpt", "ddpm", "latest", "../x", "eval/classifier_fid", "s3://b/p", "1e3", "{}"]),
    st.sampled_from(["pixelcnn", "glow", "ebm", "ar", "lstm", "cyclegan", "stylegan", "statsmodels", "invert", "tiny"]),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6,
)


def _outcome(raw: dict) -> str:
    try:
        validate_config(raw)
    except ConfigError as error:
        assert error.problems and all(line.split(":", 1)[0] for line in error.problems)
        return "refused"
    return "accepted"


def mutated(base: str, changes: dict) -> dict:
    """The built-in config `base` with each dotted path set (its parents made mappings)."""
    raw = read_config_source(base)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = raw
        for part in parents:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        node[leaf] = value
    return raw


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(base=st.sampled_from(BUILTINS), changes=st.dictionaries(st.sampled_from(PATHS), VALUES, max_size=4))
def test_changed_builtin_configs_are_accepted_or_refused_by_field(base, changes):
    _outcome(mutated(base, changes))


@settings(max_examples=200, deadline=None)
@given(sets=st.lists(st.text(max_size=30), max_size=3))
def test_arbitrary_set_options_never_raise_anything_but_config_errors(sets):
    with contextlib.suppress(ConfigError):
        load_config("quickstart", sets)


@settings(max_examples=100, deadline=None)
@given(document=VALUES)
def test_any_yaml_document_is_a_config_error_or_a_config(tmp_path_factory, document):
    path = tmp_path_factory.mktemp("fuzz") / "c.yaml"
    path.write_text(yaml.safe_dump(document))
    with contextlib.suppress(ConfigError):
        load_config(str(path))
