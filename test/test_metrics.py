"""Mesh metrics on cases with known answers."""
import numpy as np
import pytest
import trimesh

from sa_convonet_ros.io import write_mesh
from sa_convonet_ros.metrics import evaluate_mesh, evaluate_mesh_files, sample_mesh, visible_mask


@pytest.fixture(scope="module")
def sphere():
    return trimesh.creation.icosphere(subdivisions=5)


@pytest.fixture(scope="module")
def sphere_gt(sphere):
    return sample_mesh(sphere, 100_000, seed=1)


def test_sample_mesh_returns_surface_points_and_unit_normals(sphere):
    points, normals = sample_mesh(sphere, 1000, seed=0)
    assert points.shape == normals.shape == (1000, 3)
    np.testing.assert_allclose(np.linalg.norm(points, axis=1), 1.0, atol=2e-3)
    np.testing.assert_allclose(np.einsum("ij,ij->i", normals, points), 1.0, atol=2e-3)
    np.testing.assert_array_equal(sample_mesh(sphere, 10, seed=5)[0], sample_mesh(sphere, 10, seed=5)[0])


def test_mesh_against_its_own_samples(sphere, sphere_gt):
    result = evaluate_mesh(sphere, *sphere_gt, n_samples=100_000)
    assert result["chamfer_l1"] < 0.006  # only the sampling spacing remains
    assert result["normal_consistency"] > 0.999
    assert result["fscore@0.02"] == pytest.approx(1.0, abs=1e-3)
    assert result["fscore@0.05"] == 1.0
    assert result["empty_prediction"] is False
    assert result["n_pred_samples"] == 100_000 and result["n_gt_evaluated"] == 100_000


def test_sphere_of_radius_1_01(sphere, sphere_gt):
    larger = sphere.copy()
    larger.apply_scale(1.01)
    own = evaluate_mesh(sphere, *sphere_gt, n_samples=100_000)["chamfer_l1"]
    result = evaluate_mesh(larger, *sphere_gt, n_samples=100_000)
    # Radial offset 0.01 plus a tangential share of the sample spacing.
    assert 0.01 <= result["chamfer_l1"] <= 0.01 + own
    assert result["chamfer_l2"] == pytest.approx(result["chamfer_l1"] ** 2, rel=0.5)
    assert result["normal_consistency"] > 0.999


def test_shifted_plane_scores_by_threshold():
    plane = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], faces=[[0, 1, 2], [0, 2, 3]])
    gt_points, gt_normals = sample_mesh(plane, 50_000, seed=1)
    shifted = plane.copy()
    shifted.apply_translation([0, 0, 0.03])
    result = evaluate_mesh(shifted, gt_points, gt_normals, taus=(0.02, 0.05), n_samples=50_000)
    assert result["fscore@0.02"] == 0.0
    assert result["precision@0.05"] == result["recall@0.05"] == result["fscore@0.05"] == 1.0
    assert result["accuracy"] == pytest.approx(0.03, abs=3e-3)
    assert result["normal_consistency"] == pytest.approx(1.0)


def test_completeness_mask_restricts_only_the_ground_truth_side():
    plane = trimesh.Trimesh(vertices=[[0, 0, 0], [2, 0, 0], [2, 1, 0], [0, 1, 0]], faces=[[0, 1, 2], [0, 2, 3]])
    gt_points, gt_normals = sample_mesh(plane, 40_000, seed=1)
    half = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], faces=[[0, 1, 2], [0, 2, 3]])
    unmasked = evaluate_mesh(half, gt_points, gt_normals, n_samples=20_000)
    # Half the plane plus the 0.05-wide strip next to the prediction's edge.
    assert unmasked["recall@0.05"] == pytest.approx(0.525, abs=0.01)

    scan = gt_points[gt_points[:, 0] < 1.0]
    mask = visible_mask(gt_points, scan, radius=0.03)
    assert mask[gt_points[:, 0] < 1.0].all() and not mask[gt_points[:, 0] > 1.03].any()
    masked = evaluate_mesh(half, gt_points, gt_normals, n_samples=20_000, completeness_mask=mask)
    assert masked["recall@0.05"] == pytest.approx(1.0, abs=1e-3)
    assert masked["completeness"] < 0.01 < unmasked["completeness"]
    assert masked["accuracy"] == unmasked["accuracy"] and masked["precision@0.02"] == unmasked["precision@0.02"]
    assert masked["n_gt_evaluated"] == mask.sum()


def test_empty_prediction_is_a_total_failure(sphere_gt):
    result = evaluate_mesh(trimesh.Trimesh(), *sphere_gt, taus=(0.01,))
    assert result["empty_prediction"] is True
    assert np.isinf(result["chamfer_l1"]) and np.isinf(result["accuracy"]) and np.isinf(result["completeness"])
    assert result["fscore@0.01"] == result["precision@0.01"] == result["recall@0.01"] == 0.0
    assert result["normal_consistency"] == 0.0 and result["n_pred_samples"] == 0


def test_without_gt_normals(sphere, sphere_gt):
    result = evaluate_mesh(sphere, sphere_gt[0], None, n_samples=10_000)
    assert np.isnan(result["normal_consistency"]) and result["chamfer_l1"] < 0.02


def test_bad_inputs(sphere):
    with pytest.raises(ValueError, match="gt_points"):
        evaluate_mesh(sphere, np.zeros((0, 3)), None)
    with pytest.raises(ValueError, match="completeness_mask"):
        evaluate_mesh(sphere, np.zeros((4, 3)), None, completeness_mask=np.ones(3, dtype=bool))


def test_evaluate_mesh_files(tmp_path, sphere, sphere_gt):
    mesh_path = write_mesh(sphere, tmp_path / "pred.ply")
    gt_mesh_path = write_mesh(sphere, tmp_path / "gt.obj")
    from_mesh = evaluate_mesh_files(mesh_path, gt_mesh_path, taus=(0.02,), n_samples=20_000)
    assert from_mesh["chamfer_l1"] < 0.02 and from_mesh["normal_consistency"] > 0.99

    np.savez(tmp_path / "gt.npz", points=sphere_gt[0][:20_000], normals=sphere_gt[1][:20_000])
    from_cloud = evaluate_mesh_files(mesh_path, tmp_path / "gt.npz", taus=(0.05,), n_samples=20_000)
    assert from_cloud["fscore@0.05"] > 0.99 and from_cloud["normal_consistency"] > 0.99

    write_mesh(trimesh.Trimesh(), tmp_path / "empty.ply")
    assert evaluate_mesh_files(tmp_path / "empty.ply", tmp_path / "gt.npz")["empty_prediction"] is True


def test_exact_distances_leave_no_sampling_floor():
    """Completeness is point-to-triangle; with an analytic distance accuracy is too, however sparse the samples."""
    plane = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], faces=[[0, 1, 2], [0, 2, 3]])
    gt_points, gt_normals = sample_mesh(plane, 500, seed=1)  # ~4.5 cm spacing
    shifted = plane.copy()
    shifted.apply_translation([0, 0, 0.004])
    sampled = evaluate_mesh(shifted, gt_points, gt_normals, n_samples=500)
    exact = evaluate_mesh(shifted, gt_points, gt_normals, n_samples=500, gt_distance=lambda p: p[:, 2])
    assert exact["completeness"] == pytest.approx(0.004, abs=1e-6)
    assert exact["accuracy"] == pytest.approx(0.004, abs=1e-6)
    assert sampled["accuracy"] > 0.01  # nearest-sample distance is dominated by the spacing
    assert exact["fscore@0.02"] == 1.0 and exact["normal_consistency"] == pytest.approx(1.0)


def test_exact_completeness_far_from_the_origin():
    """Map coordinates of 1e5 m must not cost float32 precision in the point-to-triangle distances."""
    plane = trimesh.Trimesh(vertices=[[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0]], faces=[[0, 1, 2], [0, 2, 3]])
    gt_points, gt_normals = sample_mesh(plane, 2000, seed=1)
    offset = np.array([1e5, -2e5, 30.0])
    shifted = plane.copy()
    shifted.apply_translation(offset + [0, 0, 0.002])
    result = evaluate_mesh(shifted, gt_points + offset, gt_normals, n_samples=2000)
    assert result["completeness"] == pytest.approx(0.002, abs=1e-5)


def test_the_holes_of_a_plane_with_a_cut_out_patch_are_found_with_their_area():
    """A 2 x 2 m plane on a 1 cm grid without a 0.3 x 0.2 m patch and a 3 x 3 cm one: both holes are found
    (the small one is 1.5 cm from its rim at most, where distances to the mesh see nothing)."""
    from sa_convonet_ros.metrics import hole_metrics

    n = 201
    x, y = (g.ravel() for g in np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij"))
    corner = (np.arange(n - 1)[:, None] * n + np.arange(n - 1)).ravel()
    faces = np.r_[np.c_[corner, corner + n, corner + n + 1], np.c_[corner, corner + n + 1, corner + 1]]
    plane = trimesh.Trimesh(np.c_[x, y, np.zeros_like(x)], faces, process=False)
    centres = plane.triangles_center
    cut = (((centres[:, 0] > 0.2) & (centres[:, 0] < 0.5) & (centres[:, 1] > -0.1) & (centres[:, 1] < 0.1))
           | ((np.abs(centres[:, 0] + 0.5) < 0.015) & (np.abs(centres[:, 1] + 0.5) < 0.015)))
    holed = plane.submesh([np.flatnonzero(~cut)], append=True)
    rng = np.random.default_rng(0)
    truth = np.c_[rng.uniform(-0.95, 0.95, (200_000, 2)), np.zeros(200_000)]
    normals = np.tile([0.0, 0.0, 1.0], (len(truth), 1))
    observed = truth[:, 0] > -0.9  # a strip the sensor never saw: not counted
    area = 1.9 * 1.9 / len(truth)
    scores = hole_metrics(holed, truth, normals, observed, area)
    assert scores["hole_count"] == 1 and scores["hole_area"] == pytest.approx(0.06, rel=0.1)
    assert scores["largest_hole"] == pytest.approx(0.06, rel=0.1)
    assert scores["holes"] == pytest.approx((0.06 + 0.0009) / (1.85 * 1.9), rel=0.1)
    small = scores["hole_mask"] & (np.abs(truth[:, 0] + 0.5) < 0.02)
    assert small.sum() > 0.8 * 0.0009 / area  # the small hole's samples are holes too, below min_area
    assert scores["far@0.05"] == pytest.approx(0.2 * 0.1 / (1.85 * 1.9), rel=0.1)  # the big patch's middle
    assert hole_metrics(plane, truth, normals, observed, area)["holes"] == 0.0
