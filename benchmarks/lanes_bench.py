"""Data lanes (issue 30): what each rank of a group reads per epoch, with lanes and without.

Run: `python benchmarks/lanes_bench.py [--corpus-mb 48] [--shards 256] [--record]`.

A text corpus (Python's standard library, repeated) is prepared into `--shards` train shards of
byte-token blocks. Then, for world sizes 1, 2, 4 and 8, every rank reads one epoch through
genpipe's streamed feed, each with its own reader (as on separate hosts, no cache shared):
- with 64 lanes (a run started on 8 workers: 8 per worker), resumed on each world size;
- with 1 lane: the order of the code version before lanes, where every rank reads the whole
  current window and keeps its slice.
Measured: the bytes of shard files fetched by all ranks over the bytes of the split (the target:
<= 1.05, was `world`), samples/s into the step per rank (no model; the ranks run one after another
on this machine's cores), and the most shards a rank held at once (its memory).
Then the dataset on S3 (moto on 127.0.0.1), 2 nodes x 4 ranks, two epochs, each node its own
cache folder: the bytes each node fetched from S3 with the node cache and without it.

mosaicml-streaming, the anchor of the issue, is not measured: its wheel needs torchvision and
transformers, which pull a CUDA build of torch onto this CPU machine (tried: 2026-12-06).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))
MICRO = 64  # samples per rank per step
WORLDS = (1, 2, 4, 8)
LANES = (1, 64)

from data_bench import write_corpus  # noqa: E402
from quickstart_bench import machine  # noqa: E402
from results_table import append_table  # noqa: E402


def prepare_corpus(work: Path, megabytes: int, shards: int):
    import ray

    from data_prep.config import DataConfig
    from data_prep.prepare import prepare

    write_corpus(work / "corpus", megabytes)
    data = DataConfig.model_validate(
        {
            "source": {"kind": "text_files", "path": f"{work / 'corpus'}/*.txt", "chunk_mb": 0.25},
            "tokenizer": {"kind": "byte"},
            "seq_len": 128,
            "val_fraction": 0.05,
            "num_shards": shards,
        }
    )
    ray.init(num_cpus=os.cpu_count(), logging_level="ERROR", include_dashboard=False)
    try:
        manifest, _ = prepare(data, str(work / "store"))
    finally:
        ray.shutdown()
    return manifest


def one_rank(manifest, lanes: int, rank: int, world: int) -> dict[str, float]:
    """One epoch of rank `rank`'s batches, as the training loop asks for them."""
    from data_prep.sample_order import Cursor, rank_batches, step_start
    from pipelines.config import TrainConfig
    from pipelines.train.feed import open_feed

    train = TrainConfig(device_cache_mb=0, batch_size=MICRO)
    feed = open_feed(manifest, "train", train, torch.device("cpu"), lanes, world, announce=False)
    order, per_step = feed.order, world * MICRO

    def plan():
        cursor = Cursor()
        while cursor.position + per_step <= order.total:
            cursor = step_start(cursor, per_step, order.total)
            (positions,) = rank_batches(cursor, rank, world, MICRO, 1)
            yield feed.columns(order.rows(0, positions))["tokens"]
            cursor = Cursor(0, cursor.position + per_step)

    started, samples, checksum = time.perf_counter(), 0, 0
    for batch in feed.prefetched(plan()):
        checksum += int(batch[:, 0].sum())  # touched, as a step would
        samples += len(batch)
    seconds = time.perf_counter() - started
    return {
        "samples": samples,
        "seconds": seconds,
        "fetched_bytes": feed.reader.fetched_bytes,
        "most_held": feed.reader.most_held,
    }


def measure(manifest) -> list[dict[str, float]]:
    split_bytes = sum(shard.bytes for shard in manifest.splits["train"].shards)
    rows = []
    for lanes in LANES:
        for world in WORLDS:
            ranks = [one_rank(manifest, lanes, rank, world) for rank in range(world)]
            row = {
                "lanes": lanes,
                "world": world,
                "read_over_split": sum(r["fetched_bytes"] for r in ranks) / split_bytes,
                "samples_per_s_per_rank": float(np.mean([r["samples"] / r["seconds"] for r in ranks])),
                "most_shards_held": max(r["most_held"] for r in ranks),
            }
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def node_cache_on_s3(manifest, work: Path, lanes: int = 64, nodes: int = 2, ranks_per_node: int = 4) -> list[dict]:
    """The dataset copied to S3 (moto on 127.0.0.1); `nodes` x `ranks_per_node` ranks read two
    epochs through their node's cache (a folder per node), then without a cache: the bytes each
    node fetched from S3 over the bytes of the split."""
    import s3fs

    from data_prep.manifest import load_verified
    from data_prep.sample_order import Cursor, rank_batches, step_start
    from pipelines.cluster.local import MOTO_REGION, create_bucket, s3_environment, start_moto
    from pipelines.config import TrainConfig
    from pipelines.train.feed import open_feed

    moto = start_moto(work / "moto")
    try:
        os.environ.update({**s3_environment(moto), "AWS_DEFAULT_REGION": MOTO_REGION})
        bucket = create_bucket(s3_environment(moto), "lanes")
        remote = f"s3://{bucket}/datasets/{manifest.fingerprint}"
        s3fs.S3FileSystem().put(manifest.uri.rstrip("/") + "/", remote + "/", recursive=True)
        on_s3, world = load_verified(remote), nodes * ranks_per_node
        split_bytes = sum(shard.bytes for shard in on_s3.splits["train"].shards)
        rows = []
        for limit_mb in (16384, 0):
            fetched = [0] * nodes
            for node in range(nodes):
                train = TrainConfig(
                    device_cache_mb=0, cache_limit_mb=limit_mb, cache_dir=str(work / f"node{node}-{limit_mb}")
                )
                for rank in range(node * ranks_per_node, (node + 1) * ranks_per_node):
                    feed = open_feed(on_s3, "train", train, torch.device("cpu"), lanes, world, announce=False)
                    cursor, per_step = Cursor(), world * MICRO
                    while cursor.epoch < 2:
                        cursor = step_start(cursor, per_step, feed.order.total)
                        if cursor.epoch >= 2:
                            break
                        (positions,) = rank_batches(cursor, rank, world, MICRO, 1)
                        feed.columns(feed.order.rows(cursor.epoch, positions))
                        cursor = Cursor(cursor.epoch, cursor.position + per_step)
                    cache = feed.reader.cache
                    fetched[node] += cache.fetched_bytes if cache else feed.reader.fetched_bytes
            row = {"cache_limit_mb": limit_mb, "per_node_fetched_over_split": [f / split_bytes for f in fetched]}
            rows.append(row)
            print(json.dumps(row), flush=True)
        return rows
    finally:
        moto.stop(timeout=10)


def _cache_label(limit_mb: float) -> str:
    return f"{limit_mb:.0f} MB" if limit_mb else "none"


def record(manifest, rows: list[dict[str, float]], cached: list[dict]) -> None:
    split = manifest.splits["train"]
    mb = sum(shard.bytes for shard in split.shards) / 1e6
    append_table(
        "Data lanes (issue 30)",
        [
            f"`benchmarks/lanes_bench.py`: {split.rows:,} byte-token blocks of 129 in {len(split.shards)} shards "
            f"({mb:.0f} MB); one epoch per rank, {MICRO} samples per rank per step, each rank its own reader."
        ],
        ["lanes", "world", "bytes read by all ranks / split", "samples/s per rank", "most shards a rank held"],
        [
            f"| {row['lanes']} | {row['world']} | {row['read_over_split']:.3f} | "
            f"{row['samples_per_s_per_rank']:,.0f} | {row['most_shards_held']} |"
            for row in rows
        ],
    )
    append_table(
        "Data lanes from S3 through the node cache (issue 30)",
        [
            "`benchmarks/lanes_bench.py`, the same shards on S3 (moto on 127.0.0.1), 2 nodes x 4 ranks, 64 lanes, "
            "two epochs, each node its own cache folder: bytes each node fetched from S3 / bytes of the split."
        ],
        ["node cache", "node 1", "node 2"],
        [
            f"| {_cache_label(row['cache_limit_mb'])} | "
            + " | ".join(f"{share:.3f}" for share in row["per_node_fetched_over_split"])
            + " |"
            for row in cached
        ],
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus-mb", type=int, default=48)
    parser.add_argument("--shards", type=int, default=256)
    parser.add_argument("--record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as folder:
        manifest = prepare_corpus(Path(folder), args.corpus_mb, args.shards)
        rows = measure(manifest)
        cached = node_cache_on_s3(manifest, Path(folder))
        if args.record:
            record(manifest, rows, cached)
    print(f"machine: {machine()}")


if __name__ == "__main__":
    main()
