"""The fit check: distances of the points from the field's level, and windows that stop once they fit."""
import numpy as np
import torch

from sa_convonet_ros.config import OptimizationConfig
from sa_convonet_ros.optimize import optimize_windows
from sa_convonet_ros.window_batch import WindowBatch
from sa_convonet_ros.window_fit import FIT_POINTS, WindowFit, level_distances

CPU = torch.device("cpu")


def test_distances_to_the_level_of_a_linear_and_a_spherical_field_are_exact_or_close():
    points = torch.tensor([[[0.0, 0.0, 0.3], [0.1, -0.2, -0.05], [0.2, 0.2, 0.0]]])

    def plane(queries):  # logit 8 per unit along z, the level at z = 0.1
        return 8.0 * (queries[..., 2] - 0.1)

    np.testing.assert_allclose(level_distances(plane, points, 0.01)[0], [0.2, 0.15, 0.1], rtol=1e-5)

    def sphere(queries):  # level on the sphere of radius 0.25, a steep field (logit 40 per unit)
        return 40.0 * (0.25 - queries.norm(dim=-1))

    expected = (0.25 - points[0].norm(dim=-1)).abs()
    np.testing.assert_allclose(level_distances(sphere, points, 0.005)[0], expected, atol=1e-3)


def test_a_window_stops_when_its_points_fit_and_only_then():
    points = torch.zeros(2, 100, 3)
    points[1, :, 2] = 0.2  # window 1's points lie 0.2 above the level
    points[1, :3, 2] = 0.0
    fit = WindowFit.start(points, torch.tensor([100, 100]), tolerance=0.01, share=0.97, spacing=0.005, every=10,
                          seed=0)
    assert fit.points.shape == (2, FIT_POINTS, 3) and fit.due(10) and not fit.due(15)

    def plane(queries):
        return 8.0 * queries[..., 2]

    assert fit.fitted(plane, torch.tensor([0, 1])).tolist() == [True, False]
    assert fit.fitted(plane, torch.tensor([1])).tolist() == [False]


def _windows(seed=0):
    rng = np.random.default_rng(seed)
    planes = [np.c_[rng.uniform(-0.4, 0.4, (3000, 2)), np.full(3000, offset)] for offset in (0.0, 0.1, -0.1)]
    return WindowBatch.from_arrays([p.astype(np.float32) for p in planes], CPU, 3000, rng)


def test_the_optimisation_stops_windows_that_fit_and_runs_the_others_to_their_budget(tiny_model):
    base = dict(iterations=30, optimized_parts="decoder", optimize_features=True, surface_samples=128,
                off_surface_samples=64, fit_check_every=10)
    loose = optimize_windows(tiny_model, _windows(), OptimizationConfig(**base, fit_tolerance=1e9), fit_cell=0.01)
    assert loose.window_steps == [10, 10, 10] and len(loose.loss_history) == 10
    strict = optimize_windows(tiny_model, _windows(), OptimizationConfig(**base, fit_tolerance=1e-9), fit_cell=0.01)
    off = optimize_windows(tiny_model, _windows(), OptimizationConfig(**base), fit_cell=0.01)
    assert strict.window_steps == off.window_steps == [30, 30, 30]
    assert strict.loss_history == off.loss_history  # the checks change nothing of a window that goes on
