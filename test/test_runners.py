"""What any runner does with one batch, and the run's bookkeeping (stage clock)."""
import dataclasses
import time

import numpy as np
import pytest
import torch

from sa_convonet_ros import runners as runners_module
from sa_convonet_ros.config import MeshingConfig
from sa_convonet_ros.field import lift_crests
from sa_convonet_ros.optimize import WindowEnsemble
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.planning import plan_windows
from sa_convonet_ros.runners import STAGES, StageClock, evaluate_batch, lift_candidates, optimize_batch
from sa_convonet_ros.windows import WindowGrid

from helpers import small_config


def test_one_batch_alone(tiny_model, room_corner):
    config = small_config(iterations=2)
    plan = plan_windows(room_corner, config, steps=2)
    batch = plan.batches[0]
    ensemble = optimize_batch(batch, tiny_model, plan, room_corner, config.optimization)
    result = evaluate_batch(batch, ensemble, plan, room_corner, config.meshing, keep_states=True)
    cells = plan.grid.cells
    assert len(result.blocks) == len(result.states) == len(batch.windows) and result.steps_run == 2
    assert all(block.shape == (cells, cells, cells) and block.max() > block.min() for block in result.blocks)


def test_a_cpu_decodes_the_field_in_cache_sized_calls_with_the_values_of_one_call(tiny_model, room_corner,
                                                                                  monkeypatch):
    config = small_config(iterations=1)
    plan = plan_windows(room_corner, config, steps=1)
    batch = plan.batches[0]
    ensemble = optimize_batch(batch, tiny_model, plan, room_corner, config.optimization)
    calls = []
    decode_window = WindowEnsemble.decode_window
    monkeypatch.setattr(WindowEnsemble, "decode_window", lambda self, window, queries, features: (
        calls.append(len(queries)), decode_window(self, window, queries, features))[1])
    meshing = config.meshing
    in_chunks = evaluate_batch(batch, ensemble, plan, room_corner, dataclasses.replace(meshing, eval_chunk=0))
    assert max(calls) == runners_module.CPU_EVAL_CHUNK and sum(calls) > 3 * runners_module.CPU_EVAL_CHUNK
    calls.clear()
    at_once = evaluate_batch(batch, ensemble, plan, room_corner, dataclasses.replace(meshing, eval_chunk=10 ** 7))
    assert max(calls) > runners_module.CPU_EVAL_CHUNK
    for chunked, whole in zip(in_chunks.blocks, at_once.blocks):
        np.testing.assert_allclose(chunked, whole, rtol=0, atol=1e-5)


def test_the_loss_draws_from_the_points_near_each_core_only(tiny_model, room_corner):
    """With a loss margin the UCE samples come from the points within it of the core (or within their own band
    of it); the encoder still sees the whole crop."""
    config = small_config(iterations=1).updated(windows={"loss_margin": 0.05})
    plan = plan_windows(room_corner, config, steps=1)
    batch = plan.batches[0]
    ensemble = optimize_batch(batch, tiny_model, plan, room_corner, config.optimization)
    samples, counts = ensemble.batch.loss_points()
    reach = max(0.05, plan.band)
    for slot, w in enumerate(batch.windows):
        unit = samples[slot, :counts[slot]].numpy()
        crop = room_corner[plan.windows.crop_points[w]]
        near = plan.grid.outside_core(plan.grid.to_unit(crop, plan.windows.index[w])) <= reach
        assert len(unit) == np.count_nonzero(near) < len(crop)
        assert plan.grid.outside_core(unit).max() <= reach + 1e-6
        assert int(ensemble.batch.counts[slot]) == min(len(crop), config.optimization.max_points_per_window)


@pytest.mark.parametrize("trim, spacing", [(0.03, 0.0), (0.1, 0.0), (0.03, 1.0)])
def test_the_field_band_around_the_points_keeps_every_face_the_whole_field_gives(tiny_model, room_corner,
                                                                                monkeypatch, trim, spacing):
    """The band follows each point's trim reach where the trim follows the spacing."""
    config = small_config().updated(meshing={"trim_distance": trim, "trim_spacing": spacing})  # a 4 cm grid
    banded = reconstruct(room_corner, config, model=tiny_model).mesh
    monkeypatch.setattr(runners_module, "core_band_mask", lambda grid, window, points, band: np.ones(
        (grid.cells,) * 3, dtype=bool))
    whole = reconstruct(room_corner, config, model=tiny_model).mesh
    assert len(whole.faces) > 1000
    np.testing.assert_array_equal(np.unique(banded.triangles.reshape(-1, 9), axis=0),
                                  np.unique(whole.triangles.reshape(-1, 9), axis=0))


@pytest.mark.parametrize("reach, covered", [(0.0, False), (2.0, True)])
def test_crests_between_the_rows_of_a_grazing_wall_are_lifted_within_the_reach(reach, covered):
    """A wall seen at a grazing angle: rows of points 4 cells apart, its field a crest just short of the level
    all along it. Lifted only at the points' own cells, the wall keeps open stripes between the rows; with a
    reach of two cells every grid point of the wall is lifted."""
    grid = WindowGrid.from_sizes(0.4, 0.01, 0.1)  # 40 cells
    rows = np.arange(0.005, 0.4, 0.04)
    y, z = np.meshgrid(rows, np.arange(0.0, 0.4, 0.005), indexing="ij")
    wall_x = 20  # the wall runs through grid layer 20, the points within it
    points = np.c_[np.full(y.size, wall_x * 0.01 + 0.002), y.ravel(), z.ravel()]
    index = np.indices((grid.cells,) * 3).reshape(3, -1).T
    block = (-np.abs(index[:, 0] - wall_x) - 0.1).reshape((grid.cells,) * 3).astype(np.float32)  # crest at -0.1

    def decode(at: np.ndarray) -> np.ndarray:
        return (-np.abs(at[:, 0] - wall_x) - 0.1).astype(np.float32)

    near = lift_candidates(grid, np.zeros(3, dtype=np.int64), points, MeshingConfig(crest_reach=reach))
    lift_crests(block, 0.0, 1.0, near, decode)
    wall = block[wall_x] > 0
    assert wall.all() == covered
    assert wall[np.round(rows * 100 - 0.5).astype(int)].all()  # the rows' own cells, either way
    assert (block[np.arange(grid.cells) != wall_x] < 0).all()  # nothing lifted off the wall


def test_stage_clock_adds_up_each_stage():
    clock = StageClock([torch.device("cpu")])
    assert list(clock.seconds) == list(STAGES) and sum(clock.seconds.values()) == 0
    for _ in range(2):
        with clock.stage("field"):
            time.sleep(0.01)
    assert clock.seconds["field"] >= 0.02 and clock.seconds["optimize"] == 0


def test_the_loss_points_weigh_the_area_their_own_trim_reach_keeps(room_corner):
    config = small_config(iterations=1)
    reach = np.random.default_rng(0).uniform(0.02, 0.06, len(room_corner))
    plan = plan_windows(room_corner, config, steps=1, trim_reach=reach)
    windows = plan.batches[0].windows
    masks = [plan.loss_mask(w, plan.grid.to_unit(room_corner[plan.windows.crop_points[w]], plan.windows.index[w]))
             for w in windows]
    areas = runners_module.sample_areas(plan, windows, masks)
    for w, mask, area in zip(windows, masks, areas):
        own = reach[plan.windows.crop_points[w]]
        assert area == pytest.approx(np.square(own if mask is None else own[mask]))
    alike = plan_windows(room_corner, config, steps=1)  # one reach for every point
    assert runners_module.sample_areas(alike, windows, masks) is None
