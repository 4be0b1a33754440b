"""Window tiling: every occupied grid cell belongs to exactly one window; crops and bands are right."""
import numpy as np
import pytest
from scipy import ndimage

from sa_convonet_ros.windows import (
    WindowGrid,
    core_band_mask,
    grow_marks,
    marked_indices,
    select_windows,
    window_memberships,
)

from helpers import core_min, core_unit_points


def test_grid_sizes_round_to_voxels():
    grid = WindowGrid.from_sizes(window_size=1.0, voxel_size=0.03, margin=0.2)
    assert grid.cells == 33
    assert grid.core_size == pytest.approx(0.99)
    assert grid.crop_size == pytest.approx(1.39)
    with pytest.raises(ValueError, match="margin"):
        WindowGrid.from_sizes(window_size=0.5, voxel_size=0.05, margin=0.6)


def test_every_point_has_exactly_one_own_window():
    rng = np.random.default_rng(0)
    grid = WindowGrid.from_sizes(1.0, 0.05, 0.2)
    points = rng.uniform(-3.1, 2.7, size=(20000, 3))
    own = grid.window_of(points)
    low = core_min(grid, own)
    # half-open core intervals: low <= p < low + core
    assert np.all(points >= low - 1e-9) and np.all(points < low + grid.core_size + 1e-9)
    windows, ids, gaps = window_memberships(points, grid, reach=0.0)
    assert np.array_equal(np.sort(ids), np.arange(len(points)))  # reach 0: each point once, its own window
    assert np.all(gaps == 0)


def test_memberships_cover_exactly_the_points_within_reach():
    rng = np.random.default_rng(1)
    grid = WindowGrid.from_sizes(1.0, 0.05, 0.25)
    points = rng.uniform(-2, 2, size=(5000, 3))
    windows, ids, gaps = window_memberships(points, grid, reach=0.25)
    pairs = set(zip(map(tuple, windows), ids))
    # brute force over the 27 candidate windows of each point
    for i in rng.choice(len(points), 300, replace=False):
        own = grid.window_of(points[i:i + 1])[0]
        for offset in np.stack(np.meshgrid(*[[-1, 0, 1]] * 3, indexing="ij"), -1).reshape(-1, 3):
            w = own + offset
            low = core_min(grid, w)
            outside = np.maximum(np.maximum(low - points[i], points[i] - (low + grid.core_size)), 0).max()
            assert ((tuple(w), i) in pairs) == (outside < 0.25 or np.all(offset == 0)), (i, offset)


def test_every_occupied_grid_cell_is_owned_by_one_run_window():
    rng = np.random.default_rng(2)
    grid = WindowGrid.from_sizes(0.6, 0.05, 0.1)
    # a tilted plane crossing many window borders, away from the origin
    uv = rng.uniform(0, 2.5, size=(30000, 2))
    points = np.c_[uv[:, 0], uv[:, 1], 0.3 * uv[:, 0] + 0.2 * uv[:, 1]] + [10.0, -4.0, 1.0]
    selected = select_windows(points, grid, min_points=1, band=0.1)
    run = {tuple(w) for w in selected.index}
    owners = {tuple(w) for w in grid.window_of(points)}
    assert owners <= run  # every cell holding points is in exactly one run window (window_of is a function)
    assert len(run) == len(selected.index)  # no window twice
    for w, crop in zip(selected.index, selected.crop_points):  # crops: the core plus the margin
        low = core_min(grid, w) - grid.margin
        assert np.all(points[crop] >= low - 1e-9) and np.all(points[crop] < low + grid.crop_size + 1e-9)


def test_sparse_windows_are_skipped():
    grid = WindowGrid.from_sizes(1.0, 0.05, 0.2)
    dense = np.random.default_rng(3).uniform(0.1, 0.9, size=(500, 3))
    lonely = np.array([[5.5, 5.5, 5.5], [5.6, 5.5, 5.5]])
    selected = select_windows(np.vstack([dense, lonely]), grid, min_points=50, band=0.1)
    assert [tuple(w) for w in selected.index] == [(0, 0, 0)]
    assert selected.skipped == 1


def test_unit_frame_maps_the_crop_onto_the_unit_cube():
    grid = WindowGrid.from_sizes(1.0, 0.05, 0.2)
    w = np.array([3, -2, 0])
    low = core_min(grid, w) - grid.margin
    corners = np.array([low, low + grid.crop_size])
    unit = grid.to_unit(corners, w)
    assert np.allclose(unit[0], -0.5, atol=0.03) and np.allclose(unit[1], 0.5, atol=0.03)
    core = core_unit_points(grid, w)
    assert core.shape == (20, 20, 20, 3)
    assert np.allclose(core.mean(axis=(0, 1, 2)), 0, atol=1e-6)  # core grid points are centred


def test_huge_coordinates_keep_precision():
    grid = WindowGrid.from_sizes(1.0, 0.01, 0.2)
    points = np.array([[1e6 + 0.123, -1e6 + 0.456, 5e5 + 0.789]])
    w = grid.window_of(points)[0]
    unit = grid.to_unit(points, w)
    back = unit.astype(np.float64) * grid.crop_size + grid.center(w)
    assert np.allclose(back, points, atol=1e-6)


def test_band_mask_marks_grid_points_near_points_only():
    grid = WindowGrid.from_sizes(1.0, 0.05, 0.2)
    w = np.array([0, 0, 0])
    points = np.array([[0.5, 0.5, 0.5]])
    mask = core_band_mask(grid, w, points, band=0.1)
    coords = np.stack(np.meshgrid(*[np.arange(20) * 0.05] * 3, indexing="ij"), -1)
    distance = np.abs(coords - points[0]).max(axis=-1)
    assert mask[distance <= 0.1].all()  # never less than the band
    assert not mask[distance > 0.1 + 0.05 + 1e-9].any()  # and at most one grid cell more
    assert core_band_mask(grid, w, points, band=None).all()


def test_a_band_per_point_marks_the_union_of_each_point_s_own_band():
    grid = WindowGrid.from_sizes(1.0, 0.05, 0.2)
    w = np.array([0, 0, 0])
    points = np.array([[0.2, 0.2, 0.2], [0.7, 0.6, 0.5], [1.05, 0.5, 0.5]])  # the last one past the core
    bands = np.array([0.05, 0.2, 0.1])
    union = np.zeros((grid.cells,) * 3, dtype=bool)
    for point, band in zip(points, bands):
        union |= core_band_mask(grid, w, point[None], band)
    np.testing.assert_array_equal(core_band_mask(grid, w, points, bands), union)
    same = core_band_mask(grid, w, points, 0.1)
    np.testing.assert_array_equal(core_band_mask(grid, w, points, np.full(3, 0.1)), same)


@pytest.mark.parametrize("reach", [0, 1, 2, 5])
def test_grown_marks_are_a_box_dilation_cut_at_the_volume_s_edges(reach):
    rng = np.random.default_rng(reach)
    marks = rng.random((17, 9, 23)) < 0.02
    marks[0, 0, 0] = marks[-1, 4, -1] = True  # marks on the edges grow inwards only
    expected = ndimage.maximum_filter(marks, size=2 * reach + 1, mode="constant", cval=False)
    np.testing.assert_array_equal(grow_marks(marks.copy(), reach), expected)


def test_marked_indices_are_argwheres():
    marks = np.random.default_rng(0).random((17, 9, 23)) < 0.05
    for volume in (marks, np.zeros((4, 5, 6), dtype=bool), marks[:, :1, :]):
        found = marked_indices(volume)
        np.testing.assert_array_equal(found, np.argwhere(volume))
        assert found.shape == (volume.sum(), 3) and found.dtype == np.intp


def test_outside_core_measures_metres_past_the_core_s_faces():
    grid = WindowGrid.from_sizes(1.0, 0.1, 0.2)  # a 1 m core in a 1.4 m crop
    window = np.array([0, 0, 0])
    centre = grid.center(window)
    world = centre + np.array([[0.0, 0.0, 0.0], [0.45, -0.3, 0.2], [0.6, 0.0, 0.0], [0.55, -0.65, 0.1]])
    np.testing.assert_allclose(grid.outside_core(grid.to_unit(world, window)), [0.0, 0.0, 0.1, 0.15], atol=1e-6)
