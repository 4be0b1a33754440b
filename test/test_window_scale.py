"""Windows that follow the map's density: the spacing estimate, the scale rule and the scaled settings."""
import logging

import numpy as np
import pytest
import torch

from sa_convonet_ros.config import ModelConfig, get_profile
from sa_convonet_ros.denoise import estimate_noise
from sa_convonet_ros.model import ConvONet
from sa_convonet_ros.pipeline import reconstruct
from sa_convonet_ros.window_scale import coarsened, grid_for_spacing, scaled, scaled_to_map, window_scale_for
from sa_convonet_ros.windows import WindowGrid, select_windows


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return ConvONet(ModelConfig(c_dim=8, hidden_dim=16, grid_resolution=8, unet_levels=2, unet_base_channels=8)).eval()


def floor_and_wall(spacing, size=8.0, jitter=0.2, seed=0):
    """A floor and a wall meeting at a right angle, points on a grid of `spacing` moved by up to
    `jitter` of it (so the nearest-neighbour distances are not all equal)."""
    ticks = np.arange(0.0, size, spacing)
    u, v = (a.ravel() for a in np.meshgrid(ticks, ticks))
    floor = np.c_[u, v, np.zeros(u.size)]
    wall = np.c_[u, np.zeros(u.size), v]
    points = np.concatenate([floor, wall])
    rng = np.random.default_rng(seed)
    return points + rng.uniform(-jitter / 2, jitter / 2, points.shape) * spacing


@pytest.mark.parametrize("spacing", [0.01, 0.04, 0.12])
def test_the_spacing_estimate_reads_clouds_of_known_spacing(spacing):
    points = floor_and_wall(spacing, size=min(8.0, 150 * spacing))
    assert estimate_noise(points).spacing == pytest.approx(spacing, rel=0.15)


@pytest.mark.parametrize("spacing, scale", [(0.006, 1.0), (0.01, 1.0), (0.02, 1.0), (0.025, 1.25), (0.04, 1.75),
                                            (0.082, 3.0), (0.127, 4.5), (0.2, 6.25)])
def test_window_scale_follows_the_spacing_beyond_the_reference(spacing, scale):
    assert window_scale_for(spacing) == scale


@pytest.mark.parametrize("spacing, capped", [(0.002, 1.0), (0.5, 6.25), (float("nan"), 1.0)])
def test_spacings_outside_the_supported_range_are_warned_about(spacing, capped, caplog):
    with caplog.at_level(logging.WARNING, logger="sa_convonet_ros.window_scale"):
        assert window_scale_for(spacing) == capped
    assert caplog.records and caplog.records[0].levelno == logging.WARNING


def test_supported_spacings_give_no_warning(caplog):
    with caplog.at_level(logging.WARNING, logger="sa_convonet_ros.window_scale"):
        window_scale_for(0.1)
    assert not caplog.records


def test_scaling_multiplies_every_metric_length_once():
    config = get_profile("fast").updated(windows={"loss_margin": 0.05})
    grown = scaled(config, 2.5)
    assert grown.windows.loss_margin == pytest.approx(2.5 * 0.05)
    assert grown.windows.window_size == pytest.approx(2.5 * config.windows.window_size)
    assert grown.windows.margin == pytest.approx(2.5 * config.windows.margin)
    assert grown.meshing.voxel_size == pytest.approx(2.5 * config.meshing.voxel_size)
    assert grown.meshing.trim_distance == pytest.approx(2.5 * config.meshing.trim_distance)
    assert grown.optimization == config.optimization and grown.windows.min_points == config.windows.min_points
    assert scaled_to_map(grown, np.zeros((0, 3))) is grown  # applied: a second pass leaves it alone


def test_a_fixed_scale_is_applied_without_measuring():
    config = get_profile("fast").updated(windows={"window_scale": 2.0})
    grown = scaled_to_map(config, np.zeros((0, 3)))
    assert grown.windows.window_size == pytest.approx(2.4) and grown.meshing.voxel_size == pytest.approx(0.04)


@pytest.mark.parametrize("spacing, window", [(0.01, 1.2), (0.04, 2.1), (0.1, 4.2)])
def test_window_choice_at_several_densities(spacing, window):
    points = floor_and_wall(spacing, size=8.0, jitter=0.0)
    config = scaled_to_map(get_profile("fast"), points)
    assert config.windows.window_size == pytest.approx(window)
    assert config.meshing.voxel_size == pytest.approx(0.02 * window / 1.2)


def test_a_window_holds_nearly_as_many_points_at_coarse_densities():
    """What the scale is for: from 2 to 10 cm spacing an auto-scaled window keeps most of its points (its edge
    spans 60 spacings at 2 cm, 42 at 10 cm, the margin's more), where a fixed window would hold 25 times fewer."""
    counts = []
    for spacing in (0.02, 0.1):
        points = floor_and_wall(spacing, size=240 * spacing)  # a few windows across, whatever their size
        config = scaled_to_map(get_profile("fast"), points)
        grid = WindowGrid.from_sizes(config.windows.window_size, config.meshing.voxel_size, config.windows.margin)
        counts.append(np.median(select_windows(points, grid, 1, grid.margin).near_counts))
    assert 0.5 < counts[1] / counts[0] < 0.95


def test_reconstruct_runs_sparse_maps_in_fewer_larger_windows(tiny_model):
    points = floor_and_wall(0.1, size=4.0, jitter=0.0)
    config = get_profile("feedforward").updated(device="cpu", meshing={"voxel_size": 0.1, "trim_distance": 0.2})
    auto = reconstruct(points, config, model=tiny_model).stats
    fixed = reconstruct(points, config.updated(windows={"window_scale": 1.0}), model=tiny_model).stats
    assert auto.window_size == pytest.approx(4.2) and fixed.window_size == pytest.approx(1.2)
    assert auto.windows_run < fixed.windows_run / 2


def test_a_map_at_scale_one_keeps_its_configuration():
    config = get_profile("fast")
    assert scaled_to_map(config, floor_and_wall(0.02, size=3.0)) is config


@pytest.mark.parametrize("spacing, grid", [(0.009, 0.01), (0.02, 0.01), (0.025, 0.015), (0.027, 0.015),
                                           (0.035, 0.02), (float("nan"), 0.01)])
def test_the_grid_follows_a_sparse_maps_spacing_in_steps_of_5_mm(spacing, grid):
    assert grid_for_spacing(0.01, spacing, 0.6) == pytest.approx(grid)
    assert grid_for_spacing(0.01, spacing, 0.0) == 0.01  # off


def test_a_coarser_grid_takes_fewer_samples_per_window_in_proportion_to_its_cells():
    config = get_profile("auto:cpu")
    coarse = coarsened(config, 1.5 * config.meshing.voxel_size)
    assert coarse.meshing.voxel_size == pytest.approx(1.5 * config.meshing.voxel_size)
    assert coarse.optimization.surface_samples == round(config.optimization.surface_samples / 2.25)
    assert coarse.optimization.off_surface_samples == round(config.optimization.off_surface_samples / 2.25)
    assert coarse.optimization.iterations == config.optimization.iterations
    assert coarse.meshing.trim_distance == pytest.approx(1.5 * config.meshing.trim_distance)
    assert coarse.meshing.snap_distance == pytest.approx(1.5 * config.meshing.snap_distance)
    assert coarse.windows == config.windows


def test_a_sparse_map_gets_the_coarser_grid_and_a_dense_one_keeps_its_own():
    config = get_profile("fast").updated(meshing={"voxel_size": 0.01, "grid_per_spacing": 0.6},
                                         windows={"window_scale": 1.0})
    sparse = scaled_to_map(config, floor_and_wall(0.025, size=4.0, jitter=0.0))
    assert sparse.meshing.voxel_size == pytest.approx(0.015) and sparse.windows == config.windows
    assert scaled_to_map(config, floor_and_wall(0.01, size=2.0)) is config
