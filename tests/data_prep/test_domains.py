"""Two-domain datasets for unpaired translation: from one source under a known map, or from two
sources; every row carries its domain, no record is in both, bad configs name their field."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from sklearn.datasets import load_digits

from data_prep.config import DataConfig
from data_prep.domains import apply_map
from data_prep.prepare import prepare
from data_prep.readers import read_split
from pipelines.config import ConfigError
from pipelines.config.loading import validate_config


def domains_config(**source) -> DataConfig:
    return DataConfig.model_validate({"source": {"kind": "domains", "a": {"kind": "digits"}, **source}})


@pytest.mark.parametrize("name", ["invert", "rotate90", "flip"])
def test_a_known_map_and_its_inverse_undo_each_other(name):
    images = np.random.default_rng(0).uniform(-1, 1, (3, 1, 5, 7))
    mapped = apply_map(name, images)
    assert not np.allclose(mapped[..., :5, :5], images[..., :5, :5])
    np.testing.assert_array_equal(apply_map(name, mapped, inverse=True), images)


def test_digits_and_their_inverted_copies_are_two_unpaired_domains(ray_session, tmp_path):
    manifest, _ = prepare(domains_config(b_from_a="invert", names=["plain", "inverted"]), str(tmp_path))
    assert manifest.domains is not None and manifest.domains.names == ("plain", "inverted")
    assert manifest.domains.b_from_a == "invert" and manifest.num_classes == 10
    columns = {split: read_split(manifest, split) for split in ("train", "val")}
    rows = sum(len(c["domain"]) for c in columns.values())
    domains = np.concatenate([c["domain"] for c in columns.values()])
    assert rows == 1797 and 0.4 < domains.mean() < 0.6  # about half of the digits became B
    digits = load_digits()
    originals = {
        tuple((image / 8 - 1).ravel()): label for image, label in zip(digits.images, digits.target, strict=True)
    }
    for split in columns.values():
        for image, label, domain in zip(split["image"], split["label"], split["domain"], strict=True):
            # A is a digit as it is; B is one inverted, and no digit appears in both domains.
            original = image if domain == 0 else apply_map("invert", image, inverse=True)
            assert originals.get(tuple(original.ravel())) == label
    seen = [
        tuple(apply_map("invert", i, inverse=True).ravel() if d else i.ravel())
        for c in columns.values()
        for i, d in zip(c["image"], c["domain"], strict=True)
    ]
    assert len(set(seen)) == len(set(originals))  # every distinct digit once


def test_two_image_sources_make_two_domains(ray_session, tmp_path):
    for domain, value in (("day", 230), ("night", 20)):
        for label in ("x", "y"):
            (tmp_path / domain / label).mkdir(parents=True)
            for index in range(10):
                Image.fromarray(np.full((6, 6), value, np.uint8)).save(tmp_path / domain / label / f"{index}.png")
    source = {
        "a": {"kind": "image_folder", "path": str(tmp_path / "day")},
        "b": {"kind": "image_folder", "path": str(tmp_path / "night")},
        "names": ["day", "night"],
    }
    config = DataConfig.model_validate({"source": {"kind": "domains", **source}, "image_size": 4, "val_fraction": 0.3})
    manifest, _ = prepare(config, str(tmp_path / "store"))
    columns = read_split(manifest, "train")
    bright = columns["image"].mean((1, 2, 3)) > 0
    np.testing.assert_array_equal(bright, columns["domain"] == 0)  # day is A, night is B
    assert manifest.class_names == ["x", "y"] and manifest.domains.b_from_a is None


@pytest.mark.parametrize(
    "source, problem",
    [
        ({}, "data.source.b: give domain b as a source"),  # no B at all
        ({"b": {"kind": "digits"}, "b_from_a": "invert"}, "data.source.b: give domain b"),  # two ways to B
        ({"b_from_a": "blur"}, "data.source.b_from_a: Input should be 'invert', 'rotate90' or 'flip'"),
        ({"b": {"kind": "parquet", "path": "x", "text_column": "t"}}, "data.source.b: a domain holds images"),
        ({"b": {"kind": "image_folder", "path": "x", "channels": 3}}, "data.source.b.channels: both domains"),
    ],
)
def test_a_domains_config_that_cannot_work_names_its_field(source, problem):
    raw = {"name": "t", "data": {"source": {"kind": "domains", "a": {"kind": "digits"}, **source}, "image_size": 8}}
    with pytest.raises(ConfigError) as caught:
        validate_config(raw)
    assert caught.value.problems[0].startswith(problem), caught.value.problems
