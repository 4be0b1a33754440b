"""The points a reconstruction works on: finite rows, regions, colours, denoising, even subsampling."""
import dataclasses

import numpy as np

from sa_convonet_ros.points import farthest_coordinate, prepare_points, stray_mask
from sa_convonet_ros.synthetic import generate_room

from helpers import small_config


def test_even_subsampling_caps_the_count_and_keeps_the_extent():
    from sa_convonet_ros.points import subsample_evenly

    rng = np.random.default_rng(0)
    points = np.vstack([rng.uniform(0, 1, (50000, 3)), rng.uniform(5, 5.1, (50000, 3))])  # two densities
    keep = subsample_evenly(points, 5000)
    assert 1000 < len(keep) <= 5000 and np.all(np.diff(keep) > 0)
    kept = points[keep]
    assert kept[:, 0].min() < 0.1 and kept[:, 0].max() > 5.0  # both clusters survive
    assert np.array_equal(keep, subsample_evenly(points, 5000))  # the same points every time


def test_prepare_points_drops_non_finite_rows_crops_and_keeps_colours(room_corner):
    points = room_corner.copy()
    points[::7] = np.nan
    colours = np.random.default_rng(0).random((len(points), 3))
    low = room_corner.min(axis=0)
    config = small_config().updated(denoise={"denoise": False})
    cloud = prepare_points(points, config, colours, region=(low, low + [1.0, 1.0, 3.0]))
    finite = np.isfinite(points).all(axis=1)
    inside = finite & np.all((points >= low) & (points <= low + [1.0, 1.0, 3.0]), axis=1)
    assert cloud.input_points == len(points) and cloud.non_finite_removed == (~finite).sum()
    np.testing.assert_array_equal(cloud.points, points[inside])
    np.testing.assert_array_equal(cloud.colors, colours[inside])
    assert cloud.noise is None and cloud.encoder_points is None


def test_prepare_points_measures_the_noise_and_denoises(room_corner):
    noisy = room_corner + np.random.default_rng(1).normal(scale=0.01, size=room_corner.shape)
    cloud = prepare_points(noisy, small_config().updated(denoise={"denoise_encoder_input": True}))
    assert 0.01 < cloud.noise.noise < 0.025 and cloud.encoder_points is None  # the scan's own + 1 cm
    moved = np.linalg.norm(cloud.points - noisy, axis=1)
    assert 0 < moved.max() <= 2 * 2.5 * cloud.noise.noise + 1e-12  # two passes of at most 2.5 noise levels
    keep_raw = prepare_points(noisy, small_config().updated(denoise={"denoise_encoder_input": False}))
    np.testing.assert_array_equal(keep_raw.encoder_points, noisy)
    np.testing.assert_array_equal(keep_raw.points, cloud.points)
    # an earlier estimate of the same map is kept while it agrees: unchanged parts move as before
    close = dataclasses.replace(cloud.noise, noise=cloud.noise.noise * 1.1)
    again = prepare_points(noisy, small_config().updated(denoise={"denoise_encoder_input": True}), known_noise=close)
    assert again.noise is close


def test_prepare_points_leaves_maps_whose_noise_is_small_against_their_spacing(room_corner):
    # the sparse scan's noise (1.5 cm) is about 0.4 of its 2.5 cm spacing: denoised; the room's surface with
    # 2 mm noise 2.3 cm apart (as a voxel filter averaging many returns leaves a map): measured, left alone
    config = small_config()
    noisy = prepare_points(room_corner, config)
    assert noisy.noise.noise >= config.denoise.denoise_min_noise_ratio * noisy.noise.spacing
    assert not np.array_equal(noisy.points, room_corner)
    scene_points = generate_room(seed=3).sample_surface(40_000, seed=0)[0].astype(np.float64)
    scene_points += np.random.default_rng(0).normal(scale=0.002, size=scene_points.shape)
    clean = prepare_points(scene_points, config)
    assert clean.noise.noise < config.denoise.denoise_min_noise_ratio * clean.noise.spacing
    np.testing.assert_array_equal(clean.points, scene_points)
    assert clean.encoder_points is None


def test_a_stray_point_far_outside_the_map_is_dropped_and_counted(room_corner):
    config = small_config().updated(denoise={"denoise": False})
    far = np.vstack([room_corner, [[1e9, 1e9, 1e9]], room_corner.max(axis=0) + [50.0, 0.0, 0.0]])
    cloud = prepare_points(far, config)
    assert cloud.stray_removed == 2 and len(cloud.points) == len(room_corner)
    assert farthest_coordinate(far) == np.abs(room_corner).max()
    # a part of the map just beyond the rest (a doorway's far side, a few percent of the points) stays
    beyond = room_corner[:2000] + [2.5, 0.0, 0.0]
    assert prepare_points(np.vstack([room_corner, beyond]), config).stray_removed == 0
    assert not stray_mask(room_corner).any() and stray_mask(np.zeros((0, 3))).shape == (0,)
