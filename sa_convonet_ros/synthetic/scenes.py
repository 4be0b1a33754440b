"""Scenes with exact, analytic occupancy: unions of solid primitives.

Because every primitive has a closed-form inside test and signed distance, a scene gives exact ground
truth for occupancy, surface samples and normals, while `Scene.mesh()` provides a finely tessellated
triangle mesh for ray casting and rendering. Procedural rooms are built in `rooms.py`.

Units are metres, z points up, and the floor's top face is the plane z = 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .primitives import Box, Capsule, Cone, Cylinder, Primitive, Sphere, Torus, rotation_from_z, yaw_rotation  # noqa: F401

# --------------------------------------------------------------------------------------------
# Scene: union of primitives
# --------------------------------------------------------------------------------------------

def _candidates_in_boxes(points: np.ndarray, x_order: np.ndarray, sorted_x: np.ndarray,
                         lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """Indices of `points` inside the axis-aligned box [lo, hi], using x-sorted points."""
    start, stop = np.searchsorted(sorted_x, lo[0], "left"), np.searchsorted(sorted_x, hi[0], "right")
    indices = x_order[start:stop]
    yz = points[indices, 1:]
    return indices[np.all((yz >= lo[1:]) & (yz <= hi[1:]), axis=1)]


@dataclass(eq=False)
class Scene:
    """A solid scene: the union of `primitives`.

    `interior` is the axis-aligned (min, max) box of the free room volume when the scene is a room
    (used to plan camera trajectories), or None for other scenes.
    """

    primitives: list[Primitive]
    interior: tuple[np.ndarray, np.ndarray] | None = None
    _mesh_cache: object = field(default=None, init=False, repr=False)  # trimesh.Trimesh

    @property
    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        """(min xyz, max xyz) enclosing every primitive."""
        boxes = np.array([p.aabb for p in self.primitives])
        return boxes[:, 0].min(axis=0), boxes[:, 1].max(axis=0)

    @property
    def labels(self) -> list[str]:
        return [p.label for p in self.primitives]

    def occupancy(self, points: np.ndarray) -> np.ndarray:
        """Exact inside test of the union, (N,) bool; boundary points count as outside."""
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        occupied = np.zeros(len(points), dtype=bool)
        # Sorting by x once turns each primitive's bounding-box cull into a binary search.
        x_order = np.argsort(points[:, 0], kind="stable")
        sorted_x = points[x_order, 0]
        for primitive in self.primitives:
            indices = _candidates_in_boxes(points, x_order, sorted_x, *primitive.aabb)
            indices = indices[~occupied[indices]]
            if indices.size:
                occupied[indices] = primitive.contains(points[indices])
        return occupied

    def sdf(self, points: np.ndarray, truncation: float | None = None) -> np.ndarray:
        """Signed distance to the union (negative inside), (N,).

        Exact outside; inside it is the min of the primitives' distances, whose magnitude can
        underestimate the depth where primitives overlap. With `truncation`, values are clipped
        to at most `truncation`, which lets far primitives be skipped (much faster).
        """
        points = np.asarray(points, dtype=float).reshape(-1, 3)
        if truncation is None:
            return np.min([p.sdf(points) for p in self.primitives], axis=0)
        distance = np.full(len(points), float(truncation))
        x_order = np.argsort(points[:, 0], kind="stable")
        sorted_x = points[x_order, 0]
        for primitive in self.primitives:
            lo, hi = primitive.aabb
            indices = _candidates_in_boxes(points, x_order, sorted_x, lo - truncation, hi + truncation)
            if indices.size:
                distance[indices] = np.minimum(distance[indices], primitive.sdf(points[indices]))
        return distance

    def surface_distance(self, points: np.ndarray) -> np.ndarray:
        """Unsigned distance (N,) to the union's boundary: exact outside, a lower bound inside where
        primitives overlap (see `sdf`). The exact accuracy metric of a reconstruction."""
        return np.abs(self.sdf(points))

    def mesh(self):
        """All primitive meshes concatenated (overlapping, not a boolean union) as a trimesh.Trimesh; cached."""
        import trimesh  # only meshes need it; the GPU data generator runs without it

        if self._mesh_cache is None:
            self._mesh_cache = trimesh.util.concatenate([p.mesh() for p in self.primitives])
        return self._mesh_cache

    def surface_area(self, samples: int = 200_000, seed: int = 0, epsilon: float = 1e-4) -> float:
        """The area (m^2) of the union's boundary, estimated as `sample_surface` draws: the primitives' areas
        times the share of their samples that lie on the boundary (within about 0.5 % at 200 k samples)."""
        _, _, on_boundary = self._area_weighted_samples(samples, np.random.default_rng(seed), epsilon)
        return float(sum(p.area for p in self.primitives) * on_boundary.mean())

    def _area_weighted_samples(self, count: int, rng: np.random.Generator,
                               epsilon: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """`count` samples of the primitives' surfaces (area-weighted), their outward normals, and which lie on
        the union's boundary (the scene is free just outside them, at `epsilon` along the normal)."""
        areas = np.array([p.area for p in self.primitives])
        per_primitive = rng.multinomial(count, areas / areas.sum())
        samples = [p.sample_surface(k, rng) for p, k in zip(self.primitives, per_primitive) if k > 0]
        points = np.concatenate([s[0] for s in samples])
        normals = np.concatenate([s[1] for s in samples])
        return points, normals, ~self.occupancy(points + epsilon * normals)

    def sample_surface(self, n: int, seed: int = 0, epsilon: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
        """`n` points uniformly distributed on the union's boundary, with outward unit normals.

        Samples are drawn on every primitive's analytic surface (area-weighted) and kept only
        where the scene is free just outside the surface (at `epsilon` along the normal), which
        removes samples buried in, or covered by, other primitives.
        """
        rng = np.random.default_rng(seed)
        kept_points, kept_normals, kept_count = [], [], 0
        acceptance = 1.0
        while kept_count < n:
            draw = int(np.ceil((n - kept_count) / acceptance * 1.2)) + 16
            points, normals, keep = self._area_weighted_samples(draw, rng, epsilon)
            acceptance = max(keep.mean(), 0.05)
            kept_points.append(points[keep])
            kept_normals.append(normals[keep])
            kept_count += int(keep.sum())
        points, normals = np.concatenate(kept_points), np.concatenate(kept_normals)
        # Shuffle so that truncating to n does not favour the first primitives.
        order = rng.permutation(len(points))[:n]
        return points[order], normals[order]


def sample_occupancy_queries(
    scene: Scene,
    n: int,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
    near_surface_fraction: float = 0.5,
    sigma: float = 0.02,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Training queries: uniform points in `bounds` plus surface samples with Gaussian noise.

    Returns (points (n,3) float32, occupancy (n,) bool). `bounds` defaults to the scene bounds.
    """
    rng = np.random.default_rng(seed)
    lo, hi = scene.bounds if bounds is None else (np.asarray(bounds[0], float), np.asarray(bounds[1], float))
    n_near = int(round(n * near_surface_fraction))
    uniform = rng.uniform(lo, hi, size=(n - n_near, 3))
    surface, _ = scene.sample_surface(n_near, seed=int(rng.integers(2**31)))
    near = surface + rng.normal(scale=sigma, size=surface.shape)
    points = np.concatenate([uniform, near])
    return points.astype(np.float32), scene.occupancy(points.astype(np.float32))


# --------------------------------------------------------------------------------------------
# Tiny hand-made scenes (tests, examples)
# --------------------------------------------------------------------------------------------

def make_box_scene(center=(0.0, 0.0, 0.0), half_extents=(0.5, 0.5, 0.5), yaw: float = 0.0) -> Scene:
    """A single (optionally yawed) box."""
    return Scene([Box(center=center, half_extents=half_extents, rotation=yaw_rotation(yaw), label="box")])


def make_crossing_planes_scene(size: float = 1.0, thickness: float = 0.05) -> Scene:
    """Two thin slabs crossing at right angles along the z axis (a '+' seen from above)."""
    half = (size / 2.0, thickness / 2.0, size / 2.0)
    return Scene([
        Box(half_extents=half, label="plane_a"),
        Box(half_extents=half, rotation=yaw_rotation(np.pi / 2.0), label="plane_b"),
    ])


def make_primitive_gallery_scene() -> Scene:
    """One primitive of each kind standing on a floor slab, some of them rotated."""
    tilted = rotation_from_z([1.0, 0.0, 1.0])
    return Scene([
        Box(center=(0.0, 0.0, -0.05), half_extents=(1.5, 1.0, 0.05), label="floor"),
        Box(center=(-1.0, -0.5, 0.2), half_extents=(0.2, 0.15, 0.2), rotation=yaw_rotation(0.4), label="box"),
        Sphere(center=(-0.3, -0.5, 0.2), radius=0.2, label="sphere"),
        Cylinder(center=(0.4, -0.5, 0.25), radius=0.15, height=0.5, label="cylinder"),
        Capsule(center=(1.0, -0.5, 0.3), radius=0.1, height=0.3, rotation=tilted, label="capsule"),
        Cone(center=(-0.8, 0.5, 0.0), radius=0.2, height=0.5, label="cone"),
        Torus(center=(0.2, 0.5, 0.06), major_radius=0.25, minor_radius=0.06, label="torus"),
    ])
