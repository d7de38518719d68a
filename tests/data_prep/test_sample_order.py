"""The epoch order of a split's samples: a permutation per epoch that a seed fixes and the worker
count does not, so a run resumed on more or fewer workers neither repeats nor skips a sample."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from data_prep.sample_order import Cursor, SampleOrder, rank_batches, step_start

SHARDS = (40, 37, 40, 11)  # 128 rows


def order(seed: int = 0, window: int = 25) -> SampleOrder:
    return SampleOrder(SHARDS, seed, window)


def test_every_epoch_is_a_permutation_that_the_seed_fixes():
    a, b = order(), order()
    epochs = [a.rows(epoch, np.arange(a.total)) for epoch in range(3)]
    for rows in epochs:
        assert sorted(rows) == list(range(128))
    assert not np.array_equal(epochs[0], epochs[1])
    assert np.array_equal(epochs[2], b.rows(2, np.arange(b.total)))
    assert not np.array_equal(epochs[0], order(seed=1).rows(0, np.arange(128)))


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


@pytest.mark.parametrize(("before", "after"), [(2, 3), (4, 1), (3, 2)])
def test_resuming_on_a_different_worker_count_neither_repeats_nor_skips(before, after):
    o, micro = order(), 4
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
