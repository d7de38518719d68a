"""Which row of a split is the n-th sample of an epoch: a seeded order that does not depend on
how many workers read it, so a run resumed on another number of workers neither repeats nor
skips a sample of the epoch it was in, and in which each worker reads only its own shards.

An epoch's *stream* is the split's shards in a seeded order, read one after another. The stream
is cut into `lanes` contiguous parts of (nearly) equal length (MosaicML streaming's "canonical
nodes"), and the epoch's n-th sample is the (n // lanes)-th sample of lane n % lanes, each lane's
rows shuffled inside consecutive windows (its "shuffle block"). A step's positions are dealt to
the ranks by position modulo the world size (`rank_batches`), so a rank reads the lanes of one
residue only: when the world size divides the lane count, a rank's lanes are its alone, and
`lane_slots` lays them next to each other in the stream, so a rank's shards are its own but for
the one or two it shares with a neighbour. When it does not divide, the order is the same
(positions, not ranks, fix it); a rank then reads more lanes' shards.

Lanes are fixed when a run starts and kept by its checkpoints; `lanes=1` is the order of the
code version before lanes (one stream, windows of `window` samples).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Cursor:
    """Where a run is in its data: the epoch and how many of the epoch's samples it has used."""

    epoch: int = 0
    position: int = 0


def step_start(cursor: Cursor, per_step: int, total: int) -> Cursor:
    """Where a step of `per_step` samples starts: the next epoch when too few are left."""
    return cursor if cursor.position + per_step <= total else Cursor(cursor.epoch + 1, 0)


def rank_batches(start: Cursor, rank: int, world: int, micro: int, accum: int) -> list[np.ndarray]:
    """The positions of rank `rank`'s `accum` micro-batches in the step that starts at `start`:
    every `world`-th of the step's world x micro x accum positions, from `start + rank` on."""
    positions = start.position + rank + world * np.arange(micro * accum, dtype=np.int64)
    return [positions[a * micro : (a + 1) * micro] for a in range(accum)]


def lane_slots(lanes: int) -> np.ndarray:
    """`slots[l]`: the place of lane l's part in the stream. The digits of l in the mixed radix of
    the lane count's prime factors (smallest first), reversed: for a world size that is a product
    of the smallest factors (every power of two, when the lane count is one), the lanes of one
    rank (l = rank mod world) take consecutive places."""
    factors, rest, p = [], lanes, 2
    while rest > 1:
        while rest % p == 0:
            factors.append(p)
            rest //= p
        p += 1
    digits_left, slots, weight = np.arange(lanes), np.zeros(lanes, dtype=np.int64), lanes
    for radix in factors:
        weight //= radix
        slots += (digits_left % radix) * weight
        digits_left //= radix
    return slots


def lanes_read(lanes: int, world: int) -> int:
    """How many lanes one rank of `world` reads (all of one residue modulo gcd(lanes, world))."""
    return lanes // math.gcd(lanes, world)


def _seed(*parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([abs(int(part)) for part in parts]))


@dataclass
class SampleOrder:
    shard_rows: tuple[int, ...]  # rows of each shard, in the manifest's order
    seed: int
    window: int  # samples shuffled together, over all lanes: each lane shuffles window // lanes
    lanes: int = 1
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError(f"shuffle window: must be positive, not {self.window}")
        if self.lanes <= 0:
            raise ValueError(f"lanes: must be positive, not {self.lanes}")
        self.first_row = np.concatenate([[0], np.cumsum(self.shard_rows)]).astype(np.int64)
        self.parts = max(1, min(self.lanes, self.total))  # a lane holds at least one sample
        self.lane_window = max(1, self.window // self.parts)
        short, longer = divmod(self.total, self.parts)
        self.lane_length = short + (np.arange(self.parts) < longer)
        slots = lane_slots(self.parts)
        by_slot = np.argsort(slots)
        starts_by_slot = np.concatenate([[0], np.cumsum(self.lane_length[by_slot])[:-1]])
        self.lane_start = starts_by_slot[slots]

    @property
    def total(self) -> int:
        return int(self.first_row[-1])

    def shard_sequence(self, epoch: int) -> np.ndarray:
        """The shards' reading order in `epoch`."""
        return self._memo(("shards", epoch), lambda: _seed(self.seed, epoch, 1).permutation(len(self.shard_rows)))

    def _windows(self, epoch: int, index: int) -> np.ndarray:
        """(lanes, lane_window): each lane's shuffle of its window `index` (-1 past a lane's end).
        All lanes are at the same window of theirs at any position, so one array serves a step."""

        def make() -> np.ndarray:
            table = np.full((self.parts, self.lane_window), -1, dtype=np.int64)
            for lane in range(self.parts):
                size = int(min(self.lane_window, self.lane_length[lane] - index * self.lane_window))
                if size > 0:
                    parts = (self.seed, epoch, 2, index) if self.parts == 1 else (self.seed, epoch, 2, index, lane)
                    table[lane, :size] = _seed(*parts).permutation(size)
            return table

        return self._memo(("window", epoch, index), make)

    def _memo(self, key: tuple, make) -> np.ndarray:
        if key not in self._cache:
            self._cache[key] = make()
            while len(self._cache) > 8:  # a step touches at most two windows of one epoch
                self._cache.popitem(last=False)
        self._cache.move_to_end(key)
        return self._cache[key]

    def rows(self, epoch: int, positions: np.ndarray) -> np.ndarray:
        """The split-wide row ids (the sample ids) at `positions` of `epoch`."""
        positions = np.asarray(positions, dtype=np.int64)
        if len(positions) and (positions.min() < 0 or positions.max() >= self.total):
            raise IndexError(f"positions outside the epoch's {self.total} samples")
        lane, in_lane = positions % self.parts, positions // self.parts
        windows = in_lane // self.lane_window
        read_at = np.empty_like(positions)  # where in the lane's part of the stream
        for index in np.unique(windows):  # one, or two where a step crosses into the next windows
            chosen = windows == index
            start = int(index) * self.lane_window
            read_at[chosen] = start + self._windows(epoch, int(index))[lane[chosen], in_lane[chosen] - start]
        in_stream = self.lane_start[lane] + read_at
        sequence = self.shard_sequence(epoch)
        stream_start = np.concatenate([[0], np.cumsum(np.asarray(self.shard_rows)[sequence])])
        slot = np.searchsorted(stream_start, in_stream, side="right") - 1
        return self.first_row[sequence[slot]] + (in_stream - stream_start[slot])

    def window_of(self, position: int) -> tuple[int, int]:
        """The [start, stop) positions whose samples are in the lanes' windows that hold `position`
        (every lane's window of the same index)."""
        span = self.lane_window * self.parts
        start = position // span * span
        return start, min(start + span, self.total)

    def rank_draws(self, start: Cursor, rank: int, world: int, rng: np.random.Generator, n: int) -> np.ndarray:
        """`n` seeded positions of the current windows (of the step at `start`) that rank `rank`
        reads, those of its residue (its lanes); any of the windows' when they hold none of them."""
        low, high = self.window_of(start.position)
        first = low + (start.position + rank - low) % world
        count = (high - first + world - 1) // world
        if count <= 0:
            return rng.integers(low, high, n)
        return first + world * rng.integers(0, count, n)

    def shards_per_lane_window(self) -> int:
        """The most shards a lane's window can touch: what a reader holds per lane it reads."""
        return math.ceil(self.lane_window / max(1, min(self.shard_rows))) + 1
