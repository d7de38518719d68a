"""The epoch order of a split's samples: a permutation per epoch that a seed fixes and the worker
count does not, so a run resumed on more or fewer workers neither repeats nor skips a sample; with
lanes, each worker reads only its own shards."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from data_prep.sample_order import Cursor, SampleOrder, lane_slots, rank_batches, step_start

SHARDS = (40, 37, 40, 11)  # 128 rows


def order(seed: int = 0, window: int = 25, lanes: int = 1) -> SampleOrder:
    return SampleOrder(SHARDS, seed, window, lanes)


@pytest.mark.parametrize("lanes", [1, 8, 12, 500])
def test_every_epoch_is_a_permutation_that_the_seed_fixes(lanes):
    a, b = order(lanes=lanes), order(lanes=lanes)
    epochs = [a.rows(epoch, np.arange(a.total)) for epoch in range(3)]
    for rows in epochs:
        assert sorted(rows) == list(range(128))
    assert not np.array_equal(epochs[0], epochs[1])
    assert np.array_equal(epochs[2], b.rows(2, np.arange(b.total)))
    assert not np.array_equal(epochs[0], order(seed=1, lanes=lanes).rows(0, np.arange(128)))


def test_the_shuffle_stays_inside_a_window_of_the_shard_order():
    """A reader needs only the shards under the current window."""
    o = order(window=25)
    shards_in_order = o.shard_sequence(0)
    stream = np.concatenate([np.arange(o.first_row[s], o.first_row[s + 1]) for s in shards_in_order])
    rows = o.rows(0, np.arange(o.total))
    for start in range(0, o.total, 25):
        assert sorted(rows[start : start + 25]) == sorted(stream[start : start + 25])
    assert not np.array_equal(rows, stream)


def consume(o: SampleOrder, cursor: Cursor, world: int, micro: int, steps: int) -> tuple[Counter, Cursor]:
    seen: Counter = Counter()
    for _ in range(steps):
        cursor = step_start(cursor, world * micro, o.total)
        for rank in range(world):
            for positions in rank_batches(cursor, rank, world, micro, accum=1):
                seen.update(o.rows(cursor.epoch, positions).tolist())
        cursor = Cursor(cursor.epoch, cursor.position + world * micro)
    return seen, cursor


@pytest.mark.parametrize("lanes", [1, 8])
@pytest.mark.parametrize(("before", "after"), [(2, 3), (4, 1), (3, 2), (1, 8)])
def test_resuming_on_a_different_worker_count_neither_repeats_nor_skips(before, after, lanes):
    o, micro = order(lanes=lanes), 4
    seen, cursor = consume(o, Cursor(), before, micro, steps=5)  # interrupted mid-epoch
    rest, _ = consume(o, cursor, after, micro, steps=(o.total - cursor.position) // (after * micro))
    both = seen + rest
    assert max(both.values()) == 1, "a sample was seen twice in one epoch"
    # What is left unread is less than one step of the new world, and it is the epoch's tail.
    unread = set(range(o.total)) - set(both)
    assert len(unread) < after * micro
    tail = set(o.rows(0, np.arange(o.total - len(unread), o.total)).tolist())
    assert unread == tail


def test_a_step_that_does_not_fit_the_epoch_starts_the_next():
    assert step_start(Cursor(0, 120), 8, 128) == Cursor(0, 120)
    assert step_start(Cursor(0, 121), 8, 128) == Cursor(1, 0)


def test_positions_outside_the_epoch_are_refused():
    with pytest.raises(IndexError):
        order().rows(0, np.array([128]))


def test_a_lane_is_a_contiguous_part_of_the_stream_shuffled_in_its_windows():
    o = SampleOrder(SHARDS, seed=0, window=16, lanes=4)  # 4 lanes of 32 rows, windows of 4
    stream = np.concatenate([np.arange(o.first_row[s], o.first_row[s + 1]) for s in o.shard_sequence(0)])
    rows = o.rows(0, np.arange(o.total))
    for lane in range(4):
        part = stream[o.lane_start[lane] : o.lane_start[lane] + 32]
        mine = rows[lane::4]  # the epoch's positions of this lane
        assert sorted(mine) == sorted(part)
        for start in range(0, 32, 4):
            assert sorted(mine[start : start + 4]) == sorted(part[start : start + 4])


@pytest.mark.parametrize(("lanes", "worlds"), [(8, [1, 2, 4, 8]), (24, [2, 4, 8, 24]), (12, [2, 4])])
def test_a_ranks_lanes_lie_next_to_each_other_in_the_stream(lanes, worlds):
    slots = lane_slots(lanes)
    assert sorted(slots) == list(range(lanes))
    for world in worlds:
        for rank in range(world):
            mine = np.sort(slots[rank::world])
            assert np.array_equal(mine, np.arange(mine[0], mine[0] + lanes // world)), (world, rank)


def shards_each_rank_reads(o: SampleOrder, world: int, micro: int) -> list[set[int]]:
    """The shards each rank of `world` reads over one epoch of steps of world x micro."""
    owner = np.searchsorted(o.first_row, np.arange(o.total), side="right") - 1
    read: list[set[int]] = [set() for _ in range(world)]
    cursor = Cursor()
    while cursor.position + world * micro <= o.total:
        for rank in range(world):
            (positions,) = rank_batches(cursor, rank, world, micro, accum=1)
            read[rank].update(owner[o.rows(0, positions)].tolist())
        cursor = Cursor(0, cursor.position + world * micro)
    return read


@pytest.mark.parametrize("world", [1, 2, 4, 8])
def test_with_lanes_each_rank_reads_only_its_own_shards(world):
    """64 shards: with 8 lanes a rank reads its eighth... of the shards (and at most one shard
    more at each end of its part); with one lane every rank reads nearly every shard."""
    shard_rows = (20,) * 64
    read = shards_each_rank_reads(SampleOrder(shard_rows, seed=1, window=64, lanes=8), world, micro=4)
    assert sum(len(shards) for shards in read) <= 64 + (world - 1)
    assert set().union(*read) == set(range(64))
    if world > 1:
        one_lane = shards_each_rank_reads(SampleOrder(shard_rows, seed=1, window=64, lanes=1), world, micro=4)
        assert sum(len(shards) for shards in one_lane) > 0.9 * 64 * world


def test_a_world_that_does_not_divide_the_lanes_reads_more_in_the_same_order():
    shard_rows = (20,) * 64
    o = SampleOrder(shard_rows, seed=1, window=64, lanes=8)
    read = shards_each_rank_reads(o, world=3, micro=4)
    assert sum(len(shards) for shards in read) > 64 + 2  # each rank reads every lane
    seen, _ = consume(o, Cursor(), 3, 4, steps=o.total // 12)
    assert max(seen.values()) == 1 and len(seen) == o.total // 12 * 12
