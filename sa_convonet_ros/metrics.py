"""Standard surface-reconstruction metrics (as in Occupancy Networks / ConvONet evaluations).

accuracy (prediction -> ground truth), completeness (ground truth -> prediction), their mean
(Chamfer-L1), normal consistency, and precision / recall / F-score at distance thresholds tau.
Distances are in the units of the inputs (metres for robot maps).

Completeness is the exact distance from each ground-truth point to the predicted triangles. Accuracy
samples the prediction and measures each sample against the ground truth: exactly when a distance
function is given (e.g. the analytic distance of a synthetic scene), otherwise to the nearest
ground-truth sample, which adds about half the ground truth's sample spacing to every distance.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import trimesh
from scipy.spatial import cKDTree

DEFAULT_TAUS = (0.02, 0.05)


def sample_mesh(mesh: trimesh.Trimesh, n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` area-weighted surface samples (n, 3) and the normals (n, 3) of their faces."""
    points, face_index = trimesh.sample.sample_surface(mesh, int(n), seed=seed)
    return np.asarray(points, dtype=np.float64), np.asarray(mesh.face_normals[face_index], dtype=np.float64)


def visible_mask(gt_points: np.ndarray, input_points: np.ndarray, radius: float = 0.03) -> np.ndarray:
    """Boolean mask of the ground-truth points within ``radius`` of some input point, i.e. the
    part of the surface that the scan actually saw."""
    input_points = np.asarray(input_points, dtype=np.float64)
    input_points = input_points[np.isfinite(input_points).all(axis=1)]
    if len(input_points) == 0:
        return np.zeros(len(gt_points), dtype=bool)
    distances, _ = cKDTree(input_points).query(np.asarray(gt_points, dtype=np.float64),
                                               distance_upper_bound=radius, workers=-1)
    return np.isfinite(distances)


def mesh_raycaster(mesh: trimesh.Trimesh):
    """Open3D's BVH of the mesh, built once for several queries, and the centre it is relative to: shifted to
    the mesh's centre so that float32 keeps its precision for maps far from the origin."""
    import open3d as o3d

    centre = np.asarray(mesh.bounds, dtype=np.float64).mean(axis=0)
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(o3d.core.Tensor((np.asarray(mesh.vertices) - centre).astype(np.float32)),
                        o3d.core.Tensor(np.asarray(mesh.faces, dtype=np.uint32)))
    return scene, centre


def closest_points_on_mesh(mesh: trimesh.Trimesh, points: np.ndarray, raycaster=None) -> tuple[np.ndarray, np.ndarray]:
    """Exact Euclidean distance (n,) from each point to the mesh's triangles, and the index (n,) of the
    closest triangle (Open3D's BVH; float32 inside, so distances are exact to ~1e-7 of the extent).
    `raycaster`: the mesh's `mesh_raycaster`, when the caller has one."""
    import open3d as o3d

    scene, centre = raycaster or mesh_raycaster(mesh)
    query = o3d.core.Tensor((np.asarray(points, dtype=np.float64) - centre).astype(np.float32))
    closest = scene.compute_closest_points(query)
    distances = np.linalg.norm(closest["points"].numpy().astype(np.float64) + centre - points, axis=1)
    return distances, closest["primitive_ids"].numpy().astype(np.int64)


def _tau_key(name: str, tau: float) -> str:
    return f"{name}@{tau:g}"


def _unit(normals: np.ndarray) -> np.ndarray:
    return normals / np.maximum(np.linalg.norm(normals, axis=1, keepdims=True), 1e-12)


def _failure_metrics(taus: Sequence[float], n_gt: int, n_gt_evaluated: int) -> dict:
    """What an empty prediction scores: infinite distances and zero for every score."""
    metrics = {
        "chamfer_l1": np.inf, "chamfer_l2": np.inf, "accuracy": np.inf, "completeness": np.inf,
        "normal_consistency": 0.0,
    }
    for tau in taus:
        metrics.update({_tau_key("precision", tau): 0.0, _tau_key("recall", tau): 0.0, _tau_key("fscore", tau): 0.0})
    metrics.update({"n_pred_samples": 0, "n_gt_points": n_gt, "n_gt_evaluated": n_gt_evaluated,
                    "empty_prediction": True})
    return metrics


def evaluate_mesh(pred: trimesh.Trimesh, gt_points: np.ndarray, gt_normals: np.ndarray | None,
                  taus: Sequence[float] = DEFAULT_TAUS, n_samples: int = 200_000, seed: int = 0,
                  completeness_mask: np.ndarray | None = None,
                  gt_distance: Callable[[np.ndarray], np.ndarray] | None = None) -> dict:
    """Compare a predicted mesh with ground-truth surface points (and normals).

    Returns a dict with 'chamfer_l1' (= 0.5 (accuracy + completeness), mean Euclidean distances),
    'chamfer_l2' (same with squared distances), 'accuracy', 'completeness', 'normal_consistency'
    (NaN when ``gt_normals`` is None), 'precision@tau', 'recall@tau', 'fscore@tau' for each tau,
    'n_pred_samples', 'n_gt_points', 'n_gt_evaluated' and 'empty_prediction'.

    ``completeness_mask`` (bool per GT point, e.g. from ``visible_mask``) limits the GT side
    (completeness, recall, GT->prediction normal consistency) to the part the scan saw; accuracy
    and precision always measure against all GT points. ``gt_distance`` (points (n, 3) -> unsigned
    distance (n,) to the ground-truth surface) makes accuracy exact; without it, accuracy is the
    distance to the nearest GT point, so GT points must be dense. An empty prediction yields infinite
    distances and zero scores with 'empty_prediction' True instead of raising.
    """
    gt_points = np.asarray(gt_points, dtype=np.float64)
    if gt_points.ndim != 2 or gt_points.shape[1] != 3 or len(gt_points) == 0:
        raise ValueError(f"gt_points must be a non-empty (N, 3) array, got shape {gt_points.shape}")
    if gt_normals is not None:
        gt_normals = _unit(np.asarray(gt_normals, dtype=np.float64))
        if gt_normals.shape != gt_points.shape:
            raise ValueError(f"gt_normals has shape {gt_normals.shape}, expected {gt_points.shape}")
    if completeness_mask is None:
        completeness_mask = np.ones(len(gt_points), dtype=bool)
    completeness_mask = np.asarray(completeness_mask, dtype=bool)
    if completeness_mask.shape != (len(gt_points),):
        raise ValueError(f"completeness_mask has shape {completeness_mask.shape}, expected ({len(gt_points)},)")
    n_gt_evaluated = int(completeness_mask.sum())

    if len(pred.faces) == 0 or not pred.area > 0:
        return _failure_metrics(taus, len(gt_points), n_gt_evaluated)
    pred_points, pred_normals = sample_mesh(pred, n_samples, seed)

    # Accuracy side: every prediction sample against the whole ground truth.
    pred_to_gt, gt_index = cKDTree(gt_points).query(pred_points, workers=-1)
    if gt_distance is not None:
        pred_to_gt = np.abs(np.asarray(gt_distance(pred_points), dtype=np.float64))
    # Completeness side: the (visible) ground truth against the predicted triangles.
    gt_eval_points = gt_points[completeness_mask]
    if n_gt_evaluated:
        gt_to_pred, closest_face = closest_points_on_mesh(pred, gt_eval_points)
    else:
        gt_to_pred, closest_face = np.zeros(0), np.zeros(0, dtype=np.int64)

    accuracy = float(pred_to_gt.mean())
    completeness = float(gt_to_pred.mean()) if n_gt_evaluated else np.nan
    metrics = {
        "chamfer_l1": 0.5 * (accuracy + completeness),
        "chamfer_l2": 0.5 * (float(np.mean(pred_to_gt ** 2))
                             + (float(np.mean(gt_to_pred ** 2)) if n_gt_evaluated else np.nan)),
        "accuracy": accuracy,
        "completeness": completeness,
        "normal_consistency": np.nan,
    }
    if gt_normals is not None:
        # Orientation-free: |cos| of the angle, as reconstructions may have either sign.
        pred_side = np.abs(np.einsum("ij,ij->i", pred_normals, gt_normals[gt_index])).mean()
        face_normals = np.asarray(pred.face_normals, dtype=np.float64)[closest_face]
        gt_side = (np.abs(np.einsum("ij,ij->i", gt_normals[completeness_mask], face_normals)).mean()
                   if n_gt_evaluated else np.nan)
        metrics["normal_consistency"] = float(0.5 * (pred_side + gt_side))
    for tau in taus:
        precision = float(np.mean(pred_to_gt <= tau))
        recall = float(np.mean(gt_to_pred <= tau)) if n_gt_evaluated else np.nan
        fscore = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
        metrics.update({_tau_key("precision", tau): precision, _tau_key("recall", tau): recall,
                        _tau_key("fscore", tau): float(fscore)})
    metrics.update({"n_pred_samples": int(len(pred_points)), "n_gt_points": int(len(gt_points)),
                    "n_gt_evaluated": n_gt_evaluated, "empty_prediction": False})
    return metrics


def load_ground_truth(path: str | Path, n_samples: int = 200_000,
                      seed: int = 1) -> tuple[np.ndarray, np.ndarray | None]:
    """Ground-truth surface points and normals from a mesh file (sampled) or a point cloud with
    normals (.ply with vertex normals, .npz with 'points' and 'normals'; normals may be absent)."""
    from .io import read_mesh_or_cloud

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ground-truth file not found: {path}")
    cloud = read_mesh_or_cloud(path)
    if isinstance(cloud, trimesh.Trimesh):
        return sample_mesh(cloud, n_samples, seed)
    finite = cloud.finite_mask()
    normals = None if cloud.normals is None else cloud.normals[finite]
    return cloud.points[finite], normals


def evaluate_mesh_files(mesh_path: str | Path, gt_path: str | Path, taus: Sequence[float] = DEFAULT_TAUS,
                        n_samples: int = 200_000, seed: int = 0, input_path: str | Path | None = None,
                        visibility_radius: float = 0.03) -> dict:
    """``evaluate_mesh`` on files. ``gt_path``: a mesh (sampled with ``n_samples`` points) or a point
    cloud with normals. With ``input_path`` (the scan fed to the reconstruction), completeness and
    recall are measured only on GT within ``visibility_radius`` of the scan."""
    from .io import read_mesh, read_point_cloud

    gt_points, gt_normals = load_ground_truth(gt_path, n_samples, seed + 1)
    mask = None
    if input_path is not None:
        scan = read_point_cloud(input_path)
        mask = visible_mask(gt_points, scan.points, visibility_radius)
    return evaluate_mesh(read_mesh(mesh_path), gt_points, gt_normals, taus, n_samples, seed, mask)


# A hole: observed surface that the mesh does not cross within this distance along the surface's normal. The
# distance to the nearest triangle cannot see small holes: the middle of a 4 cm hole is 2 cm from its rim.
HOLE_REACH = 0.02
MIN_HOLE_AREA = 1e-3  # square metres: holes larger than about 3 x 3 cells of a 1 cm grid are counted


def hole_metrics(mesh: trimesh.Trimesh, gt_points: np.ndarray, gt_normals: np.ndarray, observed: np.ndarray,
                 point_area: float, far: Sequence[float] = (0.02, 0.05), reach: float = HOLE_REACH,
                 min_area: float = MIN_HOLE_AREA) -> dict:
    """What of the observed surface the mesh misses.

    gt_points/gt_normals: uniform samples of the true surface, `observed` which of them a sensor saw (the
    simulators' `observed_by_*`), `point_area` the surface area each sample stands for. Returns 'far@tau':
    the share of the observed samples farther than tau from the mesh; 'holes': the share the mesh does not
    cross within `reach` along their normal; 'hole_count' and 'hole_area' (m^2): the connected regions of
    such samples (neighbours within 2.5 sample spacings) of at least `min_area`, and 'largest_hole' (m^2);
    'hole_mask': which samples lie in a hole, for pictures."""
    points = np.asarray(gt_points, dtype=np.float64)[observed]
    normals = _unit(np.asarray(gt_normals, dtype=np.float64)[observed])
    result = {"observed_points": int(len(points)), "hole_mask": np.zeros(len(observed), dtype=bool)}
    if len(points) == 0:
        return {**result, **{_tau_key("far", tau): np.nan for tau in far}, "holes": np.nan, "hole_count": 0,
                "hole_area": 0.0, "largest_hole": 0.0}
    if len(mesh.faces):
        raycaster = mesh_raycaster(mesh)  # one BVH for both queries
        distances = closest_points_on_mesh(mesh, points, raycaster)[0]
        missed = ~crossed_along_normals(mesh, points, normals, reach, raycaster)
    else:
        distances, missed = np.full(len(points), np.inf), np.ones(len(points), dtype=bool)
    result.update({_tau_key("far", tau): float(np.mean(distances > tau)) for tau in far})
    areas = hole_areas(points[missed], point_area)
    result.update({"holes": float(missed.mean()), "hole_count": int(np.sum(areas >= min_area)),
                   "hole_area": float(areas[areas >= min_area].sum()),
                   "largest_hole": float(areas.max()) if len(areas) else 0.0})
    result["hole_mask"][np.flatnonzero(observed)[missed]] = True
    return result


def crossed_along_normals(mesh: trimesh.Trimesh, points: np.ndarray, normals: np.ndarray, reach: float,
                          raycaster=None) -> np.ndarray:
    """Whether the mesh crosses the segment from each point `reach` back along its normal to `reach` ahead
    (`raycaster`: the mesh's `mesh_raycaster`, when the caller has one)."""
    if len(mesh.faces) == 0:
        return np.zeros(len(points), dtype=bool)
    import open3d as o3d

    scene, centre = raycaster or mesh_raycaster(mesh)
    rays = np.concatenate([points - centre - reach * normals, normals], axis=1).astype(np.float32)
    hit = scene.cast_rays(o3d.core.Tensor(rays))["t_hit"].numpy()
    return hit <= 2 * reach


def hole_areas(points: np.ndarray, point_area: float) -> np.ndarray:
    """The areas (m^2) of the connected groups of `points` (missed surface samples): neighbours lie within
    2.5 sample spacings of each other."""
    if len(points) == 0:
        return np.zeros(0)
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    pairs = cKDTree(points).query_pairs(2.5 * np.sqrt(point_area), output_type="ndarray")
    graph = coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(len(points),) * 2)
    _, labels = connected_components(graph, directed=False)
    return np.bincount(labels) * point_area
