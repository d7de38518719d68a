"""The train feed: cached and streamed give the same batches; a damaged or missing shard stops
the read naming it; S3 streams like a local folder; a worker's memory does not grow with the
data."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import s3fs
import torch
from helpers import REPO

from data_prep.config import DataConfig
from data_prep.errors import DataError
from data_prep.manifest import Manifest, load_verified
from data_prep.prepare import prepare
from data_prep.sample_order import Cursor, rank_batches, step_start
from pipelines.cluster.local import MOTO_REGION, create_bucket, s3_environment
from pipelines.config import TrainConfig
from pipelines.train.feed import CachedFeed, StreamedFeed, open_feed

CPU = torch.device("cpu")
# One pytest-xdist worker runs them all: its tests share one prepared dataset (module fixture).
pytestmark = pytest.mark.xdist_group("feed")


@pytest.fixture(scope="module")
def digits(ray_session, tmp_path_factory) -> Manifest:
    """Digits in five train shards."""
    manifest, _ = prepare(DataConfig(num_shards=5), str(tmp_path_factory.mktemp("store")))
    assert len(manifest.splits["train"].shards) == 5
    return manifest


def batches(feed, steps: int = 12, ranks: tuple[int, ...] = (0, 1)) -> list[dict[str, torch.Tensor]]:
    """Steps of two workers x batch 50 over the feed, the `ranks`' batches in turn."""
    out, per_step, cursor = [], 100, Cursor()
    for _ in range(steps):
        cursor = step_start(cursor, per_step, feed.order.total)
        for rank in ranks:
            for positions in rank_batches(cursor, rank, 2, 50, 1):
                out.append(feed.columns(feed.order.rows(cursor.epoch, positions)))
        cursor = Cursor(cursor.epoch, cursor.position + per_step)
    return out


def test_the_streamed_feed_gives_the_cached_feeds_batches(digits):
    train = TrainConfig(shuffle_window=300, device_cache_mb=0, seed=4)
    streamed = open_feed(digits, "train", train, CPU)
    cached = open_feed(digits, "train", train.model_copy(update={"device_cache_mb": 1024}), CPU)
    assert isinstance(streamed, StreamedFeed) and isinstance(cached, CachedFeed)
    for a, b in zip(batches(streamed), batches(cached), strict=True):
        assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
    assert streamed.reader.max_shards < 5 + 3  # bounded by the window, not the split


def test_with_lanes_a_rank_streams_its_own_shards_and_the_cached_feeds_batches(digits):
    """Two workers over 2 lanes: each rank's batches are the cached feed's, and over 12 steps (most
    of an epoch) each rank fetches about half of the split's bytes, not all of them."""
    train = TrainConfig(shuffle_window=300, device_cache_mb=0, seed=4)
    cached = open_feed(digits, "train", train.model_copy(update={"device_cache_mb": 1024}), CPU, lanes=2, world=2)
    split_bytes = sum(shard.bytes for shard in digits.splits["train"].shards)
    fetched = 0
    for rank in range(2):
        streamed = open_feed(digits, "train", train, CPU, lanes=2, world=2)
        for a, b in zip(batches(streamed, ranks=(rank,)), batches(cached, ranks=(rank,)), strict=True):
            assert torch.equal(a["image"], b["image"]) and torch.equal(a["label"], b["label"])
        assert streamed.reader.fetched_bytes < 0.8 * split_bytes
        fetched += streamed.reader.fetched_bytes
    assert fetched < 1.45 * split_bytes  # shared: the one shard where the two lanes meet


def test_the_prefetching_thread_hands_over_items_and_errors():
    feed = StreamedFeed.__new__(StreamedFeed)
    assert list(feed.prefetched(iter(range(7)))) == list(range(7))

    def failing():
        yield 1
        raise DataError("shard-00003.parquet: missing")

    items = feed.prefetched(failing())
    assert next(items) == 1
    with pytest.raises(DataError, match="shard-00003"):
        next(items)


def test_a_damaged_shard_stops_the_read_naming_it_and_reads_again_once_repaired(digits):
    feed = open_feed(digits, "train", TrainConfig(device_cache_mb=0), CPU)
    shard = digits.shard_uris("train")[2]
    with open(shard, "rb") as handle:
        original = handle.read()
    damaged = bytearray(original)
    damaged[len(damaged) // 2] ^= 0xFF  # same size: only the checksum can tell
    with open(shard, "wb") as handle:
        handle.write(bytes(damaged))
    try:
        with pytest.raises(DataError, match=rf"{shard}: checksum mismatch"):
            batches(feed, steps=15)
        with pytest.raises(DataError, match=rf"{shard}: checksum mismatch"):
            open_feed(digits, "train", TrainConfig(), CPU)  # the cached path checks it too
    finally:
        with open(shard, "wb") as handle:
            handle.write(original)
    assert len(batches(open_feed(digits, "train", TrainConfig(device_cache_mb=0), CPU), steps=15)) == 30


def test_a_missing_shard_is_named(digits, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(digits.uri, copy)
    moved = digits.model_copy(update={"uri": str(copy)})
    missing = moved.shard_uris("train")[0]
    (tmp_path / "copy" / digits.splits["train"].shards[0].path).unlink()
    with pytest.raises(DataError, match=rf"{missing}: shard listed in the manifest is missing"):
        open_feed(moved, "train", TrainConfig(), CPU)


@pytest.mark.slow
def test_shards_stream_from_s3_once_per_node(digits, moto_server, monkeypatch, tmp_path):
    """Two workers of a node stream a dataset on S3 through the node's cache: the batches are
    the local dataset's, and each shard came from S3 once for the two of them."""
    for name, value in s3_environment(moto_server).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", MOTO_REGION)
    s3fs.S3FileSystem.clear_instance_cache()
    bucket = create_bucket(s3_environment(moto_server), "streaming")
    remote = f"s3://{bucket}/datasets/{digits.fingerprint}"
    s3fs.S3FileSystem().put(digits.uri.rstrip("/") + "/", remote + "/", recursive=True)
    on_s3 = load_verified(remote)  # the folder, copied: one listing finds every shard at its size
    assert on_s3.splits == digits.splits and on_s3.uri == remote
    train = TrainConfig(shuffle_window=300, device_cache_mb=0, cache_dir=str(tmp_path / "node-cache"))
    local = open_feed(digits, "train", train, CPU)
    assert local.reader.cache is None  # a local folder is read in place
    ranks = [open_feed(on_s3, "train", train, CPU) for _ in range(2)]
    for a, b in zip(batches(ranks[0]), batches(local), strict=True):
        assert torch.equal(a["image"], b["image"])
    for a, b in zip(batches(ranks[1]), batches(local), strict=True):  # the other worker: from the node's copies
        assert torch.equal(a["image"], b["image"])
    read = {shard.sha256: shard.bytes for shard in on_s3.splits["train"].shards}
    assert ranks[0].reader.cache.fetched_bytes == sum(read.values())  # 12 steps read every shard
    assert ranks[1].reader.cache.fetched_bytes == 0
    assert ranks[0].reader.cache.held_bytes() == sum(read.values())
    s3fs.S3FileSystem.clear_instance_cache()


MEASURE = """
import json, resource, sys
sys.path.insert(0, {repo!r})
import numpy as np, torch
from data_prep.manifest import Manifest, load_verified
from data_prep.sample_order import Cursor, rank_batches, step_start
from pipelines.config import TrainConfig
from pipelines.train.feed import open_feed
manifest = Manifest.model_validate_json(open({manifest!r}).read())
feed = open_feed(manifest, "train", TrainConfig(shuffle_window=1024, device_cache_mb=0), torch.device("cpu"))
def plan():
    cursor = Cursor()
    while cursor.epoch == 0:
        yield [feed.columns(feed.order.rows(0, p)) for p in rank_batches(cursor, 0, 1, 64, 1)]
        cursor = step_start(Cursor(0, cursor.position + 64), 64, feed.order.total)
total = sum(int(b[0]["tokens"].sum() % 7) for b in feed.prefetched(plan()))
print(json.dumps({{"peak_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, "streamed": not feed.cached}}))
"""


def token_dataset(folder, shards: int, rows_per_shard: int = 4096) -> str:
    """A text dataset of `shards` shards of random 257-token blocks (4 MB each decoded), written
    with pyarrow and described by a manifest, as prepare would."""
    import hashlib

    import pyarrow as pa
    import pyarrow.parquet as pq

    from data_prep.manifest import Shard, Split, TextInfo

    rng = np.random.default_rng(0)
    folder.mkdir()
    listed = []
    for index in range(shards):
        blocks = rng.integers(0, 257, (rows_per_shard, 257), dtype=np.int32)
        path = folder / f"shard-{index:05d}.parquet"
        pq.write_table(pa.table({"tokens": pa.array([b.tobytes() for b in blocks], pa.binary())}), path)
        data = path.read_bytes()
        listed.append(
            Shard(path=path.name, rows=rows_per_shard, bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
        )
    rows = shards * rows_per_shard
    counts = {"train": rows * 257, "val": 0}
    text = TextInfo(
        seq_len=256,
        vocab_size=257,
        eot_id=256,
        tokenizer="t.json",
        tokenizer_sha256="",
        documents={"train": 1, "val": 0},
        tokens=counts,
        utf8_bytes=counts,
        tokens_in_blocks=counts,
    )
    manifest = Manifest(
        fingerprint="m",
        uri=str(folder),
        code_version="2",
        created_at="",
        modality="text",
        text=text,
        schema_={},
        splits={"train": Split(rows=rows, shards=listed)},
        rejects={},
        source={},
        prep_config={},
    )
    (folder / "manifest.json").write_text(manifest.model_dump_json())
    return str(folder / "manifest.json")


@pytest.mark.slow
def test_a_workers_memory_does_not_grow_with_the_data(tmp_path):
    """An epoch streamed over 4 and over 32 shards (16 MB and 128 MB of tokens): the peak memory
    of the process differs by a small part of the 112 MB the data grew by."""
    peaks = []
    for shards in (4, 32):
        script = MEASURE.format(repo=str(REPO), manifest=token_dataset(tmp_path / f"x{shards}", shards))
        out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        assert result["streamed"]
        peaks.append(result["peak_kb"] / 1024)
    growth = 28 * 4096 * 257 * 4 / 2**20
    assert peaks[1] - peaks[0] < 0.15 * growth, f"peak {peaks[0]:.0f} MB -> {peaks[1]:.0f} MB"
