"""The node's shard cache: each file fetched once per node however many processes ask for it,
kept under its size limit (least recently used out first), never kept when its fetch fails."""

from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter

import pytest

from storage.node_cache import NodeCache


def named(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def test_the_ranks_of_a_node_fetch_each_file_once(tmp_path):
    files = {named(bytes([i]) * 1000): bytes([i]) * 1000 for i in range(6)}
    fetches: Counter = Counter()

    def fetcher(key: str):
        def fetch() -> bytes:
            fetches[key] += 1
            time.sleep(0.05)  # long enough for the other ranks to ask meanwhile
            return files[key]

        return fetch

    ranks = [NodeCache(tmp_path / "cache", limit_mb=1) for _ in range(4)]  # four processes' views of one folder
    results: list[bool] = []

    def rank(cache: NodeCache) -> None:
        results.extend(cache.get(key, fetcher(key)) == data for key, data in files.items())

    threads = [threading.Thread(target=rank, args=(cache,)) for cache in ranks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 24 and all(results)
    assert set(fetches.values()) == {1}, fetches  # once per node
    assert sum(cache.fetched_bytes for cache in ranks) == 6000


def test_the_least_recently_used_go_first_under_the_limit(tmp_path):
    cache = NodeCache(tmp_path, limit_mb=2500 / 2**20)  # room for two files of 1000 bytes
    files = [bytes([i]) * 1000 for i in range(4)]
    for data in files[:2]:
        cache.get(named(data), lambda data=data: data)
    time.sleep(0.01)
    cache.get(named(files[0]), pytest.fail)  # used again: the first is now the more recent
    time.sleep(0.01)
    cache.get(named(files[2]), lambda: files[2])
    assert cache.held_bytes() == 2000
    assert cache.get(named(files[0]), pytest.fail) == files[0]  # kept
    assert cache.get(named(files[1]), lambda: files[1]) == files[1]  # evicted: fetched again
    assert cache.fetched_bytes == 4000


def test_a_failed_fetch_leaves_no_copy(tmp_path):
    cache = NodeCache(tmp_path, limit_mb=1)

    def damaged() -> bytes:
        raise ValueError("checksum mismatch")

    with pytest.raises(ValueError, match="checksum mismatch"):
        cache.get(named(b"x"), damaged)
    assert cache.held_bytes() == 0
    assert cache.get(named(b"x"), lambda: b"x") == b"x"


def test_only_object_store_datasets_are_cached():
    assert NodeCache.for_dataset("/data/datasets/abc", None, 100) is None
    assert NodeCache.for_dataset("file:///data/abc", None, 100) is None
    assert NodeCache.for_dataset("s3://bucket/abc", None, 0) is None
    assert NodeCache.for_dataset("s3://bucket/abc", None, 100) is not None
