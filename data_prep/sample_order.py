"""Which row of a split is the n-th sample of an epoch: a seeded order that does not depend on
how many workers read it, so a run resumed on another number of workers neither repeats nor
skips a sample of the epoch it was in.

An epoch is the split's shards in a seeded order, read one after another, with the rows shuffled
inside consecutive windows of `window` samples (MosaicML streaming's "shard order + shuffle
block" scheme): a reader needs only the shards under the current window, however large the split.
"""

from __future__ import annotations

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
    its own contiguous slice of the step's world x micro x accum positions."""
    first = start.position + rank * micro * accum
    return [np.arange(first + a * micro, first + (a + 1) * micro) for a in range(accum)]


def _seed(*parts: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([abs(int(part)) for part in parts]))


@dataclass
class SampleOrder:
    shard_rows: tuple[int, ...]  # rows of each shard, in the manifest's order
    seed: int
    window: int
    _cache: OrderedDict = field(default_factory=OrderedDict, repr=False)

    def __post_init__(self) -> None:
        if self.window <= 0:
            raise ValueError(f"shuffle window: must be positive, not {self.window}")
        self.first_row = np.concatenate([[0], np.cumsum(self.shard_rows)]).astype(np.int64)

    @property
    def total(self) -> int:
        return int(self.first_row[-1])

    def shard_sequence(self, epoch: int) -> np.ndarray:
        """The shards' reading order in `epoch`."""
        return self._memo(("shards", epoch), lambda: _seed(self.seed, epoch, 1).permutation(len(self.shard_rows)))

    def _window_permutation(self, epoch: int, index: int) -> np.ndarray:
        size = min(self.window, self.total - index * self.window)
        return self._memo(("window", epoch, index), lambda: _seed(self.seed, epoch, 2, index).permutation(size))

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
        read_at = np.empty_like(positions)  # where in the epoch's shard-by-shard stream
        windows = positions // self.window
        for index in np.unique(windows):
            chosen = windows == index
            start = int(index) * self.window
            read_at[chosen] = start + self._window_permutation(epoch, int(index))[positions[chosen] - start]
        sequence = self.shard_sequence(epoch)
        stream_start = np.concatenate([[0], np.cumsum(np.asarray(self.shard_rows)[sequence])])
        slot = np.searchsorted(stream_start, read_at, side="right") - 1
        return self.first_row[sequence[slot]] + (read_at - stream_start[slot])

    def window_of(self, position: int) -> tuple[int, int]:
        """The [start, stop) positions of the window that holds `position`."""
        start = position // self.window * self.window
        return start, min(start + self.window, self.total)
