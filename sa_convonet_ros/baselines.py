"""Classical reconstructions with Open3D, used as baselines against the learned model.

Functions are pure (no timing, no I/O): points in, trimesh mesh out.
"""
from __future__ import annotations

import numpy as np
import trimesh

MIN_POINTS = 10  # below this neither normals nor a surface can be estimated meaningfully


def _clean_points(points: np.ndarray) -> np.ndarray:
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 3:
        raise ValueError(f"points must have shape (N, 3), got {points.shape}")
    return points


def _finite_rows(points: np.ndarray, *extras: np.ndarray | None) -> tuple:
    """Drop rows with non-finite coordinates from points and the aligned per-point arrays."""
    keep = np.isfinite(points).all(axis=1)
    return (points[keep],) + tuple(None if e is None else np.asarray(e, dtype=np.float64)[keep] for e in extras)


def _to_open3d(points: np.ndarray, normals: np.ndarray | None = None, colors: np.ndarray | None = None):
    import open3d as o3d

    cloud = o3d.geometry.PointCloud(o3d.utility.Vector3dVector(points))
    if normals is not None:
        cloud.normals = o3d.utility.Vector3dVector(normals)
    if colors is not None:
        cloud.colors = o3d.utility.Vector3dVector(np.clip(colors, 0.0, 1.0))
    return cloud


def _to_trimesh(o3d_mesh, keep_colors: bool) -> trimesh.Trimesh:
    """Open3D mesh -> trimesh; Open3D may attach black vertex colours to meshes of uncoloured
    clouds, so colours are copied only when the input had them."""
    vertices = np.asarray(o3d_mesh.vertices, dtype=np.float64)
    faces = np.asarray(o3d_mesh.triangles, dtype=np.int64)
    colors = None
    if keep_colors and o3d_mesh.has_vertex_colors():
        colors = np.round(np.clip(np.asarray(o3d_mesh.vertex_colors), 0, 1) * 255).astype(np.uint8)
    mesh = trimesh.Trimesh(vertices=vertices, faces=faces, vertex_colors=colors, process=False)
    mesh.remove_unreferenced_vertices()
    return mesh


def estimate_oriented_normals(points: np.ndarray, k: int = 30, orient: str = "tangent_plane",
                              radius: float | None = None, camera_location: np.ndarray | None = None,
                              direction: np.ndarray | None = None) -> np.ndarray:
    """Unit normals (N, 3) from local PCA, with a consistent orientation.

    ``radius``: hybrid radius/KNN search (else ``k`` nearest neighbours).
    ``orient``: 'tangent_plane' (propagate along a Riemannian graph, then flip all to point away
    from the centroid on average), 'camera' (towards ``camera_location``, e.g. the sensor),
    'direction' (aligned with ``direction``) or 'none'. Non-finite points get NaN normals.
    """
    import open3d as o3d

    points = _clean_points(points)
    finite = np.isfinite(points).all(axis=1)
    valid_points = points[finite]
    if len(valid_points) < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} finite points to estimate normals, got {len(valid_points)}")
    k = int(min(k, len(valid_points) - 1))
    cloud = _to_open3d(valid_points)
    search = (o3d.geometry.KDTreeSearchParamHybrid(radius=radius, max_nn=k) if radius
              else o3d.geometry.KDTreeSearchParamKNN(knn=k))
    cloud.estimate_normals(search_param=search)

    if orient == "tangent_plane":
        try:
            cloud.orient_normals_consistent_tangent_plane(k)
        except RuntimeError:
            pass  # e.g. a disconnected neighbourhood graph: keep the PCA signs
        normals = np.asarray(cloud.normals)
        outward = np.einsum("ij,ij->i", normals, valid_points - valid_points.mean(axis=0))
        if outward.sum() < 0:
            cloud.normals = o3d.utility.Vector3dVector(-normals)
    elif orient == "camera":
        if camera_location is None:
            raise ValueError("orient='camera' needs camera_location")
        cloud.orient_normals_towards_camera_location(np.asarray(camera_location, dtype=np.float64))
    elif orient == "direction":
        if direction is None:
            raise ValueError("orient='direction' needs direction")
        cloud.orient_normals_to_align_with_direction(np.asarray(direction, dtype=np.float64))
    elif orient != "none":
        raise ValueError(f"unknown orient {orient!r}; use 'tangent_plane', 'camera', 'direction' or 'none'")

    normals = np.full(points.shape, np.nan)
    normals[finite] = np.asarray(cloud.normals)
    return normals


def screened_poisson(points: np.ndarray, depth: int = 9, density_quantile: float = 0.02,
                     normals: np.ndarray | None = None, colors: np.ndarray | None = None, k: int = 30,
                     scale: float = 1.1, crop_margin: float = 0.02, linear_fit: bool = False) -> trimesh.Trimesh:
    """Screened Poisson surface reconstruction (Kazhdan & Hoppe) via Open3D.

    Normals are estimated and oriented (``estimate_oriented_normals``) when not given. Vertices
    whose Poisson density (number of supporting samples) is below the ``density_quantile``
    quantile are removed, which trims the balloon-like surface Poisson invents where there is no
    data; the result is cropped to the input's bounding box grown by ``crop_margin`` of its size.
    """
    import open3d as o3d

    points, normals, colors = _finite_rows(_clean_points(points), normals, colors)
    if len(points) < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} finite points for Poisson reconstruction, got {len(points)}")
    if normals is None:
        normals = estimate_oriented_normals(points, k=k)
    cloud = _to_open3d(points, normals, colors)
    mesh, densities = o3d.geometry.TriangleMesh.create_from_point_cloud_poisson(
        cloud, depth=int(depth), width=0, scale=float(scale), linear_fit=bool(linear_fit))
    densities = np.asarray(densities)
    if density_quantile > 0 and densities.size:
        mesh.remove_vertices_by_mask(densities < np.quantile(densities, density_quantile))
    low, high = points.min(axis=0), points.max(axis=0)
    margin = crop_margin * (high - low).max()
    mesh = mesh.crop(o3d.geometry.AxisAlignedBoundingBox(low - margin, high + margin))
    return _to_trimesh(mesh, keep_colors=colors is not None)


def poisson_depth_for(points: np.ndarray, cell: float, scale: float = 1.1) -> int:
    """The octree depth whose finest cell is at most `cell` metres on these points: Open3D's Poisson spans the
    largest edge of their bounding box times `scale` with 2^depth cells (a fair match for a mesh on a `cell`
    grid, where a fixed depth would be coarse on a large map and needlessly fine on a small one)."""
    points = _finite_rows(_clean_points(points))[0]
    extent = float(np.ptp(points, axis=0).max()) * scale if len(points) else 0.0
    return int(np.clip(np.ceil(np.log2(max(extent / cell, 2.0)) - 1e-9), 1, 16))


def trimmed_to_points(mesh: trimesh.Trimesh, points: np.ndarray, distance: float) -> trimesh.Trimesh:
    """The mesh without its faces whose centre lies farther than `distance` from every point (the trim our own
    meshes get), and without the vertices no face uses."""
    from scipy.spatial import cKDTree

    from .meshing import near_points

    if len(mesh.faces) == 0:
        return mesh
    keep = near_points(cKDTree(_finite_rows(_clean_points(points))[0]), distance)(mesh.triangles_center)
    trimmed = mesh.copy()
    trimmed.update_faces(keep)
    trimmed.remove_unreferenced_vertices()
    return trimmed


def mean_point_spacing(points: np.ndarray) -> float:
    """Mean distance from each point to its nearest neighbour."""
    from scipy.spatial import cKDTree

    points = _finite_rows(_clean_points(points))[0]
    if len(points) < 2:
        raise ValueError("need at least 2 finite points to measure their spacing")
    distances, _ = cKDTree(points).query(points, k=2, workers=-1)
    return float(distances[:, 1].mean())


def ball_pivoting(points: np.ndarray, radii: np.ndarray | None = None, normals: np.ndarray | None = None,
                  colors: np.ndarray | None = None, k: int = 30) -> trimesh.Trimesh:
    """Ball-pivoting surface reconstruction (Bernardini et al.) via Open3D.

    ``radii`` default to 1.5, 3 and 6 times the mean nearest-neighbour spacing: the smallest ball
    follows detail, the larger ones bridge sparser regions. Normals are estimated when not given.
    """
    import open3d as o3d

    points, normals, colors = _finite_rows(_clean_points(points), normals, colors)
    if len(points) < MIN_POINTS:
        raise ValueError(f"need at least {MIN_POINTS} finite points for ball pivoting, got {len(points)}")
    if radii is None:
        radii = mean_point_spacing(points) * np.array([1.5, 3.0, 6.0])
    if normals is None:
        normals = estimate_oriented_normals(points, k=k)
    cloud = _to_open3d(points, normals, colors)
    mesh = o3d.geometry.TriangleMesh.create_from_point_cloud_ball_pivoting(
        cloud, o3d.utility.DoubleVector([float(r) for r in np.atleast_1d(radii)]))
    return _to_trimesh(mesh, keep_colors=colors is not None)
