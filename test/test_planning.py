"""Planning the windows into batches: cold, warm from the cache, in whole rounds of the workers, slab by slab."""

import numpy as np

from sa_convonet_ros.cache import WindowCache
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.planning import plan_windows
from sa_convonet_ros.points import prepare_points
from sa_convonet_ros.window_scale import scaled_to_map

from helpers import small_config


def test_plan_without_a_cache_batches_every_window_cold(room_corner):
    config = small_config(iterations=3).updated(optimization={"window_batch": 4})
    plan = plan_windows(room_corner, config, steps=3)
    assert plan.reused == {} and plan.settings_id is None
    assert [batch.number for batch in plan.batches] == list(range(len(plan.batches)))
    assert all(len(batch.windows) <= 4 and batch.steps == 3 and batch.initial is None for batch in plan.batches)
    assert sorted(w for batch in plan.batches for w in batch.windows) == list(range(len(plan.windows)))
    assert plan.windows_run == len(plan.windows) and plan.windows_warm_started == 0
    # as few batches as the batch size allows, of sizes at most one apart (no short last batch)
    sizes = [len(batch.windows) for batch in plan.batches]
    assert len(sizes) == -(-len(plan.windows) // 4) and max(sizes) - min(sizes) <= 1


def test_workers_side_by_side_get_whole_rounds_of_batches(room_corner):
    config = small_config(iterations=3)
    windows = len(plan_windows(room_corner, config, steps=3).windows)
    for workers in (2, 3):
        batch = -(-windows // workers) - 1  # one batch of this size would leave the last round short
        plan = plan_windows(room_corner, config.updated(optimization={"window_batch": batch}), 3, workers=workers)
        sizes = [len(batch.windows) for batch in plan.batches]
        assert len(sizes) % workers == 0 and max(sizes) <= batch and max(sizes) - min(sizes) <= 1
        assert sorted(w for batch in plan.batches for w in batch.windows) == list(range(windows))
    one_each = plan_windows(room_corner, config.updated(optimization={"window_batch": 1}), 3, workers=windows + 1)
    assert [len(batch.windows) for batch in one_each.batches] == [1] * windows  # never an empty batch


def test_plan_with_a_cache_reuses_unchanged_windows_and_warm_starts_changed_ones(tiny_model, room_corner):
    cache = WindowCache()
    config = small_config(iterations=3).updated(optimization={"warm_start_iterations": 2, "window_batch": 4})
    reconstruct(room_corner, config, model=tiny_model, cache=cache)
    extra = room_corner.min(axis=0) + np.random.default_rng(0).uniform(0, 0.1, (200, 3))
    grown = prepare_points(np.vstack([room_corner, extra]), config, known_noise=cache.noise)
    plan = plan_windows(grown.points, scaled_to_map(config, grown.points, grown.noise), 3, cache, tiny_model)
    warm = [batch for batch in plan.batches if batch.initial is not None]
    cold = [batch for batch in plan.batches if batch.initial is None]
    assert plan.reused and warm and len(plan.reused) + plan.windows_run == len(plan.windows)
    assert all(batch.steps == 2 and len(batch.initial) == len(batch.windows) for batch in warm)
    assert all(batch.steps == 3 for batch in cold)
    assert [batch.number for batch in cold + warm] == list(range(len(plan.batches)))
