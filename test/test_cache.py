"""The window cache: blocks and states by window, each within its byte budget, least recently used first."""
import numpy as np
import torch

from sa_convonet_ros.cache import WindowCache
from sa_convonet_ros.optimize import WindowState

from helpers import cached_bytes


def block(value: float) -> np.ndarray:
    return np.full((10, 10, 10), value, dtype=np.float32)  # 4,000 bytes


def test_blocks_stay_within_their_byte_budget_least_recently_used_first():
    cache = WindowCache(max_block_bytes=12_000)
    for i in range(3):
        cache.put((i, 0, 0), f"points {i}", block(i))
    assert len(cache) == 3 and cached_bytes(cache)[0] == 12_000
    assert cache.get((0, 0, 0), "points 0") is not None  # read: now the most recently used
    cache.put((3, 0, 0), "points 3", block(3))
    assert cache.get((1, 0, 0), "points 1") is None  # the least recently used went
    assert [cache.get((i, 0, 0), f"points {i}")[0, 0, 0] for i in (0, 2, 3)] == [0, 2, 3]
    assert len(cache) == 3 and cached_bytes(cache)[0] == 12_000


def test_a_restored_block_counts_once_and_a_stale_fingerprint_misses():
    cache = WindowCache(max_block_bytes=8_000)
    cache.put((0, 0, 0), "old points", block(0))
    cache.put((0, 0, 0), "new points", block(1))
    cache.put((1, 0, 0), "points", block(2))
    assert cached_bytes(cache)[0] == 8_000 and len(cache) == 2
    assert cache.get((0, 0, 0), "old points") is None
    assert cache.get((0, 0, 0), "new points")[0, 0, 0] == 1


def test_a_block_larger_than_the_budget_is_not_kept():
    cache = WindowCache(max_block_bytes=1_000)
    cache.put((0, 0, 0), "points", block(0))
    assert len(cache) == 0 and cached_bytes(cache)[0] == 0


def test_blocks_and_states_have_separate_budgets():
    cache = WindowCache(max_state_bytes=2_000, max_block_bytes=4_000)
    state = WindowState({"w": torch.zeros(250)})  # 1,000 bytes
    cache.put((0, 0, 0), "points", block(0))
    for i in range(3):
        cache.put_state((i, 0, 0), "settings", state)
    assert cached_bytes(cache) == (4_000, 2_000)
    assert cache.get((0, 0, 0), "points") is not None and cache.get_state((0, 0, 0), "settings") is None


def test_cached_states_stay_within_their_memory_budget():
    from sa_convonet_ros.optimize import WindowState

    state = WindowState({"w": torch.zeros(250)}, torch.zeros(500, dtype=torch.float16))  # 2,000 bytes
    cache = WindowCache(max_state_bytes=5_000)
    for i in range(4):
        cache.put_state((i, 0, 0), "settings", state)
    # the two oldest states made room for the newer ones; a re-stored key counts once
    assert cache.get_state((0, 0, 0), "settings") is None and cache.get_state((1, 0, 0), "settings") is None
    assert cache.get_state((3, 0, 0), "settings") is state
    cache.put_state((3, 0, 0), "settings", state)
    assert cache.get_state((2, 0, 0), "settings") is state
