"""Free-form objects for furnished rooms, in two disjoint families of shapes.

TRAINING_FAMILIES broaden what the prior learns from (pebbles and cushions, lumpy blobs, cables and
handles, bent plates, piles of small parts). HELD_OUT_FAMILIES are kept out of training and only
appear in the held-out benchmark rooms: creatures and statues (smooth blends), vases and columns
(solids of revolution), mechanical brackets with holes, folded curtains, potted plants with leaves,
knotted tubes, and tiny objects on tables. TEST_FAMILIES appear only in the sealed test set's rooms: floor
lamps with thin bent poles and tubular stools and chairs. Tubes and sheets are building blocks of all, but no
held-out or test family is ever generated for training.

Every maker returns a `Part` in its own frame: footprint centred on the origin, resting on z = 0.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .freeform import Blob, HoledBox, Revolved, Sheet, SmoothBlend, Superellipsoid, Tube
from .primitives import Box, Capsule, Cylinder, Primitive, Sphere, Torus, rotation_from_z, yaw_rotation


@dataclass
class Part:
    """A furniture piece or object built in its own frame (footprint centred, base z=0)."""

    primitives: list[Primitive]
    top_height: float | None = None  # height of a flat top that can carry clutter, if any

    def half_size(self) -> np.ndarray:
        boxes = np.array([p.aabb for p in self.primitives])
        lo, hi = boxes[:, 0, :2].min(axis=0), boxes[:, 1, :2].max(axis=0)
        return np.maximum(np.abs(lo), np.abs(hi))


def _u(rng, low: float, high: float) -> float:
    return float(rng.uniform(low, high))


def _resting(primitive: Primitive, lowest: float) -> Primitive:
    """The primitive lifted so that its lowest point (`lowest`, in the part frame) is at z = 0."""
    return primitive.transformed(np.eye(3), (0.0, 0.0, -lowest))


def _lowest_point(primitive) -> float:
    vertices, _ = primitive._triangles
    return float((vertices @ primitive.rotation.T + primitive.center)[:, 2].min())


# ------------------------------------------------------------------------------------- training families

def make_pebble(rng) -> Part:
    """A superellipsoid lying on its flattest side: pebble, cushion, pouf, rounded box."""
    half = np.sort(rng.uniform(0.03, 0.25, size=3))[::-1] * np.array([1.0, 1.0, _u(rng, 0.4, 1.0)])
    shape = Superellipsoid(half_extents=half, exponent=_u(rng, 1.2, 6.0), label="pebble")
    return Part([_resting(shape, -half[2])])


def make_blob(rng) -> Part:
    """A lumpy rock or sculpture: a sphere displaced by a few waves."""
    count = int(rng.integers(3, 7))
    amplitudes = rng.dirichlet(np.ones(count)) * _u(rng, 0.1, 0.45)
    shape = Blob(radius=_u(rng, 0.05, 0.3), frequencies=rng.normal(size=(count, 3)) * _u(rng, 1.5, 4.0),
                 amplitudes=amplitudes, phases=rng.uniform(0.0, 2.0 * np.pi, count), label="blob")
    return Part([_resting(shape, _lowest_point(shape))])


def _smooth_path(rng, points: int, step: float, turn: float) -> np.ndarray:
    """A random walk whose heading turns smoothly: a cable, a hose."""
    heading, pitch, position, path = rng.uniform(0, 2 * np.pi), 0.0, np.zeros(3), [np.zeros(3)]
    for _ in range(points - 1):
        heading += rng.normal(scale=turn)
        pitch = float(np.clip(pitch + rng.normal(scale=turn / 2.0), -0.6, 0.6))
        position = position + step * np.array([np.cos(heading) * np.cos(pitch), np.sin(heading) * np.cos(pitch),
                                                np.sin(pitch)])
        path.append(position)
    path = np.array(path)
    return path - np.r_[path[:, :2].mean(axis=0), 0.0]


def make_cable(rng) -> Part:
    """A cable or hose lying in loose curves, or an arched handle."""
    radius = _u(rng, 0.006, 0.03)
    if rng.uniform() < 0.6:
        path = _smooth_path(rng, int(rng.integers(8, 20)), _u(rng, 0.05, 0.12), 0.5)
        path[:, 2] = np.abs(path[:, 2]) * 0.3  # mostly on the ground
    else:
        angle = np.linspace(0.0, np.pi, 12)
        span, rise = _u(rng, 0.1, 0.4), _u(rng, 0.05, 0.3)
        path = np.stack([span / 2.0 * np.cos(angle), np.zeros_like(angle), rise * np.sin(angle)], -1)
    shape = Tube(path=path, radius=radius, label="cable")
    return Part([_resting(shape, float(path[:, 2].min()) - radius)])


def make_plate(rng) -> Part:
    """A bent plate standing on its edge or lying flat: boards, panels, sheet metal."""
    half_width, half_height, thickness = _u(rng, 0.1, 0.5), _u(rng, 0.1, 0.4), _u(rng, 0.008, 0.03)
    shape = Sheet(half_width=half_width, half_height=half_height, thickness=thickness,
                  bend=_u(rng, -1.0, 1.0) / half_width, label="plate")
    low, high = shape.local_bounds()
    if rng.uniform() < 0.5:  # lying: the sheet's z is up
        return Part([_resting(shape, low[2])])
    standing = shape.transformed(rotation_from_z([0.0, 1.0, 0.0]).T, (0.0, 0.0, 0.0))  # local y -> up
    return Part([_resting(standing, -half_height)])


def make_assembly(rng) -> Part:
    """A pile of many small parts: toys, tools, building blocks."""
    parts = []
    for _ in range(int(rng.integers(5, 16))):
        size = _u(rng, 0.01, 0.05)
        center = np.r_[rng.uniform(-0.12, 0.12, 2), _u(rng, 0.0, 0.1)]
        rotation = rotation_from_z(rng.normal(size=3))
        kind = int(rng.integers(4))
        if kind == 0:
            parts.append(Box(center=center, half_extents=rng.uniform(0.4, 1.0, 3) * size, rotation=rotation,
                             label="assembly"))
        elif kind == 1:
            parts.append(Cylinder(center=center, radius=size * _u(rng, 0.3, 0.8), height=2 * size, rotation=rotation,
                                  label="assembly"))
        elif kind == 2:
            parts.append(Sphere(center=center, radius=size, label="assembly"))
        else:
            parts.append(Capsule(center=center, radius=size * 0.4, height=2 * size, rotation=rotation,
                                 label="assembly"))
    lowest = min(float(p.aabb[0][2]) for p in parts)
    return Part([_resting(p, lowest) for p in parts])


# ------------------------------------------------------------------------------------- held-out families

def make_creature(rng) -> Part:
    """A four-legged animal: body, neck and head, legs and a tail, blended into one smooth solid."""
    length, girth = _u(rng, 0.15, 0.5), _u(rng, 0.05, 0.15)
    leg_length = _u(rng, 0.6, 1.5) * girth * 2.0
    body_z = leg_length + girth
    spine = np.linspace(-length / 2.0, length / 2.0, 3)
    centers = [(x, 0.0, body_z) for x in spine]
    radii = [girth * r for r in (0.9, 1.0, 0.85)]
    head = (length / 2.0 + girth * 1.2, 0.0, body_z + girth * _u(rng, 0.6, 1.4))
    centers += [head, ((length / 2.0 + head[0]) / 2.0, 0.0, (body_z + head[2]) / 2.0)]
    radii += [girth * _u(rng, 0.6, 0.9), girth * 0.5]
    for x in (-length / 2.0 + girth * 0.3, length / 2.0 - girth * 0.3):
        for y in (-girth * 0.6, girth * 0.6):
            for z in np.linspace(girth * 0.25, leg_length, 3):
                centers.append((x, y, z))
                radii.append(girth * 0.25)
    centers.append((-length / 2.0 - girth, 0.0, body_z + girth * 0.3))
    radii.append(girth * 0.3)
    shape = SmoothBlend(centers=centers, radii=radii, smoothness=girth * 0.6, label="creature")
    # the blend only adds material between spheres, so the lowest sphere's bottom is the lowest point
    return Part([_resting(shape, float(np.min(shape.centers[:, 2] - shape.radii)))])


def make_statue(rng) -> Part:
    """A figure of stacked, blended masses on a pedestal."""
    pedestal_half, pedestal_height = _u(rng, 0.1, 0.25), _u(rng, 0.05, 0.5)
    count = int(rng.integers(4, 8))
    radii = rng.uniform(0.04, 0.1, count) * pedestal_half / 0.2
    # neighbouring masses overlap, so the figure is one body
    gaps = rng.uniform(0.5, 0.9, count - 1) * (radii[:-1] + radii[1:])
    heights = pedestal_height + 0.7 * radii[0] + np.cumsum(np.r_[0.0, gaps])
    centers = np.stack([rng.normal(scale=0.03, size=count), rng.normal(scale=0.03, size=count), heights], -1)
    figure = SmoothBlend(centers=centers, radii=radii, smoothness=_u(rng, 0.03, 0.08), label="statue")
    pedestal = Box(center=(0.0, 0.0, pedestal_height / 2.0),
                   half_extents=(pedestal_half, pedestal_half, pedestal_height / 2.0), label="statue")
    return Part([pedestal, figure])


def make_vase(rng) -> Part:
    """A vase, column or turned part: a solid of revolution with a wavy profile."""
    radius, height = _u(rng, 0.04, 0.2), _u(rng, 0.15, 1.2)
    count = int(rng.integers(1, 4))
    amplitudes = rng.dirichlet(np.ones(count)) * radius * _u(rng, 0.2, 0.7)
    frequencies = rng.uniform(1.0, 4.0, count) * 2.0 * np.pi / height
    shape = Revolved(radius=radius, height=height, amplitudes=amplitudes, frequencies=frequencies,
                     phases=rng.uniform(0, 2 * np.pi, count), label="vase")
    return Part([shape])


def make_bracket(rng) -> Part:
    """A mechanical part: an angle bracket of two holed plates, with a boss."""
    width, reach, thickness = _u(rng, 0.05, 0.2), _u(rng, 0.08, 0.25), _u(rng, 0.006, 0.02)

    def plate(length):
        holes = int(rng.integers(0, 4))
        centers = np.stack([np.linspace(-length / 3.0, length / 3.0, holes), np.zeros(holes)], -1) if holes else []
        return np.array([length / 2.0, width / 2.0, thickness / 2.0]), centers, np.full(holes, width * 0.15)

    half, centers, radii = plate(reach)
    base = HoledBox(center=(0.0, 0.0, thickness / 2.0), half_extents=half, hole_centers=np.reshape(centers, (-1, 2)),
                    hole_radii=radii, label="bracket")
    half, centers, radii = plate(_u(rng, 0.06, 0.2))
    x_up = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])  # local x -> up, z -> -x
    upright = HoledBox(center=(-reach / 2.0 + thickness / 2.0, 0.0, half[0]), half_extents=half,
                       hole_centers=np.reshape(centers, (-1, 2)), hole_radii=radii, rotation=x_up, label="bracket")
    boss = Cylinder(center=(reach / 4.0, 0.0, thickness + 0.01), radius=width * 0.25, height=0.02, label="bracket")
    return Part([base, upright, boss])


def make_curtain(rng) -> Part:
    """A curtain hanging in folds, its bottom hem just above the floor (placed along a wall)."""
    half_width, half_height = _u(rng, 0.3, 0.8), _u(rng, 0.7, 1.2)
    folds = _u(rng, 3.0, 8.0)
    shape = Sheet(half_width=half_width, half_height=half_height, thickness=_u(rng, 0.004, 0.008),
                  fold_amplitude=_u(rng, 0.02, 0.06), fold_frequency=folds * np.pi / half_width,
                  fold_phase=_u(rng, 0, 2 * np.pi), label="curtain")
    hanging = shape.transformed(rotation_from_z([0.0, 1.0, 0.0]).T, (0.0, 0.0, half_height + _u(rng, 0.02, 0.1)))
    return Part([hanging])


def make_plant(rng) -> Part:
    """A potted plant: pot, stems and thin leaves."""
    pot_radius, pot_height = _u(rng, 0.06, 0.15), _u(rng, 0.08, 0.25)
    parts: list[Primitive] = [Revolved(radius=pot_radius, height=pot_height, amplitudes=[pot_radius * 0.2],
                                       frequencies=[np.pi / pot_height], phases=[0.0], label="plant")]
    for _ in range(int(rng.integers(2, 6))):
        top = np.r_[rng.normal(scale=pot_radius, size=2), pot_height + _u(rng, 0.1, 0.5)]
        middle = np.r_[top[:2] * 0.4, (pot_height + top[2]) / 2.0]
        parts.append(Tube(path=[(0.0, 0.0, pot_height * 0.8), middle, top], radius=_u(rng, 0.003, 0.008),
                          label="plant"))
        leaf = Sheet(half_width=_u(rng, 0.03, 0.08), half_height=_u(rng, 0.015, 0.04), thickness=0.003,
                     bend=_u(rng, -8.0, 8.0), label="plant")
        parts.append(leaf.transformed(rotation_from_z(rng.normal(size=3) + [0, 0, 1.5]), top))
    return Part(parts)


def make_knot(rng) -> Part:
    """A (p, q) torus-knot tube on a small plinth: a sculpture."""
    p, q = [(2, 3), (3, 2), (2, 5), (3, 4)][int(rng.integers(4))]
    scale, radius = _u(rng, 0.03, 0.08), _u(rng, 0.006, 0.015)
    t = np.linspace(0.0, 2.0 * np.pi, 72)
    ring = scale * (2.0 + np.cos(q * t))
    path = np.stack([ring * np.cos(p * t), ring * np.sin(p * t), scale * np.sin(q * t)], -1)
    lift = 0.02 + scale + radius
    plinth = Cylinder(center=(0.0, 0.0, 0.01), radius=scale * 1.5, height=0.02, label="knot")
    return Part([plinth, Tube(path=path + [0.0, 0.0, lift], radius=radius, label="knot")])


def make_tiny(rng) -> Part:
    """A few tiny objects (1.5-4 cm): dice, pens, rings, marbles."""
    parts = []
    for _ in range(int(rng.integers(3, 8))):
        size = _u(rng, 0.0075, 0.02)
        x, y = rng.uniform(-0.08, 0.08, 2)
        kind = int(rng.integers(4))
        if kind == 0:
            parts.append(Box(center=(x, y, size), half_extents=(size, size, size), rotation=yaw_rotation(_u(rng, 0, 3)),
                             label="tiny"))
        elif kind == 1:
            parts.append(Capsule(center=(x, y, size * 0.3), radius=size * 0.3, height=size * 5.0,
                                 rotation=yaw_rotation(_u(rng, 0, 3)) @ rotation_from_z([1.0, 0.0, 0.0]), label="tiny"))
        elif kind == 2:
            parts.append(Torus(center=(x, y, size * 0.25), major_radius=size, minor_radius=size * 0.25, label="tiny"))
        else:
            parts.append(Sphere(center=(x, y, size), radius=size, label="tiny"))
    return Part(parts)


# ------------------------------------------------------------------------------- sealed test families

def make_floor_lamp(rng) -> Part:
    """A floor lamp: a heavy disc, a thin pole bending over at the top, and a drum shade hanging from it."""
    base_radius, pole_radius = _u(rng, 0.1, 0.2), _u(rng, 0.007, 0.014)
    height, reach = _u(rng, 1.2, 1.8), _u(rng, 0.0, 0.4)
    base = Cylinder(center=(0.0, 0.0, 0.015), radius=base_radius, height=0.03, label="floor_lamp")
    bend = np.array([[0.0, 0.0, 0.03], [0.0, 0.0, height - 0.25], [reach * 0.5, 0.0, height],
                     [reach, 0.0, height - 0.05]])
    pole = Tube(path=bend, radius=pole_radius, label="floor_lamp")
    shade_height = _u(rng, 0.15, 0.3)
    shade = Revolved(radius=_u(rng, 0.1, 0.22), height=shade_height, amplitudes=[_u(rng, 0.01, 0.05)],
                     frequencies=[np.pi / shade_height], phases=[np.pi / 2.0], label="floor_lamp")
    return Part([base, pole, shade.transformed(np.eye(3), (reach, 0.0, height - 0.05 - shade_height))])


def make_tube_chair(rng) -> Part:
    """Tubular furniture: a stool or chair of bent steel tubes, a thin seat and, for a chair, a back loop."""
    half, seat_height = _u(rng, 0.17, 0.25), _u(rng, 0.4, 0.75)
    tube = _u(rng, 0.008, 0.015)
    parts: list[Primitive] = []
    for sx, sy in ((-1, -1), (-1, 1), (1, -1), (1, 1)):
        foot = np.array([sx * (half + 0.03), sy * (half + 0.03), tube])
        parts.append(Tube(path=[foot, [sx * half, sy * half, seat_height - 0.02]], radius=tube, label="tube_chair"))
    rail = seat_height * _u(rng, 0.25, 0.45)
    ring = [[sx * half, sy * half, rail] for sx, sy in ((-1, -1), (1, -1), (1, 1), (-1, 1), (-1, -1))]
    parts.append(Tube(path=ring, radius=tube * 0.8, label="tube_chair"))
    parts.append(Box(center=(0.0, 0.0, seat_height), half_extents=(half + 0.02, half + 0.02, _u(rng, 0.006, 0.02)),
                     label="tube_chair"))
    if rng.random() < 0.6:  # a chair: a back loop of one bent tube
        top = seat_height + _u(rng, 0.3, 0.45)
        loop = [[-half, -half, seat_height], [-half - 0.03, -half, top], [-half - 0.03, half, top],
                [-half, half, seat_height]]
        parts.append(Tube(path=loop, radius=tube, label="tube_chair"))
    return Part(parts)


# name -> (maker, where it stands: "floor", "wall" (against one) or "support" (floor, tables, cabinets))
TRAINING_FAMILIES = {
    "pebble": (make_pebble, "support"),
    "blob": (make_blob, "support"),
    "cable": (make_cable, "floor"),
    "plate": (make_plate, "support"),
    "assembly": (make_assembly, "support"),
}
HELD_OUT_FAMILIES = {
    "creature": (make_creature, "floor"),
    "statue": (make_statue, "floor"),
    "vase": (make_vase, "support"),
    "bracket": (make_bracket, "support"),
    "curtain": (make_curtain, "wall"),
    "plant": (make_plant, "support"),
    "knot": (make_knot, "support"),
    "tiny": (make_tiny, "table"),
}
# Shapes nobody chose a setting on: only the sealed test set's rooms hold them (bench_quality --test).
TEST_FAMILIES = {
    "floor_lamp": (make_floor_lamp, "floor"),
    "tube_chair": (make_tube_chair, "floor"),
}
FAMILIES = {**TRAINING_FAMILIES, **HELD_OUT_FAMILIES, **TEST_FAMILIES}
