"""Hostile data becomes rejects with their reasons (or a DataError naming the field), never a
crash or a 2 GB allocation: decompression bombs, formats nobody meant, symlinks out of the source,
Parquet cells of the wrong type, labels out of range; a damaged cached dataset is prepared again."""

from __future__ import annotations

import io
import json
import re
import zlib
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from data_prep.config import DataConfig, ImageFolderSource
from data_prep.errors import DataError
from data_prep.images import ImageRejected, decode_image
from data_prep.manifest import MANIFEST
from data_prep.prepare import prepare


def _png_bomb(side: int) -> bytes:
    """A valid PNG header claiming side x side grey pixels, in a few KB (zeros compress well)."""
    buffer = io.BytesIO()
    Image.new("L", (side, 64)).save(buffer, format="PNG")
    data = bytearray(buffer.getvalue())
    data[16:24] = side.to_bytes(4, "big") * 2  # width and height in IHDR
    data[29:33] = zlib.crc32(bytes(data[12:29])).to_bytes(4, "big")
    return bytes(data)


def _encoded(format: str, size: int = 12, seed: int = 0) -> bytes:
    buffer = io.BytesIO()
    pixels = np.random.default_rng(seed).integers(0, 255, (size, size), dtype=np.uint8)
    Image.fromarray(pixels).save(buffer, format=format)
    return buffer.getvalue()


def _rejects(manifest) -> dict[str, str]:
    with open(manifest.rejects["uri"]) as handle:
        return {row["key"]: row["reason"] for row in map(json.loads, handle)}


def test_a_decompression_bomb_is_refused_from_its_header():
    bomb = _png_bomb(13_000)  # 169 megapixels: 676 MB as float32, before any resize
    assert len(bomb) < 10_000
    with pytest.raises(ImageRejected, match=r"13000x13000 = 169000000 pixels, over data.source.max_pixels"):
        decode_image(bomb, 1)


def test_only_png_and_jpeg_are_decoded():
    assert decode_image(_encoded("JPEG"), 1).shape == (1, 12, 12)
    for other in ("TIFF", "BMP", "GIF"):
        with pytest.raises(ImageRejected, match="not a PNG or JPEG image"):
            decode_image(_encoded(other), 1)
    with pytest.raises(ImageRejected, match="holds str, not encoded image bytes"):
        decode_image("a path, not bytes", 1)  # type: ignore[arg-type]


def test_hostile_files_in_an_image_folder_are_rejects_with_reasons(ray_session, tmp_path):
    root, outside = tmp_path / "images", tmp_path / "secret"
    outside.mkdir()
    (outside / "private.png").write_bytes(_encoded("PNG", seed=9))
    for label in ("a", "b"):
        (root / label).mkdir(parents=True)
        for i in range(12):
            (root / label / f"{i}.png").write_bytes(_encoded("PNG", seed=i))
    (root / "a" / "bomb.png").write_bytes(_png_bomb(5000))
    (root / "a" / "tiff.png").write_bytes(_encoded("TIFF"))
    (root / "b" / "link.png").symlink_to(outside / "private.png")
    config = DataConfig(
        source=ImageFolderSource(kind="image_folder", path=str(root), max_pixels=1_000_000),
        image_size=8,
        max_reject_fraction=0.2,
    )
    manifest, _ = prepare(config, str(tmp_path / "store"))
    reasons = _rejects(manifest)
    assert set(reasons) == {"a/bomb.png", "a/tiff.png", "b/link.png"}
    assert "25000000 pixels, over data.source.max_pixels (1000000)" in reasons["a/bomb.png"]
    assert "not a PNG or JPEG image" in reasons["a/tiff.png"]
    assert reasons["b/link.png"] == "a symlink that leads outside data.source.path"
    assert manifest.splits["train"].rows + manifest.splits["val"].rows == 24


def _reasons_named_by(error: DataError) -> str:
    """The rejects file a too-many-rejects error points at."""
    return Path(re.search(r"reasons in (\S+)", str(error)).group(1)).read_text()


def _parquet(folder, table: pa.Table) -> None:
    folder.mkdir(exist_ok=True)
    pq.write_table(table, folder / "part-0.parquet")


def test_parquet_cells_of_the_wrong_type_and_labels_out_of_range_are_rejects(ray_session, tmp_path):
    images = [_encoded("PNG", seed=i) for i in range(24)]
    labels = [i % 3 for i in range(24)]
    labels[1], labels[2] = -1, 7_000_000
    _parquet(tmp_path / "src", pa.table({"image": images, "label": labels}))
    config = DataConfig.model_validate(
        {"source": {"kind": "parquet", "path": str(tmp_path / "src")}, "image_size": 8, "max_reject_fraction": 0.2}
    )
    manifest, _ = prepare(config, str(tmp_path / "store"))
    assert manifest.num_classes == 3  # not 7,000,001 classes for the conditional models
    reasons = sorted(_rejects(manifest).values())
    assert len(reasons) == 2 and all("outside [0, data.source.max_classes=1000)" in r for r in reasons)
    assert all(key.startswith("part-0.parquet#") for key in _rejects(manifest))  # not the mount: the split stays put

    _parquet(tmp_path / "strings", pa.table({"image": [f"img{i}.png" for i in range(5)], "label": ["cat"] * 5}))
    strings = config.model_copy(update={"source": config.source.model_copy(update={"path": str(tmp_path / "strings")})})
    with pytest.raises(DataError, match="5 of 5 records rejected") as caught:
        prepare(strings, str(tmp_path / "store"))
    rejects = _reasons_named_by(caught.value)
    assert "label column 'label' holds str 'cat', not a class" in rejects


def test_a_missing_parquet_column_names_the_field_and_the_file(ray_session, tmp_path):
    _parquet(tmp_path / "src", pa.table({"picture": [_encoded("PNG")]}))
    config = DataConfig.model_validate({"source": {"kind": "parquet", "path": str(tmp_path / "src")}, "image_size": 8})
    with pytest.raises(DataError, match=r"data.source.image_column: .*part-0.parquet has no column 'image'"):
        prepare(config, str(tmp_path / "store"))


def test_a_parquet_text_column_of_numbers_is_rejected_by_row(ray_session, tmp_path):
    texts = [f"def f{i}():\n    return {i}\n" * 20 for i in range(30)]
    _parquet(tmp_path / "src", pa.table({"text": texts}))
    _parquet(tmp_path / "src2", pa.table({"text": list(range(30))}))
    base = {"kind": "parquet", "text_column": "text", "label_column": None}
    config = DataConfig.model_validate({"source": {**base, "path": str(tmp_path / "src")}, "seq_len": 16})
    prepare(config, str(tmp_path / "store"))
    numbers = DataConfig.model_validate({"source": {**base, "path": str(tmp_path / "src2")}, "seq_len": 16})
    with pytest.raises(DataError, match="30 of 30 records rejected") as caught:
        prepare(numbers, str(tmp_path / "store"))
    assert "text column 'text' holds int, not text" in _reasons_named_by(caught.value)


def test_a_damaged_cached_dataset_is_prepared_again(ray_session, tmp_path):
    first, _ = prepare(DataConfig(), str(tmp_path))
    shard = first.shard_uris("train")[0]
    with open(shard, "r+b") as handle:  # same size, other bytes: only the hash can tell
        handle.seek(100)
        handle.write(b"\x00\x01\x02\x03")
    second, cache_hit = prepare(DataConfig(), str(tmp_path))
    assert not cache_hit and second.fingerprint == first.fingerprint
    folder = tmp_path / "datasets" / first.fingerprint
    damaged = json.loads(next(folder.glob("manifest.damaged-*.json")).read_text())["reason"]
    assert "sha256" in damaged and shard.rsplit("/", 1)[-1] in damaged
    third, cache_hit = prepare(DataConfig(), str(tmp_path))
    assert cache_hit and third == second
    (folder / MANIFEST).write_text("{ not json")
    assert prepare(DataConfig(), str(tmp_path))[1] is False
