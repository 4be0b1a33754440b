"""Classical baselines reconstruct a sampled sphere closely."""
import numpy as np
import pytest
import trimesh

from sa_convonet_ros.baselines import ball_pivoting, estimate_oriented_normals, mean_point_spacing, screened_poisson
from sa_convonet_ros.metrics import evaluate_mesh, sample_mesh


@pytest.fixture(scope="module")
def sphere_samples():
    sphere = trimesh.creation.icosphere(subdivisions=5)
    points, _ = sample_mesh(sphere, 3000, seed=3)
    gt_points, gt_normals = sample_mesh(sphere, 30_000, seed=4)
    return points, gt_points, gt_normals


def test_normals_are_unit_and_outward(sphere_samples):
    points = sphere_samples[0]
    normals = estimate_oriented_normals(points, k=20)
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-6)
    assert (np.einsum("ij,ij->i", normals, points) > 0.9).mean() > 0.99


def test_normals_towards_camera_and_nan_rows(sphere_samples):
    points = sphere_samples[0].copy()
    points[0] = np.nan
    normals = estimate_oriented_normals(points, orient="camera", camera_location=np.zeros(3))
    assert np.isnan(normals[0]).all()
    assert (np.einsum("ij,ij->i", normals[1:], points[1:]) < 0).all()


def test_too_few_points_and_bad_orient(sphere_samples):
    with pytest.raises(ValueError, match="at least"):
        estimate_oriented_normals(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="orient"):
        estimate_oriented_normals(sphere_samples[0], orient="sideways")


def test_screened_poisson_close_to_sphere(sphere_samples):
    points, gt_points, gt_normals = sphere_samples
    mesh = screened_poisson(points, depth=6)
    assert isinstance(mesh, trimesh.Trimesh) and len(mesh.faces) > 1000
    assert (np.abs(mesh.vertices) <= 1.0 + 0.05).all()  # cropped to the input's box
    result = evaluate_mesh(mesh, gt_points, gt_normals, n_samples=30_000)
    assert result["chamfer_l1"] < 0.02 and result["normal_consistency"] > 0.98


def test_ball_pivoting_close_to_sphere(sphere_samples):
    points, gt_points, gt_normals = sphere_samples
    assert 0.01 < mean_point_spacing(points) < 0.05
    mesh = ball_pivoting(points)
    assert len(mesh.faces) > 1000
    result = evaluate_mesh(mesh, gt_points, gt_normals, n_samples=30_000)
    assert result["chamfer_l1"] < 0.02 and result["fscore@0.05"] > 0.95


def test_colors_are_carried_by_poisson(sphere_samples):
    points = sphere_samples[0]
    colors = np.tile([1.0, 0.0, 0.0], (len(points), 1))
    mesh = screened_poisson(points, depth=5, colors=colors)
    assert mesh.visual.kind == "vertex"
    assert (np.asarray(mesh.visual.vertex_colors)[:, 0] > 200).all()


def test_poisson_depth_follows_the_map_and_the_grid():
    from sa_convonet_ros.baselines import poisson_depth_for

    room = np.random.default_rng(0).uniform(0, 6.0, (1000, 3))
    depth = poisson_depth_for(room, 0.01)
    assert 6.0 * 1.1 / 2 ** depth <= 0.01 < 6.0 * 1.1 / 2 ** (depth - 1)
    assert poisson_depth_for(room, 0.04) == depth - 2 and poisson_depth_for(room / 10, 0.01) < depth


def test_a_trimmed_mesh_keeps_the_faces_near_the_points_only():
    from sa_convonet_ros.baselines import trimmed_to_points

    x, y = (g.ravel() for g in np.meshgrid(np.linspace(-1, 1, 41), np.linspace(-1, 1, 41)))  # 2 x 2 m, 5 cm cells
    corner = (np.arange(40)[:, None] * 41 + np.arange(40)).ravel()
    faces = np.r_[np.c_[corner, corner + 1, corner + 42], np.c_[corner, corner + 42, corner + 41]]
    plane = trimesh.Trimesh(np.c_[x, y, np.zeros_like(x)], faces, process=False)
    rng = np.random.default_rng(1)
    points = np.c_[rng.uniform(-1, 0, 20_000), rng.uniform(-1, 1, 20_000), np.full(20_000, 0.01)]  # over x < 0
    trimmed = trimmed_to_points(plane, points, 0.03)
    centres = trimmed.triangles_center
    assert (centres[:, 0] < 0.03).all()
    assert trimmed.area == pytest.approx(2.0, abs=0.1)  # the half of the plane under the points
