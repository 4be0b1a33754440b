"""Procedural indoor scenes with exact, analytic occupancy.

A scene is a union of solid primitives (boxes, cylinders, spheres, capsules, cones, tori), each
placed by a rigid transform. Because every primitive has a closed-form inside test and signed
distance, the scene gives exact ground truth for occupancy, surface samples and normals, while
`Scene.mesh()` provides a finely tessellated triangle mesh for ray casting and rendering.

Units are metres, z points up, and the floor's top face is the plane z = 0.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import trimesh

# Tessellation tolerance of `Scene.mesh()`: the largest gap between a curved analytic surface and
# its inscribed triangle mesh. Well below the sensor noise of the simulated scans.
MESH_TOLERANCE = 0.001


# --------------------------------------------------------------------------------------------
# Rotations
# --------------------------------------------------------------------------------------------

def yaw_rotation(yaw: float) -> np.ndarray:
    """Rotation matrix about +z by `yaw` radians."""
    c, s = np.cos(yaw), np.sin(yaw)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def rotation_from_z(direction) -> np.ndarray:
    """Rotation matrix that maps the local +z axis onto `direction` (normalised here)."""
    target = np.asarray(direction, dtype=float)
    target = target / np.linalg.norm(target)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(z, target)
    sin_angle, cos_angle = np.linalg.norm(axis), float(np.dot(z, target))
    if sin_angle < 1e-12:
        return np.eye(3) if cos_angle > 0 else np.diag([1.0, -1.0, -1.0])
    axis /= sin_angle
    skew = np.array([[0.0, -axis[2], axis[1]], [axis[2], 0.0, -axis[0]], [-axis[1], axis[0], 0.0]])
    # Rodrigues' formula.
    return np.eye(3) + sin_angle * skew + (1.0 - cos_angle) * skew @ skew


# --------------------------------------------------------------------------------------------
# Primitives
# --------------------------------------------------------------------------------------------

def _sections_for_radius(radius: float) -> int:
    """Polygon sections so that a circle of `radius` deviates less than MESH_TOLERANCE."""
    # Sagitta of a chord: r * (1 - cos(pi / s)) ~= r * pi^2 / (2 s^2).
    sections = np.pi * np.sqrt(radius / (2.0 * MESH_TOLERANCE))
    return int(np.clip(np.ceil(sections), 12, 96))


def _segment_distance_2d(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from 2D points `q` (N,2) to the segment a-b."""
    ab = b - a
    t = np.clip(((q - a) @ ab) / (ab @ ab), 0.0, 1.0)
    return np.linalg.norm(q - (a + t[:, None] * ab), axis=1)


@dataclass(frozen=True, kw_only=True, eq=False)
class Primitive:
    """A solid in its local frame, placed by `world = rotation @ local + center`.

    Subclasses implement the local-frame geometry; this base class handles the rigid transform,
    so `contains`, `sdf`, `sample_surface` and `mesh` all work in world coordinates.
    """

    center: np.ndarray = field(default_factory=lambda: np.zeros(3))
    rotation: np.ndarray = field(default_factory=lambda: np.eye(3))
    label: str = ""

    def __post_init__(self):
        object.__setattr__(self, "center", np.asarray(self.center, dtype=float).reshape(3))
        object.__setattr__(self, "rotation", np.asarray(self.rotation, dtype=float).reshape(3, 3))

    # --- local geometry, implemented by subclasses ---
    def local_contains(self, q: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def local_sdf(self, q: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def local_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def local_mesh(self) -> trimesh.Trimesh:
        raise NotImplementedError

    def local_surface_samples(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    @property
    def area(self) -> float:
        raise NotImplementedError

    # --- world-frame interface ---
    def to_local(self, points: np.ndarray) -> np.ndarray:
        return (np.asarray(points, dtype=float) - self.center) @ self.rotation

    def contains(self, points: np.ndarray) -> np.ndarray:
        """Strict inside test, (N,) bool."""
        return self.local_contains(self.to_local(points))

    def sdf(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (negative inside), (N,)."""
        return self.local_sdf(self.to_local(points))

    @property
    def aabb(self) -> tuple[np.ndarray, np.ndarray]:
        """World axis-aligned box that encloses the primitive (tight for axis-aligned shapes)."""
        lo, hi = self.local_bounds()
        # Interval arithmetic: |R| maps the local half-extents onto world half-extents.
        local_center, local_half = (lo + hi) / 2.0, (hi - lo) / 2.0
        center = self.rotation @ local_center + self.center
        half = np.abs(self.rotation) @ local_half
        return center - half, center + half

    def sample_surface(self, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """`n` points uniformly distributed on the surface, with outward unit normals."""
        points, normals = self.local_surface_samples(n, rng)
        return points @ self.rotation.T + self.center, normals @ self.rotation.T

    def mesh(self) -> trimesh.Trimesh:
        transform = np.eye(4)
        transform[:3, :3], transform[:3, 3] = self.rotation, self.center
        return self.local_mesh().apply_transform(transform)

    def transformed(self, rotation: np.ndarray, translation) -> "Primitive":
        """The same primitive moved by the rigid transform (rotation, translation)."""
        return dataclasses.replace(
            self,
            center=rotation @ self.center + np.asarray(translation, dtype=float),
            rotation=rotation @ self.rotation,
        )


@dataclass(frozen=True, kw_only=True, eq=False)
class Box(Primitive):
    half_extents: np.ndarray

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "half_extents", np.asarray(self.half_extents, dtype=float).reshape(3))

    def local_contains(self, q):
        return np.all(np.abs(q) < self.half_extents, axis=1)

    def local_sdf(self, q):
        d = np.abs(q) - self.half_extents
        outside = np.linalg.norm(np.maximum(d, 0.0), axis=1)
        return outside + np.minimum(d.max(axis=1), 0.0)

    def local_bounds(self):
        return -self.half_extents, self.half_extents.copy()

    def local_mesh(self):
        return trimesh.creation.box(extents=2.0 * self.half_extents)

    @property
    def face_areas(self) -> np.ndarray:
        """Areas of the faces normal to x, y, z (each axis has two such faces)."""
        hx, hy, hz = self.half_extents
        return 4.0 * np.array([hy * hz, hx * hz, hx * hy])

    @property
    def area(self):
        return float(2.0 * self.face_areas.sum())

    def local_surface_samples(self, n, rng):
        axis_probabilities = self.face_areas / self.face_areas.sum()
        axis = rng.choice(3, size=n, p=axis_probabilities)
        sign = rng.choice([-1.0, 1.0], size=n)
        points = rng.uniform(-1.0, 1.0, size=(n, 3)) * self.half_extents
        rows = np.arange(n)
        points[rows, axis] = sign * self.half_extents[axis]
        normals = np.zeros((n, 3))
        normals[rows, axis] = sign
        return points, normals


@dataclass(frozen=True, kw_only=True, eq=False)
class Sphere(Primitive):
    radius: float

    def local_contains(self, q):
        return np.einsum("ij,ij->i", q, q) < self.radius**2

    def local_sdf(self, q):
        return np.linalg.norm(q, axis=1) - self.radius

    def local_bounds(self):
        r = np.full(3, self.radius)
        return -r, r

    def local_mesh(self):
        # Icosphere sagitta shrinks about 4x per subdivision (~0.01 r at level 2).
        subdivisions = 2 if self.radius <= 0.1 else 3 if self.radius <= 0.4 else 4
        return trimesh.creation.icosphere(subdivisions=subdivisions, radius=self.radius)

    @property
    def area(self):
        return float(4.0 * np.pi * self.radius**2)

    def local_surface_samples(self, n, rng):
        normals = rng.normal(size=(n, 3))
        normals /= np.linalg.norm(normals, axis=1, keepdims=True)
        return self.radius * normals, normals


@dataclass(frozen=True, kw_only=True, eq=False)
class Cylinder(Primitive):
    """Solid cylinder along local z, centred on the origin; `height` is the full length."""

    radius: float
    height: float

    def local_contains(self, q):
        return (q[:, 0] ** 2 + q[:, 1] ** 2 < self.radius**2) & (np.abs(q[:, 2]) < self.height / 2.0)

    def local_sdf(self, q):
        d = np.stack([np.hypot(q[:, 0], q[:, 1]) - self.radius, np.abs(q[:, 2]) - self.height / 2.0], axis=1)
        return np.linalg.norm(np.maximum(d, 0.0), axis=1) + np.minimum(d.max(axis=1), 0.0)

    def local_bounds(self):
        half = np.array([self.radius, self.radius, self.height / 2.0])
        return -half, half

    def local_mesh(self):
        return trimesh.creation.cylinder(
            radius=self.radius, height=self.height, sections=_sections_for_radius(self.radius)
        )

    @property
    def part_areas(self) -> np.ndarray:
        """Areas of side, top cap, bottom cap."""
        cap = np.pi * self.radius**2
        return np.array([2.0 * np.pi * self.radius * self.height, cap, cap])

    @property
    def area(self):
        return float(self.part_areas.sum())

    def local_surface_samples(self, n, rng):
        part = rng.choice(3, size=n, p=self.part_areas / self.area)
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        direction = np.stack([np.cos(angle), np.sin(angle), np.zeros(n)], axis=1)
        # Side: full radius, uniform height. Caps: sqrt makes the disc density uniform.
        radial = np.where(part == 0, self.radius, self.radius * np.sqrt(rng.uniform(size=n)))
        cap_sign = np.where(part == 1, 1.0, -1.0)
        z = np.where(part == 0, rng.uniform(-0.5, 0.5, size=n) * self.height, cap_sign * self.height / 2.0)
        points = direction * radial[:, None]
        points[:, 2] = z
        normals = np.where((part == 0)[:, None], direction, np.outer(cap_sign, [0.0, 0.0, 1.0]))
        return points, normals


@dataclass(frozen=True, kw_only=True, eq=False)
class Capsule(Primitive):
    """Cylinder of length `height` along local z with hemispherical ends (total height + 2 radius)."""

    radius: float
    height: float

    def _offset_from_axis(self, q):
        closest_z = np.clip(q[:, 2], -self.height / 2.0, self.height / 2.0)
        offset = q.copy()
        offset[:, 2] -= closest_z
        return offset

    def local_contains(self, q):
        offset = self._offset_from_axis(q)
        return np.einsum("ij,ij->i", offset, offset) < self.radius**2

    def local_sdf(self, q):
        return np.linalg.norm(self._offset_from_axis(q), axis=1) - self.radius

    def local_bounds(self):
        half = np.array([self.radius, self.radius, self.height / 2.0 + self.radius])
        return -half, half

    def local_mesh(self):
        sections = _sections_for_radius(self.radius)
        return trimesh.creation.capsule(height=self.height, radius=self.radius, count=[sections, sections])

    @property
    def area(self):
        return float(2.0 * np.pi * self.radius * self.height + 4.0 * np.pi * self.radius**2)

    def local_surface_samples(self, n, rng):
        side_area = 2.0 * np.pi * self.radius * self.height
        on_side = rng.uniform(size=n) < side_area / self.area
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        side_normals = np.stack([np.cos(angle), np.sin(angle), np.zeros(n)], axis=1)
        cap_normals = rng.normal(size=(n, 3))
        cap_normals /= np.linalg.norm(cap_normals, axis=1, keepdims=True)
        normals = np.where(on_side[:, None], side_normals, cap_normals)
        # The end caps are the two halves of one sphere, shifted to the matching end.
        axis_z = np.where(on_side, rng.uniform(-0.5, 0.5, size=n) * self.height,
                          np.sign(cap_normals[:, 2]) * self.height / 2.0)
        points = self.radius * normals
        points[:, 2] += axis_z
        return points, normals


@dataclass(frozen=True, kw_only=True, eq=False)
class Cone(Primitive):
    """Solid cone with its base disc (radius `radius`) at local z = 0 and its apex at z = `height`."""

    radius: float
    height: float

    def _profile(self, q):
        """Coordinates in the half-plane (distance from axis, z), where the cone is a triangle."""
        return np.stack([np.hypot(q[:, 0], q[:, 1]), q[:, 2]], axis=1)

    def local_contains(self, q):
        rho, z = self._profile(q).T
        return (z > 0.0) & (rho / self.radius + z / self.height < 1.0)

    def local_sdf(self, q):
        profile = self._profile(q)
        base_corner, rim, apex = np.zeros(2), np.array([self.radius, 0.0]), np.array([0.0, self.height])
        # The axis is not part of the boundary of the solid of revolution, only base and slant are.
        distance = np.minimum(
            _segment_distance_2d(profile, base_corner, rim), _segment_distance_2d(profile, rim, apex)
        )
        return np.where(self.local_contains(q), -distance, distance)

    def local_bounds(self):
        return np.array([-self.radius, -self.radius, 0.0]), np.array([self.radius, self.radius, self.height])

    def local_mesh(self):
        return trimesh.creation.cone(radius=self.radius, height=self.height,
                                     sections=_sections_for_radius(self.radius))

    @property
    def slant_length(self) -> float:
        return float(np.hypot(self.radius, self.height))

    @property
    def area(self):
        return float(np.pi * self.radius * (self.slant_length + self.radius))

    def local_surface_samples(self, n, rng):
        lateral_area = np.pi * self.radius * self.slant_length
        on_slant = rng.uniform(size=n) < lateral_area / self.area
        angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        cos_a, sin_a = np.cos(angle), np.sin(angle)
        # Both the lateral surface (unrolled sector around the apex) and the base disc have an
        # area density that grows linearly with the radius, hence the sqrt.
        fraction = np.sqrt(rng.uniform(size=n))
        rho = self.radius * fraction
        z = np.where(on_slant, self.height * (1.0 - fraction), 0.0)
        points = np.stack([rho * cos_a, rho * sin_a, z], axis=1)
        slant_normals = np.stack(
            [cos_a * self.height, sin_a * self.height, np.full(n, self.radius)], axis=1
        ) / self.slant_length
        normals = np.where(on_slant[:, None], slant_normals, [0.0, 0.0, -1.0])
        return points, normals


@dataclass(frozen=True, kw_only=True, eq=False)
class Torus(Primitive):
    """Ring in the local xy-plane: tube radius `minor_radius` around a circle of `major_radius`."""

    major_radius: float
    minor_radius: float

    def _tube_offset(self, q):
        return np.stack([np.hypot(q[:, 0], q[:, 1]) - self.major_radius, q[:, 2]], axis=1)

    def local_contains(self, q):
        offset = self._tube_offset(q)
        return np.einsum("ij,ij->i", offset, offset) < self.minor_radius**2

    def local_sdf(self, q):
        return np.linalg.norm(self._tube_offset(q), axis=1) - self.minor_radius

    def local_bounds(self):
        outer = self.major_radius + self.minor_radius
        half = np.array([outer, outer, self.minor_radius])
        return -half, half

    def local_mesh(self):
        return trimesh.creation.torus(
            major_radius=self.major_radius,
            minor_radius=self.minor_radius,
            major_sections=_sections_for_radius(self.major_radius + self.minor_radius),
            minor_sections=_sections_for_radius(self.minor_radius),
        )

    @property
    def area(self):
        return float(4.0 * np.pi**2 * self.major_radius * self.minor_radius)

    def local_surface_samples(self, n, rng):
        # The area element is proportional to (R + r cos(tube_angle)): rejection-sample that angle.
        tube_angles = np.empty(0)
        while tube_angles.size < n:
            candidates = rng.uniform(0.0, 2.0 * np.pi, size=2 * n)
            weight = (self.major_radius + self.minor_radius * np.cos(candidates)) / (
                self.major_radius + self.minor_radius)
            tube_angles = np.concatenate([tube_angles, candidates[rng.uniform(size=2 * n) < weight]])
        tube_angle = tube_angles[:n]
        ring_angle = rng.uniform(0.0, 2.0 * np.pi, size=n)
        normals = np.stack([np.cos(tube_angle) * np.cos(ring_angle), np.cos(tube_angle) * np.sin(ring_angle),
                            np.sin(tube_angle)], axis=1)
        ring = np.stack([np.cos(ring_angle), np.sin(ring_angle), np.zeros(n)], axis=1) * self.major_radius
        return ring + self.minor_radius * normals, normals


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
    _mesh_cache: trimesh.Trimesh | None = field(default=None, init=False, repr=False)

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

    def mesh(self) -> trimesh.Trimesh:
        """All primitive meshes concatenated (overlapping, not a boolean union); cached."""
        if self._mesh_cache is None:
            self._mesh_cache = trimesh.util.concatenate([p.mesh() for p in self.primitives])
        return self._mesh_cache

    def sample_surface(self, n: int, seed: int = 0, epsilon: float = 1e-4) -> tuple[np.ndarray, np.ndarray]:
        """`n` points uniformly distributed on the union's boundary, with outward unit normals.

        Samples are drawn on every primitive's analytic surface (area-weighted) and kept only
        where the scene is free just outside the surface (at `epsilon` along the normal), which
        removes samples buried in, or covered by, other primitives.
        """
        rng = np.random.default_rng(seed)
        areas = np.array([p.area for p in self.primitives])
        kept_points, kept_normals, kept_count = [], [], 0
        acceptance = 1.0
        while kept_count < n:
            draw = int(np.ceil((n - kept_count) / acceptance * 1.2)) + 16
            per_primitive = rng.multinomial(draw, areas / areas.sum())
            samples = [p.sample_surface(k, rng) for p, k in zip(self.primitives, per_primitive) if k > 0]
            points = np.concatenate([s[0] for s in samples])
            normals = np.concatenate([s[1] for s in samples])
            keep = ~self.occupancy(points + epsilon * normals)
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


# --------------------------------------------------------------------------------------------
# Procedural rooms
# --------------------------------------------------------------------------------------------

@dataclass
class RoomConfig:
    """Ranges for `generate_room`. Lengths in metres, counts as inclusive (min, max).

    The interior is centred on the origin with x in [-length/2, length/2] and y in
    [-width/2, width/2]; walls stand outside that footprint and the floor's top is z = 0.
    The ceiling is off by default: mobile robots' depth cameras rarely see it, and an open top
    keeps renderings and occupancy slices of the room easy to inspect.
    """

    length_range: tuple[float, float] = (3.0, 7.0)  # interior size along x
    width_range: tuple[float, float] = (3.0, 6.0)  # interior size along y
    height_range: tuple[float, float] = (2.3, 3.0)
    wall_thickness_range: tuple[float, float] = (0.08, 0.2)
    floor_thickness: float = 0.1
    ceiling: bool = False
    ceiling_thickness: float = 0.1
    open_probability: float = 0.3  # chance that one or two walls are missing
    door_probability: float = 0.6  # chance that one of the remaining walls has a doorway
    door_width_range: tuple[float, float] = (0.8, 1.0)
    door_height_range: tuple[float, float] = (2.0, 2.1)
    table_count: tuple[int, int] = (1, 2)
    chair_count: tuple[int, int] = (0, 6)
    shelf_count: tuple[int, int] = (0, 3)
    sofa_count: tuple[int, int] = (0, 1)
    lamp_count: tuple[int, int] = (0, 2)
    clutter_count: tuple[int, int] = (4, 12)
    gap: float = 0.03  # clearance that furniture keeps from walls and from other furniture
    placement_tries: int = 40


@dataclass
class _Footprint:
    """Oriented rectangle on a support plane: centre (x, y), half sizes, yaw."""

    center: np.ndarray
    half_size: np.ndarray
    yaw: float

    def axes(self) -> np.ndarray:
        c, s = np.cos(self.yaw), np.sin(self.yaw)
        return np.array([[c, s], [-s, c]])

    def corners(self) -> np.ndarray:
        signs = np.array([[1, 1], [1, -1], [-1, 1], [-1, -1]], dtype=float)
        return self.center + (signs * self.half_size) @ self.axes()

    def overlaps(self, other: "_Footprint", gap: float) -> bool:
        """Separating-axis test between two oriented rectangles, inflated by `gap`."""
        offset = other.center - self.center
        for axis in np.concatenate([self.axes(), other.axes()]):
            self_extent = np.abs(self.axes() @ axis) @ self.half_size
            other_extent = np.abs(other.axes() @ axis) @ other.half_size
            if abs(offset @ axis) > self_extent + other_extent + gap:
                return False
        return True


@dataclass
class _Support:
    """A horizontal surface that can carry clutter (the floor, a table top, a cabinet top)."""

    area: _Footprint
    height: float
    occupied: list[_Footprint] = field(default_factory=list)

    def fits(self, footprint: _Footprint, gap: float) -> bool:
        local = (footprint.corners() - self.area.center) @ self.area.axes().T
        inside = np.all(np.abs(local) <= self.area.half_size - gap)
        return bool(inside) and not any(footprint.overlaps(o, gap) for o in self.occupied)


@dataclass
class _Part:
    """A furniture piece or clutter object built in its own frame (footprint centred, base z=0)."""

    primitives: list[Primitive]
    top_height: float | None = None  # height of a flat top that can carry clutter, if any

    def half_size(self) -> np.ndarray:
        boxes = np.array([p.aabb for p in self.primitives])
        lo, hi = boxes[:, 0, :2].min(axis=0), boxes[:, 1, :2].max(axis=0)
        return np.maximum(np.abs(lo), np.abs(hi))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(*bounds))


def _box_from_corners(lo, hi, label: str) -> Box:
    lo, hi = np.asarray(lo, float), np.asarray(hi, float)
    return Box(center=(lo + hi) / 2.0, half_extents=(hi - lo) / 2.0, label=label)


def _legs(rng, half_x: float, half_y: float, leg_height: float, label: str) -> list[Primitive]:
    """Four legs, 3-5 cm thick, inset at the corners of a (half_x, half_y) rectangle."""
    thickness = _uniform(rng, (0.03, 0.05))
    inset = thickness / 2.0 + _uniform(rng, (0.0, 0.05))
    round_legs = rng.uniform() < 0.5
    legs = []
    for sx in (-1.0, 1.0):
        for sy in (-1.0, 1.0):
            center = (sx * (half_x - inset), sy * (half_y - inset), leg_height / 2.0)
            if round_legs:
                legs.append(Cylinder(center=center, radius=thickness / 2.0, height=leg_height, label=label))
            else:
                legs.append(Box(center=center, half_extents=(thickness / 2.0, thickness / 2.0, leg_height / 2.0),
                                label=label))
    return legs


def _make_table(rng) -> _Part:
    half_x, half_y = _uniform(rng, (0.4, 0.9)), _uniform(rng, (0.3, 0.5))
    height, top_thickness = _uniform(rng, (0.7, 0.78)), _uniform(rng, (0.03, 0.04))
    top = _box_from_corners((-half_x, -half_y, height - top_thickness), (half_x, half_y, height), "table")
    return _Part([top, *_legs(rng, half_x, half_y, height - top_thickness, "table")], top_height=height)


def _make_chair(rng) -> _Part:
    """Chair facing +y: seat on four legs, backrest along the -y edge."""
    half = _uniform(rng, (0.2, 0.25))
    seat_height, seat_thickness = _uniform(rng, (0.42, 0.48)), _uniform(rng, (0.03, 0.05))
    back_height, back_thickness = _uniform(rng, (0.35, 0.5)), _uniform(rng, (0.03, 0.05))
    seat = _box_from_corners((-half, -half, seat_height - seat_thickness), (half, half, seat_height), "chair")
    back = _box_from_corners((-half, -half, seat_height), (half, -half + back_thickness, seat_height + back_height),
                             "chair")
    return _Part([seat, back, *_legs(rng, half, half, seat_height - seat_thickness, "chair")])


def _make_shelf(rng) -> _Part:
    """Closed cabinet or open bookshelf, back along -y (meant to stand against a wall)."""
    half_x, half_y, height = _uniform(rng, (0.3, 0.8)), _uniform(rng, (0.15, 0.25)), _uniform(rng, (0.8, 2.0))
    if rng.uniform() < 0.4:
        body = _box_from_corners((-half_x, -half_y, 0.0), (half_x, half_y, height), "cabinet")
        return _Part([body], top_height=height if height < 1.3 else None)
    board = _uniform(rng, (0.018, 0.03))
    back = _uniform(rng, (0.01, 0.02))
    parts = [
        _box_from_corners((-half_x, -half_y, 0.0), (-half_x + board, half_y, height), "shelf"),
        _box_from_corners((half_x - board, -half_y, 0.0), (half_x, half_y, height), "shelf"),
        _box_from_corners((-half_x, -half_y, 0.0), (half_x, -half_y + back, height), "shelf"),
    ]
    board_count = int(rng.integers(2, 6))
    for z in np.linspace(0.05, height - board, board_count):
        parts.append(_box_from_corners((-half_x + board, -half_y + back, z), (half_x - board, half_y, z + board),
                                       "shelf"))
    return _Part(parts, top_height=height if height < 1.3 else None)


def _make_sofa(rng) -> _Part:
    """Sofa facing +y: seat block, backrest along -y, an armrest at each end."""
    half_x, half_y = _uniform(rng, (0.8, 1.2)), _uniform(rng, (0.4, 0.5))
    seat_height, back_height = _uniform(rng, (0.4, 0.45)), _uniform(rng, (0.75, 0.9))
    back_depth, arm_width, arm_height = _uniform(rng, (0.15, 0.25)), _uniform(rng, (0.15, 0.25)), _uniform(
        rng, (0.55, 0.65))
    parts = [
        _box_from_corners((-half_x, -half_y, 0.0), (half_x, half_y, seat_height), "sofa"),
        _box_from_corners((-half_x, -half_y, 0.0), (half_x, -half_y + back_depth, back_height), "sofa"),
        _box_from_corners((-half_x, -half_y, 0.0), (-half_x + arm_width, half_y, arm_height), "sofa"),
        _box_from_corners((half_x - arm_width, -half_y, 0.0), (half_x, half_y, arm_height), "sofa"),
    ]
    if rng.uniform() < 0.5:  # a bolster cushion lying along the backrest
        radius = _uniform(rng, (0.08, 0.12))
        parts.append(Capsule(center=(0.0, -half_y + back_depth + radius, seat_height + radius), radius=radius,
                             height=2.0 * (half_x - arm_width - radius) - 0.02,
                             rotation=rotation_from_z([1.0, 0.0, 0.0]), label="sofa"))
    return _Part(parts)


def _make_lamp(rng) -> _Part:
    """Floor lamp: base disc, thin pole, and a cone or sphere shade."""
    base_radius, base_height = _uniform(rng, (0.12, 0.18)), _uniform(rng, (0.02, 0.04))
    pole_radius, pole_height = _uniform(rng, (0.012, 0.02)), _uniform(rng, (1.3, 1.7))
    parts = [
        Cylinder(center=(0.0, 0.0, base_height / 2.0), radius=base_radius, height=base_height, label="lamp"),
        Cylinder(center=(0.0, 0.0, base_height + pole_height / 2.0), radius=pole_radius, height=pole_height,
                 label="lamp"),
    ]
    top = base_height + pole_height
    if rng.uniform() < 0.6:
        shade_radius, shade_height = _uniform(rng, (0.15, 0.25)), _uniform(rng, (0.2, 0.3))
        parts.append(Cone(center=(0.0, 0.0, top - 0.4 * shade_height), radius=shade_radius, height=shade_height,
                          label="lamp"))
    else:
        parts.append(Sphere(center=(0.0, 0.0, top), radius=_uniform(rng, (0.12, 0.2)), label="lamp"))
    return _Part(parts)


def _make_clutter(rng, scale: float) -> _Part:
    """A small object resting on z = 0: sphere, torus, capsule, cone, box or cylinder."""
    kind = rng.choice(["sphere", "torus", "capsule", "cone", "box", "cylinder"])
    s = scale
    if kind == "sphere":
        r = _uniform(rng, (0.04, 0.12)) * s
        return _Part([Sphere(center=(0, 0, r), radius=r, label="clutter")])
    if kind == "torus":
        major, minor = _uniform(rng, (0.06, 0.14)) * s, _uniform(rng, (0.015, 0.04)) * s
        if rng.uniform() < 0.7:  # lying flat
            return _Part([Torus(center=(0, 0, minor), major_radius=major, minor_radius=minor, label="clutter")])
        upright = rotation_from_z([0.0, 1.0, 0.0])
        return _Part([Torus(center=(0, 0, major + minor), major_radius=major, minor_radius=minor,
                            rotation=upright, label="clutter")])
    if kind == "capsule":
        r, h = _uniform(rng, (0.03, 0.07)) * s, _uniform(rng, (0.1, 0.3)) * s
        if rng.uniform() < 0.6:  # lying along x
            return _Part([Capsule(center=(0, 0, r), radius=r, height=h, rotation=rotation_from_z([1.0, 0.0, 0.0]),
                                  label="clutter")])
        return _Part([Capsule(center=(0, 0, h / 2.0 + r), radius=r, height=h, label="clutter")])
    if kind == "cone":
        return _Part([Cone(radius=_uniform(rng, (0.05, 0.15)) * s, height=_uniform(rng, (0.1, 0.35)) * s,
                           label="clutter")])
    if kind == "box":
        half = rng.uniform(0.03, 0.15, size=3) * s
        return _Part([Box(center=(0, 0, half[2]), half_extents=half, label="clutter")])
    r, h = _uniform(rng, (0.03, 0.1)) * s, _uniform(rng, (0.08, 0.3)) * s
    return _Part([Cylinder(center=(0, 0, h / 2.0), radius=r, height=h, label="clutter")])


def _wall_boxes(axis: int, side: float, length: float, width: float, height: float, thickness: float,
                floor_thickness: float, door: tuple[float, float, float] | None) -> list[Box]:
    """Boxes of the wall on side `side` (+1/-1) of the interior along `axis` (0: x walls, 1: y walls).

    The wall spans the interior edge plus both corners; `door` = (centre along the wall, width,
    height) cuts a doorway, leaving two wall pieces and a lintel.
    """
    half_run = (width if axis == 0 else length) / 2.0 + thickness  # along the wall, corners included
    offset = side * ((length if axis == 0 else width) / 2.0 + thickness / 2.0)
    bottom = -floor_thickness

    def piece(run_lo: float, run_hi: float, z_lo: float, z_hi: float) -> Box:
        lo, hi = np.zeros(3), np.zeros(3)
        lo[axis], hi[axis] = offset - thickness / 2.0, offset + thickness / 2.0
        lo[1 - axis], hi[1 - axis] = run_lo, run_hi
        lo[2], hi[2] = z_lo, z_hi
        return _box_from_corners(lo, hi, "wall")

    if door is None:
        return [piece(-half_run, half_run, bottom, height)]
    door_center, door_width, door_height = door
    pieces = [piece(-half_run, door_center - door_width / 2.0, bottom, height),
              piece(door_center + door_width / 2.0, half_run, bottom, height)]
    if door_height < height:
        pieces.append(piece(door_center - door_width / 2.0, door_center + door_width / 2.0, door_height, height))
    return pieces


def _place(part: _Part, footprint: _Footprint, base_height: float) -> list[Primitive]:
    rotation = yaw_rotation(footprint.yaw)
    translation = np.array([*footprint.center, base_height])
    return [p.transformed(rotation, translation) for p in part.primitives]


def generate_room(seed: int, config: RoomConfig | None = None) -> Scene:
    """A random furnished room; the same `seed` (and config) always gives the same scene."""
    config = config or RoomConfig()
    rng = np.random.default_rng(seed)
    length, width = _uniform(rng, config.length_range), _uniform(rng, config.width_range)
    height, thickness = _uniform(rng, config.height_range), _uniform(rng, config.wall_thickness_range)
    half_length, half_width = length / 2.0, width / 2.0

    # Shell: floor, walls (some missing or with a doorway), optional ceiling.
    outer = np.array([half_length + thickness, half_width + thickness])
    primitives: list[Primitive] = [
        _box_from_corners((-outer[0], -outer[1], -config.floor_thickness), (outer[0], outer[1], 0.0), "floor")]
    walls = [(0, -1.0), (0, 1.0), (1, -1.0), (1, 1.0)]  # (axis, side)
    if rng.uniform() < config.open_probability:
        missing = rng.choice(4, size=int(rng.integers(1, 3)), replace=False)
        walls = [w for i, w in enumerate(walls) if i not in missing]
    door_wall = int(rng.integers(len(walls))) if walls and rng.uniform() < config.door_probability else None
    for i, (axis, side) in enumerate(walls):
        door = None
        if i == door_wall:
            run = width if axis == 0 else length
            door_width = _uniform(rng, config.door_width_range)
            door_center = _uniform(rng, (-run / 2.0 + door_width / 2.0 + 0.1, run / 2.0 - door_width / 2.0 - 0.1))
            door = (door_center, door_width, min(_uniform(rng, config.door_height_range), height))
        primitives += _wall_boxes(axis, side, length, width, height, thickness, config.floor_thickness, door)
    if config.ceiling:
        primitives.append(_box_from_corners((-outer[0], -outer[1], height),
                                            (outer[0], outer[1], height + config.ceiling_thickness), "ceiling"))

    floor = _Support(_Footprint(np.zeros(2), np.array([half_length, half_width]), 0.0), 0.0)
    supports = [floor]

    def try_place(part: _Part, propose) -> bool:
        """Place `part` at the first proposed footprint that fits on the floor."""
        half_size = part.half_size()
        for _ in range(config.placement_tries):
            center, yaw = propose(half_size)
            footprint = _Footprint(np.asarray(center, float), half_size, yaw)
            if floor.fits(footprint, config.gap):
                floor.occupied.append(footprint)
                primitives.extend(_place(part, footprint, 0.0))
                if part.top_height is not None:
                    supports.append(_Support(footprint, part.top_height))
                return True
        return False

    def anywhere(half_size):
        margin = np.min(half_size)
        return (rng.uniform(-half_length + margin, half_length - margin),
                rng.uniform(-half_width + margin, half_width - margin)), rng.uniform(0.0, 2.0 * np.pi)

    def against_wall(half_size):
        # Back (local -y) towards a wall: yaw 0 -> south wall, pi -> north, pi/2 -> east, -pi/2 -> west.
        yaw = float(rng.choice([0.0, np.pi, np.pi / 2.0, -np.pi / 2.0]))
        depth = half_size[1] + config.gap + 1e-6
        if yaw in (0.0, np.pi):
            center = (rng.uniform(-half_length, half_length), (-half_width + depth) * (1.0 if yaw == 0.0 else -1.0))
        else:
            center = ((half_length - depth) * (1.0 if yaw > 0 else -1.0), rng.uniform(-half_width, half_width))
        return center, yaw

    def count(bounds: tuple[int, int]) -> int:
        return int(rng.integers(bounds[0], bounds[1] + 1))

    for _ in range(count(config.shelf_count)):
        try_place(_make_shelf(rng), against_wall)
    for _ in range(count(config.sofa_count)):
        try_place(_make_sofa(rng), against_wall if rng.uniform() < 0.5 else anywhere)
    tables = []
    for _ in range(count(config.table_count)):
        if try_place(_make_table(rng), anywhere):
            tables.append(floor.occupied[-1])
    for _ in range(count(config.chair_count)):
        def at_table(half_size):
            # Pulled out from a random table side, facing the table.
            if not tables or rng.uniform() < 0.3:
                return anywhere(half_size)
            table = tables[int(rng.integers(len(tables)))]
            side = int(rng.integers(4))
            normal = np.array([[1, 0], [-1, 0], [0, 1], [0, -1]][side], dtype=float)
            along = np.array([normal[1], -normal[0]])
            reach = table.half_size[0] if side < 2 else table.half_size[1]
            spread = table.half_size[1] if side < 2 else table.half_size[0]
            local = normal * (reach + half_size[1] + rng.uniform(0.05, 0.25)) + along * rng.uniform(-spread, spread)
            center = table.center + local @ table.axes()
            # The chair's front (+y) faces the table, i.e. along -normal in world.
            facing = -(normal @ table.axes())
            return center, float(np.arctan2(-facing[0], facing[1]))
        try_place(_make_chair(rng), at_table)
    for _ in range(count(config.lamp_count)):
        try_place(_make_lamp(rng), anywhere)

    for _ in range(count(config.clutter_count)):
        support = supports[int(rng.integers(len(supports)))]
        part = _make_clutter(rng, scale=1.5 if support is floor else 1.0)
        half_size = part.half_size()
        for _ in range(config.placement_tries):
            local = rng.uniform(-1.0, 1.0, size=2) * np.maximum(support.area.half_size - np.max(half_size), 0.0)
            footprint = _Footprint(support.area.center + local @ support.area.axes(), half_size,
                                   rng.uniform(0.0, 2.0 * np.pi))
            if support.fits(footprint, 0.01):
                support.occupied.append(footprint)
                primitives.extend(_place(part, footprint, support.height))
                break

    interior = (np.array([-half_length, -half_width, 0.0]), np.array([half_length, half_width, height]))
    return Scene(primitives, interior=interior)
