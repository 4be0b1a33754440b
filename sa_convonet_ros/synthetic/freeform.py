"""Free-form solids: superellipsoids, blobs, tubes, sheets, solids of revolution, smooth blends, holed plates.

Their formulas live in `fields` (one definition for numpy and torch). What the analytic primitives get
from closed forms, these get generically from their field:
- the inside test is exact (the sign of the field);
- `sdf` is the field over its gradient's length, the first-order distance, accurate near the surface
  (where reconstruction errors are measured); the field itself never exceeds the true distance;
- meshes come from a parametric tessellation where the shape has one (vertices exactly on the surface),
  otherwise from marching cubes of the field;
- surface samples are drawn on the mesh by area, samples that the shape's own overlapping parts bury
  are dropped, and the rest are projected onto the exact surface by Newton steps along the gradient.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from . import fields
from .primitives import Primitive, rotation_from_z

GRADIENT_STEP = 1e-5  # metres, central differences of the field
BURIED_TOLERANCE = 5e-4  # metres: samples deeper than this inside the shape lie on a buried part
MARCHING_CUBES_CELL = 0.003  # metres, finest cell of meshes made by marching cubes
MARCHING_CUBES_MAX_CELLS = 160  # along the longest side


@dataclass(frozen=True, kw_only=True, eq=False)
class FreeformPrimitive(Primitive):
    """A solid known through its field; subclasses give the field's parameters, bounds and a mesh."""

    # parameter name -> value appended when shapes with fewer elements are stacked with longer ones
    # (see torch_scene); "edge" repeats the last element. Chosen so the padding changes nothing.
    field_padding = {}

    def local_gradient(self, q: np.ndarray) -> np.ndarray:
        steps = np.eye(3) * GRADIENT_STEP
        return np.stack([self.local_field(q + e) - self.local_field(q - e) for e in steps], axis=-1) / (
            2.0 * GRADIENT_STEP)

    def local_sdf(self, q):
        gradient = np.linalg.norm(self.local_gradient(q), axis=-1)
        return self.local_field(q) / np.maximum(gradient, 1e-3)

    def local_triangles(self) -> tuple[np.ndarray, np.ndarray]:
        """(vertices (V, 3), faces (F, 3)) of the surface in the local frame."""
        return _marching_cubes(self.local_field, *self.local_bounds())

    @functools.cached_property
    def _triangles(self) -> tuple[np.ndarray, np.ndarray]:
        return self.local_triangles()

    def local_mesh(self):
        import trimesh

        return trimesh.Trimesh(*self._triangles, process=False)

    @functools.cached_property
    def area(self) -> float:
        return float(_triangle_areas(*self._triangles).sum())

    def local_surface_samples(self, n, rng):
        vertices, faces = self._triangles
        weights = _triangle_areas(vertices, faces)
        kept, count = [], 0
        while count < n:
            draw = 2 * (n - count) + 16
            chosen = faces[rng.choice(len(faces), size=draw, p=weights / weights.sum())]
            u, v = rng.uniform(size=(2, draw, 1))
            flip = (u + v) > 1.0  # fold the unit square onto the triangle
            u, v = np.where(flip, 1.0 - u, u), np.where(flip, 1.0 - v, v)
            corner = vertices[chosen]
            points = corner[:, 0] + u * (corner[:, 1] - corner[:, 0]) + v * (corner[:, 2] - corner[:, 0])
            points = self._project(points[self.local_field(points) > -BURIED_TOLERANCE])
            kept.append(points[np.abs(self.local_field(points)) < 1e-7])  # Newton may stall on a crease
            count += len(kept[-1])
        points = np.concatenate(kept)[:n]
        gradient = self.local_gradient(points)
        return points, gradient / np.linalg.norm(gradient, axis=-1, keepdims=True)

    def _project(self, points: np.ndarray, steps: int = 3) -> np.ndarray:
        """Newton steps onto the zero level of the field."""
        for _ in range(steps):
            gradient = self.local_gradient(points)
            scale = self.local_field(points) / np.maximum((gradient * gradient).sum(-1), 1e-12)
            points = points - scale[:, None] * gradient
        return points


def _triangle_areas(vertices: np.ndarray, faces: np.ndarray) -> np.ndarray:
    corner = vertices[faces]
    return 0.5 * np.linalg.norm(np.cross(corner[:, 1] - corner[:, 0], corner[:, 2] - corner[:, 0]), axis=1)


def _marching_cubes(field, low: np.ndarray, high: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    from skimage import measure

    cell = max(MARCHING_CUBES_CELL, float(np.max(high - low)) / MARCHING_CUBES_MAX_CELLS)
    low, high = low - 2 * cell, high + 2 * cell
    axes = [np.arange(a, b + cell, cell) for a, b in zip(low, high, strict=True)]
    grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    values = np.concatenate([field(grid[i:i + 200_000]) for i in range(0, len(grid), 200_000)])
    volume = values.reshape(tuple(len(a) for a in axes))
    vertices, faces, _, _ = measure.marching_cubes(volume, level=0.0, spacing=(cell,) * 3)
    return vertices + low, faces.astype(np.int64)


def _grid_faces(rows: int, cols: int, wrap: bool, offset: int = 0) -> np.ndarray:
    """Two triangles per quad of a rows x cols vertex grid (row-major), columns optionally wrapping."""
    col_end = cols if wrap else cols - 1
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(col_end), indexing="ij")
    a = r * cols + c
    b = r * cols + (c + 1) % cols
    faces = np.concatenate([np.stack([a, b, a + cols], -1), np.stack([b, b + cols, a + cols], -1)])
    return faces.reshape(-1, 3) + offset


def _sphere_directions(rows: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors on a latitude-longitude grid (poles included) and its faces."""
    theta = np.linspace(0.0, np.pi, rows)
    phi = np.linspace(0.0, 2.0 * np.pi, 2 * rows, endpoint=False)
    t, p = np.meshgrid(theta, phi, indexing="ij")
    directions = np.stack([np.sin(t) * np.cos(p), np.sin(t) * np.sin(p), np.cos(t)], -1).reshape(-1, 3)
    return directions, _grid_faces(rows, 2 * rows, wrap=True)


def _lathe(radii: np.ndarray, heights: np.ndarray, sections: int = 96) -> tuple[np.ndarray, np.ndarray]:
    """A surface of revolution about z through the profile points (radius, height)."""
    angle = np.linspace(0.0, 2.0 * np.pi, sections, endpoint=False)
    vertices = np.stack([radii[:, None] * np.cos(angle), radii[:, None] * np.sin(angle),
                         np.broadcast_to(heights[:, None], (len(heights), sections))], -1).reshape(-1, 3)
    return vertices, _grid_faces(len(radii), sections, wrap=True)


def _as_array(value, shape=None) -> np.ndarray:
    array = np.asarray(value, dtype=float)
    return array.reshape(shape) if shape is not None else array


# ------------------------------------------------------------------------------------------ shapes

@dataclass(frozen=True, kw_only=True, eq=False)
class Superellipsoid(FreeformPrimitive):
    """||q / half_extents||_p <= 1 (p = `exponent`): pebbles, cushions, rounded boxes."""

    half_extents: np.ndarray
    exponent: float = 2.0
    field_function = staticmethod(fields.superellipsoid)
    field_padding = {}

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "half_extents", _as_array(self.half_extents, 3))

    def field_parameters(self):
        return {"half_extents": self.half_extents, "exponent": float(self.exponent),
                "lipschitz": fields.superellipsoid_lipschitz(self.half_extents, self.exponent)}

    def local_bounds(self):
        return -self.half_extents, self.half_extents.copy()

    def local_triangles(self):
        directions, faces = _sphere_directions()
        scale = np.sum(np.abs(directions / self.half_extents) ** self.exponent, axis=1) ** (-1.0 / self.exponent)
        return directions * scale[:, None], faces


@dataclass(frozen=True, kw_only=True, eq=False)
class Blob(FreeformPrimitive):
    """A sphere displaced along its normals by a sum of waves: rocks, potatoes, lumpy sculptures."""

    radius: float
    frequencies: np.ndarray  # (K, 3)
    amplitudes: np.ndarray  # (K,), sum of magnitudes below 0.5
    phases: np.ndarray  # (K,)
    field_function = staticmethod(fields.blob)
    field_padding = {"frequencies": 0.0, "amplitudes": 0.0, "phases": 0.0}

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "frequencies", _as_array(self.frequencies, (-1, 3)))
        object.__setattr__(self, "amplitudes", _as_array(self.amplitudes, -1))
        object.__setattr__(self, "phases", _as_array(self.phases, -1))
        if np.abs(self.amplitudes).sum() >= 0.5:
            raise ValueError("blob amplitudes must sum (in magnitude) to less than 0.5")

    def field_parameters(self):
        return {"radius": float(self.radius), "frequencies": self.frequencies, "amplitudes": self.amplitudes,
                "phases": self.phases,
                "lipschitz": fields.blob_lipschitz(self.radius, self.amplitudes, self.frequencies)}

    def _surface_radius(self, directions: np.ndarray) -> np.ndarray:
        waves = np.sin(directions @ self.frequencies.T + self.phases)
        return self.radius * (1.0 + waves @ self.amplitudes)

    def local_bounds(self):
        reach = np.full(3, self.radius * (1.0 + np.abs(self.amplitudes).sum()))
        return -reach, reach

    def local_triangles(self):
        directions, faces = _sphere_directions(96)
        return directions * self._surface_radius(directions)[:, None], faces


@dataclass(frozen=True, kw_only=True, eq=False)
class Tube(FreeformPrimitive):
    """A sphere of `radius` swept along a polyline: cables, hoses, handles, knots, stems."""

    path: np.ndarray  # (M, 3), M >= 2
    radius: float
    field_function = staticmethod(fields.tube)
    field_padding = {"path": "edge"}

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "path", _as_array(self.path, (-1, 3)))

    def field_parameters(self):
        return {"path": self.path, "radius": float(self.radius)}

    def local_bounds(self):
        return self.path.min(axis=0) - self.radius, self.path.max(axis=0) + self.radius

    def local_triangles(self):
        # A sleeve per segment and a sphere per joint; their overlaps are buried, and the sampler drops them.
        parts, count = [], 0
        directions, sphere_faces = _sphere_directions(16)
        for a, b in zip(self.path[:-1], self.path[1:], strict=True):
            axis = b - a
            length = np.linalg.norm(axis)
            if length < 1e-9:
                continue
            sleeve, faces = _lathe(np.full(2, self.radius), np.array([0.0, length]), sections=32)
            parts.append((sleeve @ rotation_from_z(axis).T + a, faces + count))
            count += len(sleeve)
        for joint in self.path:
            parts.append((directions * self.radius + joint, sphere_faces + count))
            count += len(directions)
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])


@dataclass(frozen=True, kw_only=True, eq=False)
class Sheet(FreeformPrimitive):
    """A thin sheet spanning local x (width) and y (height), bent (z = bend x^2 / 2) and/or folded
    (z += fold_amplitude sin(fold_frequency x + fold_phase)): plates, curtains, leaves, paper."""

    half_width: float
    half_height: float
    thickness: float
    bend: float = 0.0
    fold_amplitude: float = 0.0
    fold_frequency: float = 0.0
    fold_phase: float = 0.0
    field_function = staticmethod(fields.sheet)
    field_padding = {}

    def field_parameters(self):
        names = ("half_width", "half_height", "thickness", "bend", "fold_amplitude", "fold_frequency", "fold_phase")
        values = {name: float(getattr(self, name)) for name in names}
        values["lipschitz"] = fields.sheet_lipschitz(self.half_width, self.bend, self.fold_amplitude,
                                                     self.fold_frequency)
        return values

    def _middle(self, x: np.ndarray) -> np.ndarray:
        return self.bend * x * x / 2.0 + self.fold_amplitude * np.sin(self.fold_frequency * x + self.fold_phase)

    def local_bounds(self):
        x = np.linspace(-self.half_width, self.half_width, 512)
        middle = self._middle(x)
        return (np.array([-self.half_width, -self.half_height, middle.min() - self.thickness / 2.0]),
                np.array([self.half_width, self.half_height, middle.max() + self.thickness / 2.0]))

    def local_triangles(self):
        # A closed slab: the two faces of the sheet (a grid over x, y) joined around the rim.
        columns = max(8, int(np.ceil(2.0 * self.half_width / 0.004)))
        x = np.linspace(-self.half_width, self.half_width, columns)
        ring_x = np.concatenate([x, x[::-1]])
        ring_z = np.concatenate([self._middle(x) + self.thickness / 2.0, self._middle(x)[::-1] - self.thickness / 2.0])
        rows = np.linspace(-self.half_height, self.half_height, max(2, int(np.ceil(2 * self.half_height / 0.05))))
        vertices = np.stack([np.broadcast_to(ring_x, (len(rows), len(ring_x))),
                             np.broadcast_to(rows[:, None], (len(rows), len(ring_x))),
                             np.broadcast_to(ring_z, (len(rows), len(ring_x)))], -1).reshape(-1, 3)
        ends = [np.stack([ring_x, np.full_like(ring_x, y), ring_z], -1) for y in rows[[0, -1]]]
        cap_faces = [_grid_faces(2, columns, wrap=False, offset=len(vertices) + i * len(ring_x)) for i in range(2)]
        caps = [np.stack([end[:columns], end[columns:][::-1]]).reshape(-1, 3) for end in ends]
        faces = np.concatenate([_grid_faces(len(rows), len(ring_x), wrap=True), *cap_faces])
        return np.concatenate([vertices, *caps]), faces


@dataclass(frozen=True, kw_only=True, eq=False)
class Revolved(FreeformPrimitive):
    """A solid of revolution about local z from 0 to `height` with a wavy radius: vases, columns, finials."""

    radius: float
    height: float
    amplitudes: np.ndarray  # (K,), sum of magnitudes below `radius`
    frequencies: np.ndarray  # (K,) radians per metre
    phases: np.ndarray  # (K,)
    field_function = staticmethod(fields.revolved)
    field_padding = {"amplitudes": 0.0, "frequencies": 0.0, "phases": 0.0}

    def __post_init__(self):
        super().__post_init__()
        for name in ("amplitudes", "frequencies", "phases"):
            object.__setattr__(self, name, _as_array(getattr(self, name), -1))
        if np.abs(self.amplitudes).sum() >= self.radius:
            raise ValueError("revolved amplitudes must sum (in magnitude) to less than the radius")

    def field_parameters(self):
        return {"radius": float(self.radius), "height": float(self.height), "amplitudes": self.amplitudes,
                "frequencies": self.frequencies, "phases": self.phases,
                "lipschitz": fields.revolved_lipschitz(self.amplitudes, self.frequencies)}

    def local_bounds(self):
        reach = self.radius + np.abs(self.amplitudes).sum()
        return np.array([-reach, -reach, 0.0]), np.array([reach, reach, self.height])

    def local_triangles(self):
        z = np.linspace(0.0, self.height, max(16, int(np.ceil(self.height / 0.004))))
        radii = self.radius + (self.amplitudes * np.sin(np.outer(z, self.frequencies) + self.phases)).sum(-1)
        # closed by a row on the axis at each end
        return _lathe(np.r_[0.0, radii, 0.0], np.r_[0.0, z, self.height])


@dataclass(frozen=True, kw_only=True, eq=False)
class SmoothBlend(FreeformPrimitive):
    """Spheres blended smoothly into one body: creatures, statues, organic sculptures."""

    centers: np.ndarray  # (K, 3)
    radii: np.ndarray  # (K,)
    smoothness: float = 0.05  # metres over which neighbouring spheres blend
    field_function = staticmethod(fields.smooth_union)
    field_padding = {"centers": 1e4, "radii": 0.0}

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "centers", _as_array(self.centers, (-1, 3)))
        object.__setattr__(self, "radii", _as_array(self.radii, -1))

    def field_parameters(self):
        return {"centers": self.centers, "radii": self.radii, "smoothness": float(self.smoothness)}

    def local_bounds(self):
        reach = self.radii[:, None] + self.smoothness
        return (self.centers - reach).min(axis=0), (self.centers + reach).max(axis=0)


@dataclass(frozen=True, kw_only=True, eq=False)
class HoledBox(FreeformPrimitive):
    """A box with round holes through it along local z: brackets, flanges, perforated plates."""

    half_extents: np.ndarray
    hole_centers: np.ndarray  # (K, 2) in the local xy-plane
    hole_radii: np.ndarray  # (K,)
    field_function = staticmethod(fields.holed_box)
    field_padding = {"hole_centers": 1e4, "hole_radii": 0.0}

    def __post_init__(self):
        super().__post_init__()
        object.__setattr__(self, "half_extents", _as_array(self.half_extents, 3))
        object.__setattr__(self, "hole_centers", _as_array(self.hole_centers, (-1, 2)))
        object.__setattr__(self, "hole_radii", _as_array(self.hole_radii, -1))

    def field_parameters(self):
        centers, radii = self.hole_centers, self.hole_radii
        if len(radii) == 0:  # no hole: one far away, which changes nothing
            centers, radii = np.full((1, 2), 1e4), np.zeros(1)
        return {"half_extents": self.half_extents, "hole_centers": centers, "hole_radii": radii}

    def local_bounds(self):
        return -self.half_extents, self.half_extents.copy()
