"""Solid primitives with exact inside tests, signed distances, surface samples and meshes.

Boxes, spheres, cylinders, capsules, cones and tori, each placed by a rigid transform; `scenes.py`
unites them into scenes. Units are metres, z points up.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from . import fields

# Tessellation tolerance of `Primitive.mesh()`: the largest gap between a curved analytic surface and
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


def _creation():
    # trimesh is only needed for meshes (ray casting with Open3D, rendering); the GPU data generator
    # runs where it is not installed.
    import trimesh.creation

    return trimesh.creation


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
    field_function = None  # staticmethod: the shape's formula in `fields`, evaluated with `field_parameters()`

    def field_parameters(self) -> dict:
        """Keyword arguments of `field_function` besides the points (also what the GPU generator stacks)."""
        raise NotImplementedError

    def local_field(self, q: np.ndarray) -> np.ndarray:
        """The shape's 1-Lipschitz signed field (see `fields`): negative inside, zero on the surface."""
        return self.field_function(q, **self.field_parameters())

    def local_contains(self, q: np.ndarray) -> np.ndarray:
        return self.local_field(q) < 0.0

    def local_sdf(self, q: np.ndarray) -> np.ndarray:
        return self.local_field(q)

    def local_bounds(self) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def local_mesh(self):
        """A trimesh.Trimesh of the surface in the local frame."""
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

    def mesh(self):
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

    field_function = staticmethod(fields.box)

    def field_parameters(self):
        return {"half_extents": self.half_extents}

    def local_bounds(self):
        return -self.half_extents, self.half_extents.copy()

    def local_mesh(self):
        return _creation().box(extents=2.0 * self.half_extents)

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

    field_function = staticmethod(fields.sphere)

    def field_parameters(self):
        return {"radius": self.radius}

    def local_bounds(self):
        r = np.full(3, self.radius)
        return -r, r

    def local_mesh(self):
        # Icosphere sagitta shrinks about 4x per subdivision (~0.01 r at level 2).
        subdivisions = 2 if self.radius <= 0.1 else 3 if self.radius <= 0.4 else 4
        return _creation().icosphere(subdivisions=subdivisions, radius=self.radius)

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

    field_function = staticmethod(fields.cylinder)

    def field_parameters(self):
        return {"radius": self.radius, "height": self.height}

    def local_bounds(self):
        half = np.array([self.radius, self.radius, self.height / 2.0])
        return -half, half

    def local_mesh(self):
        return _creation().cylinder(
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

    field_function = staticmethod(fields.capsule)

    def field_parameters(self):
        return {"radius": self.radius, "height": self.height}

    def local_bounds(self):
        half = np.array([self.radius, self.radius, self.height / 2.0 + self.radius])
        return -half, half

    def local_mesh(self):
        sections = _sections_for_radius(self.radius)
        return _creation().capsule(height=self.height, radius=self.radius, count=[sections, sections])

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

    field_function = staticmethod(fields.cone)

    def field_parameters(self):
        return {"radius": self.radius, "height": self.height}

    def local_bounds(self):
        return np.array([-self.radius, -self.radius, 0.0]), np.array([self.radius, self.radius, self.height])

    def local_mesh(self):
        return _creation().cone(radius=self.radius, height=self.height,
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

    field_function = staticmethod(fields.torus)

    def field_parameters(self):
        return {"major_radius": self.major_radius, "minor_radius": self.minor_radius}

    def local_bounds(self):
        outer = self.major_radius + self.minor_radius
        half = np.array([outer, outer, self.minor_radius])
        return -half, half

    def local_mesh(self):
        return _creation().torus(
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
