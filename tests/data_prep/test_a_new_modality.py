"""The worked example of docs/architecture.md ("Adding a modality"): a modality defined in this
file alone (its source, its settings, its build, how its shards decode) is prepared, cached,
verified and read by data_prep unchanged, after one line registers it. What the pipeline asks of
every modality (a scorer, a served answer) is checked for each registered one, so a modality that
forgets one fails here rather than in a user's run."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import numpy as np
import pyarrow as pa
import pytest
from pydantic import BaseModel, Field

from data_prep.columns import Columns, fixed_width
from data_prep.config import DataConfig
from data_prep.manifest import Manifest, dataset_uri, find_manifest, publish_new
from data_prep.modalities import registry
from data_prep.modalities.base import PrepSettings, SourceConfig
from data_prep.modalities.modality import Modality
from data_prep.prepare import describe_result, fingerprint, prepare
from data_prep.readers import read_split
from data_prep.shards import new_write_id, write_split
from data_prep.transforms import split_of
from models import FAMILIES
from pipelines.evaluate.scorers import EVALUATIONS
from pipelines.train.model_setup import data_shape
from serving.pyfunc import ANSWERS
from storage import join


class IrisSource(SourceConfig):
    """scikit-learn's iris measurements: 150 flowers, 4 numbers each, 3 species."""

    modality: ClassVar[str] = "vectors"
    kind: Literal["iris"] = "iris"

    def describe(self) -> dict[str, Any]:
        import sklearn

        return {"kind": "iris", "sklearn": sklearn.__version__}

    def read(self) -> Any:
        from sklearn.datasets import load_iris

        iris = load_iris()
        return iris.data.astype(np.float32), iris.target.astype(np.int64)

    def class_names(self) -> list[str]:
        from sklearn.datasets import load_iris

        return [str(name) for name in load_iris().target_names]


class VectorPrep(PrepSettings):
    source: IrisSource = Field(default_factory=IrisSource)
    split_seed: int = 0


class VectorInfo(BaseModel):
    dims: int
    class_names: list[str]


class VectorModality(Modality[VectorPrep]):
    name: ClassVar[str] = "vectors"
    settings = VectorPrep

    def build(self, config: VectorPrep, storage: str, key: str, description: dict[str, Any]) -> Manifest:
        import ray.data

        features, labels = config.source.read()
        uri, write_id, dims = dataset_uri(storage, key), new_write_id(), features.shape[1]
        keys = [f"iris/{index}" for index in range(len(features))]
        splits = {}
        for split in ("train", "val"):
            rows = [i for i, k in enumerate(keys) if split_of(k, config.split_seed, config.val_fraction) == split]
            table = pa.table(
                {"key": [keys[i] for i in rows], "label": labels[rows], "vector": [features[i].tobytes() for i in rows]}
            )
            folder = join(uri, write_id, split)
            splits[split] = write_split(ray.data.from_arrow(table), uri, folder, dims * 4 + 8, config.shard_mb, None)
        info = VectorInfo(dims=dims, class_names=config.source.class_names())
        described = dict(
            modality=self.name,
            details=info.model_dump(),
            schema_={"key": "string", "label": "int64", "vector": f"binary (float32 x {dims})"},
        )
        return publish_new(key, uri, description, config.model_dump(mode="json"), splits, 0, "", **described)

    def info(self, manifest: Manifest) -> VectorInfo:
        return VectorInfo.model_validate(manifest.details)

    def decode(self, table: pa.Table, manifest: Manifest) -> Columns:
        vectors = fixed_width(table.column("vector"), "<f4", (self.info(manifest).dims,))
        return {"vector": vectors, "label": table.column("label").to_numpy().astype(np.int64)}

    def row_bytes(self, manifest: Manifest) -> int:
        return self.info(manifest).dims * 4 + 8

    def summary(self, manifest: Manifest) -> dict[str, Any]:
        return {"dims": self.info(manifest).dims}

    def model_inputs(self, manifest: Manifest) -> dict[str, Any]:
        info = self.info(manifest)
        return {"dims": info.dims, "num_classes": len(info.class_names)}


@pytest.fixture
def vectors_registered(monkeypatch):
    monkeypatch.setitem(registry.MODALITIES, "vectors", VectorModality())  # the one registry line


def test_a_new_modality_is_prepared_cached_verified_and_read(vectors_registered, ray_session, tmp_path):
    storage = str(tmp_path / "store")
    config = VectorPrep()
    manifest, cache_hit = prepare(config, storage)
    assert not cache_hit and manifest.modality == "vectors"
    assert manifest.splits["train"].rows + manifest.splits["val"].rows == 150
    assert describe_result(manifest, cache_hit)["dims"] == 4
    assert data_shape(manifest) == {"dims": 4, "num_classes": 3}  # what a model of it is built for

    columns = read_split(manifest, "train")  # decoded by the modality, checked against the manifest
    assert columns["vector"].shape == (manifest.splits["train"].rows, 4) and columns["vector"].dtype == np.float32
    iris = IrisSource().read()[0]
    assert {tuple(row) for row in columns["vector"]} <= {tuple(row) for row in iris}

    again, cache_hit = prepare(config, storage)
    assert cache_hit and again.fingerprint == manifest.fingerprint
    # Only its own settings enter its fingerprint; a damaged shard sends it to be built again.
    assert VectorPrep.shaping_fields() == {"split_seed", "val_fraction", "shard_mb", "num_shards"}
    assert fingerprint(VectorPrep(split_seed=1)) != manifest.fingerprint
    shard = manifest.shard_uris("train")[0]
    with open(shard, "r+b") as handle:
        handle.truncate(10)
    assert find_manifest(storage, manifest.fingerprint) is None


def test_a_modality_not_registered_is_a_clear_error(tmp_path):
    with pytest.raises(Exception, match="unknown modality 'vectors'; registered: image, text, series"):
        prepare(VectorPrep(), str(tmp_path / "store"))


@pytest.mark.parametrize("name", list(registry.MODALITIES))
def test_every_registered_modality_is_scored_served_and_configured(name):
    modality = registry.modality_named(name)
    assert name in EVALUATIONS, f"{name}: no evaluation in pipelines/evaluate/scorers.py EVALUATIONS"
    assert name in ANSWERS, f"{name}: no served answer in serving/pyfunc.py ANSWERS"
    assert issubclass(DataConfig, modality.settings), f"{name}: DataConfig does not take {modality.settings.__name__}"
    # A config's model section is checked before the data exists, with inputs the modality makes up.
    learners = [cls for cls in FAMILIES.values() if cls.learns(name)]
    for cls in learners:
        fields = cls.config_class.model_fields
        given_by_user = set(cls.registered_parts.values())  # a registered part's URI is a model param
        needed = {field for field, info in fields.items() if info.is_required()} - given_by_user
        assert needed <= set(modality.placeholder_inputs), f"{cls.family}: no placeholder for {needed}"


def test_every_data_field_shapes_some_modality_and_shared_fields_agree():
    settings = [modality.settings for modality in registry.MODALITIES.values()]
    read = set().union(*(cls.shaping_fields() for cls in settings))
    assert set(DataConfig.model_fields) == read | {"source", "max_reject_fraction"}
    for field in read:
        defaults = {
            repr(cls.model_fields[field].get_default(call_default_factory=True))
            for cls in settings
            if field in cls.model_fields
        }
        assert len(defaults) == 1, f"data.{field}: the modalities that read it give it different defaults {defaults}"
