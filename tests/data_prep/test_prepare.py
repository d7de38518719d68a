"""prepare on a real local Ray: manifest, cache hits, rejects, verification before reading."""

from __future__ import annotations

import hashlib
import json
import shutil
import time

import numpy as np
import pytest
from PIL import Image

from data_prep.config import DataConfig, ImageFolderSource
from data_prep.errors import DataError
from data_prep.manifest import MANIFEST, MEGABYTE, load_verified
from data_prep.prepare import fingerprint, prepare
from data_prep.readers import read_arrays
from data_prep.shards import rows_per_shard
from pipelines.workflow.progress import flush, open_board


def test_digits_manifest_describes_the_shards(ray_session, tmp_path):
    manifest, cache_hit = prepare(DataConfig(), str(tmp_path))
    assert not cache_hit
    assert manifest.splits["train"].rows + manifest.splits["val"].rows == 1797
    assert 0.15 < manifest.splits["val"].rows / 1797 < 0.25
    assert manifest.image_shape == (1, 8, 8) and manifest.num_classes == 10
    for split in ("train", "val"):
        for shard, uri in zip(manifest.splits[split].shards, manifest.shard_uris(split), strict=True):
            with open(uri, "rb") as handle:
                data = handle.read()
            assert hashlib.sha256(data).hexdigest() == shard.sha256 and len(data) == shard.bytes
    written = json.loads((tmp_path / "datasets" / manifest.fingerprint / MANIFEST).read_text())
    assert written["fingerprint"] == manifest.fingerprint and written["rejects"]["count"] == 0
    images, labels = read_arrays(manifest, "val")
    assert images.shape == (manifest.splits["val"].rows, 1, 8, 8)
    assert images.min() == -1 and images.max() == 1 and set(labels) == set(range(10))


def test_second_prepare_is_a_cache_hit(ray_session, tmp_path):
    first, _ = prepare(DataConfig(), str(tmp_path))
    before = sorted(p.name for p in (tmp_path / "datasets" / first.fingerprint).iterdir())
    second, cache_hit = prepare(DataConfig(), str(tmp_path))
    assert cache_hit and second == first
    assert sorted(p.name for p in (tmp_path / "datasets" / first.fingerprint).iterdir()) == before
    # A different prep config is a different dataset.
    assert fingerprint(DataConfig(val_fraction=0.3)) != first.fingerprint


def test_a_copied_storage_keeps_its_datasets(ray_session, tmp_path):
    """A storage copied elsewhere (a folder synced to S3, one node's disk to another's) is a cache
    hit there, read from where it now is, even with the original gone."""
    first, _ = prepare(DataConfig(), str(tmp_path / "here"))
    shutil.copytree(tmp_path / "here", tmp_path / "there")
    shutil.rmtree(tmp_path / "here")
    moved, cache_hit = prepare(DataConfig(), str(tmp_path / "there"))
    assert cache_hit and moved.uri == str(tmp_path / "there" / "datasets" / first.fingerprint)
    assert all(uri.startswith(moved.uri) for uri in moved.shard_uris("train"))
    images, _ = read_arrays(moved, "train")
    assert len(images) == first.splits["train"].rows


def _image_folder(root, corrupt: int):
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (root / label).mkdir(parents=True)
        for i in range(10):
            Image.fromarray(rng.integers(0, 255, (12, 12), dtype=np.uint8)).save(root / label / f"{i}.png")
    for i in range(corrupt):
        (root / "dog" / f"broken{i}.png").write_bytes(b"not a png at all")


def test_corrupt_image_is_rejected_with_its_reason(ray_session, tmp_path):
    _image_folder(tmp_path / "images", corrupt=1)
    config = DataConfig(
        source=ImageFolderSource(kind="image_folder", path=str(tmp_path / "images")),
        image_size=8,
        max_reject_fraction=0.2,
        val_fraction=0.3,
    )
    report = open_board()  # the console's channel, as the prepare step passes it
    manifest, _ = prepare(config, str(tmp_path / "store"), report)
    assert manifest.rejects["count"] == 1 and manifest.class_names == ["cat", "dog"]
    assert manifest.splits["train"].rows + manifest.splits["val"].rows == 20
    flush(report)
    events, deadline = report.take(), time.monotonic() + 30
    while sum(event.get("add", 0) for event in events) < 21 and time.monotonic() < deadline:
        time.sleep(0.1)  # the tasks' posts reach the board on their own time, not the driver's
        events += report.take()
    counted = [event for event in events if "add" in event]  # from Ray Data's tasks, as they go
    assert sum(event["add"] for event in counted) == 21 and {event["total"] for event in counted} == {21}
    said = [event["text"] for event in events if "text" in event]
    assert said[0].startswith("source image_folder, 21 files, ") and said[0].endswith(manifest.fingerprint)
    assert said[-1].startswith(f"wrote train {manifest.splits['train'].rows}, val ") and "(1 rejected)" in said[-1]
    with open(manifest.rejects["uri"]) as handle:
        rejects = [json.loads(line) for line in handle]
    assert rejects[0]["key"] == "dog/broken0.png"
    assert rejects[0]["reason"] == "image refused: not a PNG or JPEG image"
    # A file a record: the records are gathered into shards of shard_mb, not a shard per file.
    assert [len(manifest.splits[split].shards) for split in ("train", "val")] == [1, 1]
    row_bytes = 8 * 8 * 4 + 8  # a decoded 8x8 image and its label
    small = config.model_copy(update={"shard_mb": 4.5 * row_bytes / MEGABYTE})
    rows = rows_per_shard(row_bytes, small.shard_mb)
    assert rows == 4
    train = prepare(small, str(tmp_path / "store"))[0].splits["train"]
    assert rows < train.rows and [s.rows for s in train.shards[:-1]] == [rows] * (len(train.shards) - 1)
    assert 0 < train.shards[-1].rows <= rows and len(train.shards) == -(-train.rows // rows)


def test_too_many_rejects_fail_and_publish_nothing(ray_session, tmp_path):
    _image_folder(tmp_path / "images", corrupt=3)
    config = DataConfig(
        source=ImageFolderSource(kind="image_folder", path=str(tmp_path / "images")),
        image_size=8,
        max_reject_fraction=0.1,
    )
    with pytest.raises(DataError, match=r"3 of 23 records rejected .* data.max_reject_fraction=0.1; reasons in"):
        prepare(config, str(tmp_path / "store"))
    assert not list((tmp_path / "store").rglob(MANIFEST))
    assert len(list((tmp_path / "store").rglob("rejects.jsonl"))) == 1


def test_missing_source_folder_is_named(tmp_path):
    config = DataConfig(source=ImageFolderSource(kind="image_folder", path=str(tmp_path / "nope")), image_size=8)
    with pytest.raises(DataError, match="data.source.path: .*nope does not exist"):
        prepare(config, str(tmp_path))


def test_readers_refuse_a_damaged_dataset(ray_session, tmp_path):
    manifest, _ = prepare(DataConfig(), str(tmp_path))
    shard = manifest.shard_uris("train")[0]
    with open(shard, "ab") as handle:
        handle.write(b"junk")
    with pytest.raises(DataError, match="bytes, the manifest says"):
        load_verified(manifest.uri)
    (tmp_path / "datasets" / manifest.fingerprint / MANIFEST).unlink()
    with pytest.raises(DataError, match="no manifest"):
        load_verified(manifest.uri)


def test_parquet_source_decodes_images_and_rejects_bad_records(ray_session, tmp_path):
    import io

    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(3)
    encoded, labels = [], []
    for i in range(30):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 255, (16, 16), dtype=np.uint8)).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
        labels.append(i % 3)
    encoded[5] = b"\x89PNG truncated"
    (tmp_path / "src").mkdir()
    pq.write_table(pa.table({"picture": encoded, "digit": labels}), tmp_path / "src" / "part-0.parquet")
    config = DataConfig.model_validate(
        {
            "source": {
                "kind": "parquet",
                "path": str(tmp_path / "src"),
                "image_column": "picture",
                "label_column": "digit",
            },
            "image_size": 8,
            "max_reject_fraction": 0.05,
        }
    )
    manifest, _ = prepare(config, str(tmp_path / "store"))
    assert manifest.rejects["count"] == 1 and manifest.image_shape == (1, 8, 8)
    assert manifest.num_classes == 3
    images, labels_read = read_arrays(manifest, "train")
    assert images.shape[1:] == (1, 8, 8) and set(labels_read) <= {0, 1, 2}
    assert manifest.splits["train"].rows + manifest.splits["val"].rows == 29


def test_crops_of_sklearns_sample_photographs_are_a_colour_dataset(ray_session, tmp_path):
    source = {"kind": "sample_image_crops", "crop": 32, "count": 120, "seed": 1}
    manifest, _ = prepare(DataConfig.model_validate({"source": source, "image_size": 16}), str(tmp_path))
    assert manifest.image_shape == (3, 16, 16) and manifest.class_names == ["china", "flower"]
    images, labels = read_arrays(manifest, "train")
    assert len(images) + manifest.splits["val"].rows == 120 and set(labels) == {0, 1}
    assert -1 <= images.min() < images.max() <= 1 and images.std(axis=(1, 2, 3)).mean() > 0.02
    grey = DataConfig.model_validate({"source": {**source, "crop": 16, "channels": 1}})
    assert prepare(grey, str(tmp_path))[0].image_shape == (1, 16, 16)


def test_image_shards_keep_one_byte_a_pixel_and_give_back_the_sources_values(ray_session, tmp_path):
    """Digits' 17 levels come back exactly from uint8 shards; resized digits (a 256-level grid)
    within 1/255 of the float pipeline's value; a shard's image cells are one byte a pixel."""
    import pyarrow.parquet as pq
    from sklearn.datasets import load_digits

    from data_prep.images import resize

    manifest, _ = prepare(DataConfig(), str(tmp_path / "native"))
    assert manifest.stored_levels == 17 and "uint8" in manifest.schema_["image"]
    cells = pq.read_table(manifest.shard_uris("train")[0]).column("image").to_pylist()
    assert {len(cell) for cell in cells} == {64}  # 8 x 8 pixels, one byte each (float32 was 256)
    images, _ = read_arrays(manifest, "train")
    levels = (images + 1) / 2 * 16
    assert np.array_equal(levels, np.round(levels))  # on the source's grid, exactly
    expected = {tuple(image.ravel()) for image in load_digits().images / 8.0 - 1.0}
    assert {tuple(image.ravel()) for image in images.astype(np.float64)} <= expected

    resized, _ = prepare(DataConfig(image_size=16), str(tmp_path / "resized"))
    assert resized.stored_levels == 256
    got, _ = read_arrays(resized, "val")
    assert got.shape[1:] == (1, 16, 16) and got.min() == -1 and got.max() == 1
    floats = np.stack([resize(image[None].astype(np.float32), 16) * 2 - 1 for image in load_digits().images / 16.0])
    nearest = np.abs(floats[:, None] - got[None, :8]).max(axis=(2, 3, 4)).min(axis=0)
    assert nearest.max() <= 1 / 255 + 1e-6  # each stored image is its float original, rounded


def test_a_dataset_prepared_with_float32_pixels_is_still_read(ray_session, tmp_path):
    """A manifest without `stored_levels` (PREP_CODE_VERSION 4): its float32 cells come back as
    they were, so a workflow prepared before the change resumes."""
    import pyarrow as pa

    from data_prep.readers import decode_table

    manifest, _ = prepare(DataConfig(), str(tmp_path))
    images, labels = read_arrays(manifest, "val")
    older = manifest.model_copy(update={"stored_levels": None})
    cells = pa.array([image.astype("<f4").tobytes() for image in images], pa.binary())
    decoded = decode_table(pa.table({"image": cells, "label": labels}), older)
    assert np.array_equal(decoded["image"], images) and decoded["image"].dtype == np.float32
