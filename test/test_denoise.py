"""Noise and spacing of a map, and the bounded projection of its points onto their local planes."""
import numpy as np
import pytest

import sa_convonet_ros.denoise as denoise_module
from sa_convonet_ros.denoise import estimate_noise, plane_fits, project_to_local_surfaces


def plane(spacing=0.01, size=1.0, noise=0.0, seed=0):
    ticks = np.arange(0.0, size, spacing)
    x, y = np.meshgrid(ticks, ticks)
    points = np.c_[x.ravel(), y.ravel(), np.zeros(x.size)]
    points[:, 2] += np.random.default_rng(seed).normal(scale=noise, size=len(points))
    return points


def sphere(radius=0.5, count=60_000, noise=0.0, seed=0):
    rng = np.random.default_rng(seed)
    directions = rng.normal(size=(count, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    return directions * (radius + rng.normal(scale=noise, size=(count, 1)))


def test_plane_fits_split_over_threads_are_the_one_thread_fits(monkeypatch):
    points = sphere(count=5_000, noise=0.01)
    neighbours = np.random.default_rng(1).integers(0, len(points), size=(1_001, 8))
    alone = plane_fits(points, neighbours)
    monkeypatch.setattr(denoise_module, "ROWS_PER_THREAD", 100)
    monkeypatch.setattr(denoise_module, "available_cores", lambda: 3)
    split = plane_fits(points, neighbours)
    for one, threaded in zip(alone, split):
        assert threaded.shape == one.shape
        np.testing.assert_allclose(threaded, one, rtol=0, atol=1e-12)


@pytest.mark.parametrize("noise", [0.002, 0.005, 0.015])
def test_noise_estimate_on_planes_of_known_noise(noise):
    estimate = estimate_noise(plane(spacing=0.02, size=3.0, noise=noise))
    assert estimate.noise == pytest.approx(noise, rel=0.2)
    assert estimate.spacing == pytest.approx(0.02, rel=0.3)


@pytest.mark.parametrize("noise", [0.0, 0.005, 0.015])
def test_noise_estimate_on_a_sphere(noise):
    # curvature adds a little: a 0.5 m sphere sampled every ~1 cm reads below 1 mm when clean
    estimate = estimate_noise(sphere(noise=noise))
    assert estimate.noise == pytest.approx(noise, rel=0.25, abs=0.001)


def test_denoising_keeps_a_clean_plane_exact():
    points = plane()
    np.testing.assert_allclose(project_to_local_surfaces(points, max_shift=0.01), points, atol=1e-12)


def test_denoising_pulls_a_noisy_plane_onto_the_plane():
    noisy = plane(spacing=0.02, size=2.0, noise=0.01)
    projected = project_to_local_surfaces(noisy, max_shift=0.025)
    assert np.abs(projected[:, 2]).std() < 0.35 * np.abs(noisy[:, 2]).std()
    # points move along the (nearly vertical) local normals
    sideways = np.linalg.norm(projected[:, :2] - noisy[:, :2], axis=1)
    assert np.median(sideways) < 0.3 * np.median(np.abs(projected[:, 2] - noisy[:, 2]))


def test_shifts_are_bounded_so_steps_survive():
    """A 5 cm step is far above the noise: the bounded projection cannot flatten it."""
    points = plane(spacing=0.01, size=1.0)
    points[points[:, 0] > 0.5, 2] += 0.05
    projected = project_to_local_surfaces(points, max_shift=0.004, iterations=2)
    assert np.abs(projected - points).max() <= 2 * 0.004 + 1e-12
    high = projected[:, 0] > 0.55
    assert np.allclose(projected[high, 2], 0.05, atol=1e-9)


def test_noise_estimate_needs_enough_points():
    with pytest.raises(ValueError, match="more than"):
        estimate_noise(np.zeros((5, 3)))


def folded_plane(spacing=0.01, noise=0.001, seed=0):
    """A flat sheet with two 4 cm folds across x in [0.4, 0.6] (like a curtain's), noisy along z; the
    true height of each point, and which points lie on the folds."""
    ticks = np.arange(0.0, 1.0, spacing)
    x, y = (axis.ravel() for axis in np.meshgrid(ticks, ticks))
    fold = (x > 0.4) & (x < 0.6)
    height = np.where(fold, 0.02 * (1 - np.cos(2 * np.pi * (x - 0.4) / 0.1)), 0.0)
    noisy = height + np.random.default_rng(seed).normal(scale=noise, size=len(x))
    return np.c_[x, y, noisy], height, fold


def test_folds_keep_their_shape_where_planes_would_flatten_them():
    points, height, fold = folded_plane()
    noise = estimate_noise(points).noise  # the flat part's: the folds are a fifth of the sheet
    assert noise == pytest.approx(0.001, rel=0.2)

    def rms(projected, where):
        return np.sqrt(np.mean((projected[where, 2] - height[where]) ** 2))

    planes = project_to_local_surfaces(points, 2.5 * noise, 8, 2, noise, curved_ratio=0.0)
    adaptive = project_to_local_surfaces(points, 2.5 * noise, 8, 2, noise, curved_ratio=2.0)
    assert rms(planes, fold) > 2 * noise  # a plane's mean sits inside each fold
    assert rms(adaptive, fold) < 0.5 * rms(planes, fold)
    assert rms(adaptive, ~fold) < 0.5 * noise  # the flat part is still denoised


def test_quadric_offsets_vanish_on_a_clean_paraboloid_whose_plane_misses_it():
    from scipy.spatial import cKDTree

    from sa_convonet_ros.denoise import plane_fits, quadric_offsets

    rng = np.random.default_rng(0)
    x, y = rng.uniform(-0.1, 0.1, (2, 4000))
    points = np.c_[x, y, 4.0 * x ** 2 - 2.0 * x * y + 3.0 * y ** 2]
    index = cKDTree(points).query(points[:500], k=9)[1]
    mean, normal, _ = plane_fits(points, index)
    plane_offset = np.einsum("ni,ni->n", points[:500] - mean, normal)
    assert np.abs(plane_offset).max() > 1e-5
    assert np.abs(quadric_offsets(points, index, mean, normal)).max() < 0.1 * np.abs(plane_offset).max()
