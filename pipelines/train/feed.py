"""The train split as one process consumes it: each step's micro-batches, on the device, in the
seeded order of data_prep.sample_order.

A split that fits `train.device_cache_mb` decoded is read once and kept on the device (the
datasets of the small presets: re-reading them would cost more than the epoch). A larger one is
streamed: the shards under the current shuffle window are fetched, checked and decoded, and the
next steps' batches are prepared by a background thread while the current one trains. Both
paths give the same batches for the same cursor.

Hand-written instead of Ray Data's `streaming_split`: that hands blocks to whichever worker asks
first, so its order cannot be reproduced and a position inside an epoch cannot be saved or
moved to a different number of workers.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from data_prep.manifest import Manifest
from data_prep.modalities.registry import modality_of
from data_prep.readers import ShardReader, read_split
from data_prep.sample_order import SampleOrder, lanes_read
from pipelines.config import TrainConfig
from storage.node_cache import NodeCache

log = logging.getLogger("genpipe.train")


def shard_rows(manifest: Manifest, split: str) -> tuple[int, ...]:
    return tuple(shard.rows for shard in manifest.splits[split].shards)


class Feed:
    """Rows by id, as tensors on the device."""

    cached: bool = False

    def __init__(self, shard_rows: tuple[int, ...], train: TrainConfig, device: torch.device, lanes: int = 1):
        self.order = SampleOrder(shard_rows, train.seed, train.shuffle_window, lanes)
        self.device = device

    def columns(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def prefetched(self, plan: Iterator[Any]) -> Iterator[Any]:
        """`plan`'s items, each a step's batches; a streamed feed prepares them ahead."""
        return plan


class CachedFeed(Feed):
    """The whole split on the device, read once (`columns` in the shards' order)."""

    cached = True

    def __init__(
        self,
        columns: dict[str, torch.Tensor],
        shard_rows: tuple[int, ...],
        train: TrainConfig,
        device: torch.device,
        lanes: int = 1,
    ):
        super().__init__(shard_rows, train, device, lanes)
        self.split = {name: values.to(device) for name, values in columns.items()}

    def columns(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        index = torch.from_numpy(rows).to(self.device)
        return {name: values[index] for name, values in self.split.items()}


class StreamedFeed(Feed):
    """The shards under the current windows of this rank's lanes, fetched when first needed;
    batches prepared ahead."""

    depth = 2  # steps prepared ahead of the one training

    def __init__(
        self, manifest: Manifest, split: str, train: TrainConfig, device: torch.device, lanes: int = 1, world: int = 1
    ):
        super().__init__(shard_rows(manifest, split), train, device, lanes)
        # A step may straddle two windows of each lane it reads.
        held = 2 * self.order.shards_per_lane_window() * lanes_read(self.order.parts, world)
        cache = NodeCache.for_dataset(manifest.uri, train.cache_dir, train.cache_limit_mb)
        self.reader = ShardReader(manifest, split, max_shards=held, cache=cache)

    def columns(self, rows: np.ndarray) -> dict[str, torch.Tensor]:
        pinned = self.device.type == "cuda"
        out = {}
        for name, values in self.reader.read(rows).items():
            tensor = torch.from_numpy(values)
            out[name] = (tensor.pin_memory() if pinned else tensor).to(self.device, non_blocking=pinned)
        return out

    def prefetched(self, plan: Iterator[Any]) -> Iterator[Any]:
        return _ahead(plan, self.depth)


def _ahead(items: Iterator[Any], depth: int) -> Iterator[Any]:
    """`items`, produced by a background thread up to `depth` ahead; its errors are raised here."""
    ready: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for item in items:
                while not stop.is_set():
                    try:
                        ready.put((item, None), timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            ready.put((done, None))
        except BaseException as exc:  # handed to the consumer, which raises it
            ready.put((done, exc))

    thread = threading.Thread(target=produce, name="genpipe-prefetch", daemon=True)
    thread.start()
    try:
        while True:
            item, error = ready.get()
            if error is not None:
                raise error
            if item is done:
                return
            yield item
    finally:
        stop.set()


def open_feed(
    manifest: Manifest,
    split: str,
    train: TrainConfig,
    device: torch.device,
    lanes: int = 1,
    world: int = 1,
    announce: bool = True,
) -> Feed:
    """Cache the split on the device when it fits `train.device_cache_mb`, otherwise stream this
    rank's lanes of it (of `lanes`, read by a group of `world`); the choice and its reason go to
    the log (at INFO when `announce`: rank 0 of a group)."""
    size_mb = modality_of(manifest).decoded_mb(manifest, split)
    shards = len(manifest.splits[split].shards)
    feed: Feed
    if size_mb <= train.device_cache_mb:
        columns = {name: torch.from_numpy(values) for name, values in read_split(manifest, split).items()}
        feed = CachedFeed(columns, shard_rows(manifest, split), train, device, lanes)
        how = f"kept on the {device.type}"
    else:
        feed = StreamedFeed(manifest, split, train, device, lanes, world)
        parts = feed.order.parts  # the lanes asked for, at most one per sample
        read, held = lanes_read(parts, world), min(feed.reader.max_shards, shards)
        how = (
            f"streamed from {shards} shards, each worker reading {read} of {parts} lanes "
            f"(holding up to {held} shards, ~{held * size_mb / max(1, shards):.0f} MB)"
        )
        if feed.reader.cache is not None:
            how += f"; each shard fetched once per node into {feed.reader.cache.folder}"
        if read * world > parts:
            how += f"; {world} workers do not divide {parts} lanes: the same order, more shards read per worker"
    log.log(
        logging.INFO if announce else logging.DEBUG,
        "[train] %s split: %.1f MB decoded, %s (device_cache_mb %g)",
        split,
        size_mb,
        how,
        train.device_cache_mb,
    )
    return feed
