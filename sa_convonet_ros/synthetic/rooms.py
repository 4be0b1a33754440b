"""Procedural furnished rooms: floor, walls (some open, some with doors), furniture and clutter.

Seeded and reproducible; every room is a `Scene` of solid primitives with exact occupancy.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .objects import FAMILIES, HELD_OUT_FAMILIES, TEST_FAMILIES, TRAINING_FAMILIES, Part
from .primitives import Box, Capsule, Cone, Cylinder, Primitive, Sphere, Torus, rotation_from_z, yaw_rotation
from .scenes import Scene

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
    object_families: tuple[str, ...] = ()  # free-form object families (data.objects) to place
    object_count: tuple[int, int] = (0, 0)
    gap: float = 0.03  # clearance that furniture keeps from walls and from other furniture
    placement_tries: int = 40

    def __post_init__(self) -> None:
        unknown = set(self.object_families) - set(FAMILIES)
        if unknown:
            raise ValueError(f"unknown object families {sorted(unknown)}; known: {sorted(FAMILIES)}")

    @classmethod
    def of_size(cls, length: float, width: float, height: float, **fields) -> "RoomConfig":
        """Rooms of exactly this interior size (furniture and the rest still drawn from their ranges)."""
        return cls(length_range=(length, length), width_range=(width, width), height_range=(height, height),
                   **fields)


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


def _make_table(rng) -> Part:
    half_x, half_y = _uniform(rng, (0.4, 0.9)), _uniform(rng, (0.3, 0.5))
    height, top_thickness = _uniform(rng, (0.7, 0.78)), _uniform(rng, (0.03, 0.04))
    top = _box_from_corners((-half_x, -half_y, height - top_thickness), (half_x, half_y, height), "table")
    return Part([top, *_legs(rng, half_x, half_y, height - top_thickness, "table")], top_height=height)


def _make_chair(rng) -> Part:
    """Chair facing +y: seat on four legs, backrest along the -y edge."""
    half = _uniform(rng, (0.2, 0.25))
    seat_height, seat_thickness = _uniform(rng, (0.42, 0.48)), _uniform(rng, (0.03, 0.05))
    back_height, back_thickness = _uniform(rng, (0.35, 0.5)), _uniform(rng, (0.03, 0.05))
    seat = _box_from_corners((-half, -half, seat_height - seat_thickness), (half, half, seat_height), "chair")
    back = _box_from_corners((-half, -half, seat_height), (half, -half + back_thickness, seat_height + back_height),
                             "chair")
    return Part([seat, back, *_legs(rng, half, half, seat_height - seat_thickness, "chair")])


def _make_shelf(rng) -> Part:
    """Closed cabinet or open bookshelf, back along -y (meant to stand against a wall)."""
    half_x, half_y, height = _uniform(rng, (0.3, 0.8)), _uniform(rng, (0.15, 0.25)), _uniform(rng, (0.8, 2.0))
    if rng.uniform() < 0.4:
        body = _box_from_corners((-half_x, -half_y, 0.0), (half_x, half_y, height), "cabinet")
        return Part([body], top_height=height if height < 1.3 else None)
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
    return Part(parts, top_height=height if height < 1.3 else None)


def _make_sofa(rng) -> Part:
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
    return Part(parts)


def _make_lamp(rng) -> Part:
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
    return Part(parts)


def _make_clutter(rng, scale: float) -> Part:
    """A small object resting on z = 0: sphere, torus, capsule, cone, box or cylinder."""
    kind = rng.choice(["sphere", "torus", "capsule", "cone", "box", "cylinder"])
    s = scale
    if kind == "sphere":
        r = _uniform(rng, (0.04, 0.12)) * s
        return Part([Sphere(center=(0, 0, r), radius=r, label="clutter")])
    if kind == "torus":
        major, minor = _uniform(rng, (0.06, 0.14)) * s, _uniform(rng, (0.015, 0.04)) * s
        if rng.uniform() < 0.7:  # lying flat
            return Part([Torus(center=(0, 0, minor), major_radius=major, minor_radius=minor, label="clutter")])
        upright = rotation_from_z([0.0, 1.0, 0.0])
        return Part([Torus(center=(0, 0, major + minor), major_radius=major, minor_radius=minor,
                            rotation=upright, label="clutter")])
    if kind == "capsule":
        r, h = _uniform(rng, (0.03, 0.07)) * s, _uniform(rng, (0.1, 0.3)) * s
        if rng.uniform() < 0.6:  # lying along x
            return Part([Capsule(center=(0, 0, r), radius=r, height=h, rotation=rotation_from_z([1.0, 0.0, 0.0]),
                                  label="clutter")])
        return Part([Capsule(center=(0, 0, h / 2.0 + r), radius=r, height=h, label="clutter")])
    if kind == "cone":
        return Part([Cone(radius=_uniform(rng, (0.05, 0.15)) * s, height=_uniform(rng, (0.1, 0.35)) * s,
                           label="clutter")])
    if kind == "box":
        half = rng.uniform(0.03, 0.15, size=3) * s
        return Part([Box(center=(0, 0, half[2]), half_extents=half, label="clutter")])
    r, h = _uniform(rng, (0.03, 0.1)) * s, _uniform(rng, (0.08, 0.3)) * s
    return Part([Cylinder(center=(0, 0, h / 2.0), radius=r, height=h, label="clutter")])


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


def _place(part: Part, footprint: _Footprint, base_height: float) -> list[Primitive]:
    rotation = yaw_rotation(footprint.yaw)
    translation = np.array([*footprint.center, base_height])
    return [p.transformed(rotation, translation) for p in part.primitives]


def generate_room(seed: int, config: RoomConfig | None = None) -> Scene:
    """A random furnished room; the same `seed` (and config) always gives the same scene."""
    builder = _RoomBuilder(config or RoomConfig(), np.random.default_rng(seed))
    builder.build_shell()
    builder.furnish()
    builder.add_clutter()
    builder.add_objects()
    return Scene(builder.primitives, interior=builder.interior)


# The broader training world of the prior and the held-out benchmark world: the same furnished rooms,
# plus free-form objects of disjoint families.
TRAINING_WORLD = RoomConfig(object_families=tuple(TRAINING_FAMILIES), object_count=(2, 6))
HELD_OUT_WORLD = RoomConfig(object_families=tuple(HELD_OUT_FAMILIES), object_count=(5, 9))
# The sealed test set's rooms: the held-out families and the test families nobody looked at.
TEST_WORLD = RoomConfig(object_families=tuple(HELD_OUT_FAMILIES) + tuple(TEST_FAMILIES), object_count=(6, 10))


class _RoomBuilder:
    """The steps of `generate_room`, sharing the room's random stream, size and placement state."""

    def __init__(self, config: RoomConfig, rng: np.random.Generator):
        self.config, self.rng = config, rng
        self.length, self.width = _uniform(rng, config.length_range), _uniform(rng, config.width_range)
        self.height, self.thickness = _uniform(rng, config.height_range), _uniform(rng, config.wall_thickness_range)
        self.half = np.array([self.length / 2.0, self.width / 2.0])
        self.primitives: list[Primitive] = []
        self.floor = _Support(_Footprint(np.zeros(2), self.half.copy(), 0.0), 0.0)
        self.supports = [self.floor]
        self.tables: list[_Footprint] = []

    @property
    def interior(self) -> tuple[np.ndarray, np.ndarray]:
        return np.array([-self.half[0], -self.half[1], 0.0]), np.array([self.half[0], self.half[1], self.height])

    def count(self, bounds: tuple[int, int]) -> int:
        return int(self.rng.integers(bounds[0], bounds[1] + 1))

    def build_shell(self) -> None:
        """Floor, walls (some missing or with a doorway), optional ceiling."""
        config, rng = self.config, self.rng
        outer = self.half + self.thickness
        self.primitives.append(
            _box_from_corners((-outer[0], -outer[1], -config.floor_thickness), (outer[0], outer[1], 0.0), "floor"))
        walls = [(0, -1.0), (0, 1.0), (1, -1.0), (1, 1.0)]  # (axis, side)
        if rng.uniform() < config.open_probability:
            missing = rng.choice(4, size=int(rng.integers(1, 3)), replace=False)
            walls = [w for i, w in enumerate(walls) if i not in missing]
        door_wall = int(rng.integers(len(walls))) if walls and rng.uniform() < config.door_probability else None
        for i, (axis, side) in enumerate(walls):
            door = self._door(axis) if i == door_wall else None
            self.primitives += _wall_boxes(axis, side, self.length, self.width, self.height, self.thickness,
                                           config.floor_thickness, door)
        if config.ceiling:
            self.primitives.append(_box_from_corners(
                (-outer[0], -outer[1], self.height),
                (outer[0], outer[1], self.height + config.ceiling_thickness), "ceiling"))

    def _door(self, axis: int) -> tuple[float, float, float]:
        run = self.width if axis == 0 else self.length
        door_width = _uniform(self.rng, self.config.door_width_range)
        door_center = _uniform(self.rng, (-run / 2.0 + door_width / 2.0 + 0.1, run / 2.0 - door_width / 2.0 - 0.1))
        return door_center, door_width, min(_uniform(self.rng, self.config.door_height_range), self.height)

    def furnish(self) -> None:
        config, rng = self.config, self.rng
        for _ in range(self.count(config.shelf_count)):
            self.place_on_floor(_make_shelf(rng), self.against_wall)
        for _ in range(self.count(config.sofa_count)):
            part = _make_sofa(rng)
            self.place_on_floor(part, self.against_wall if rng.uniform() < 0.5 else self.anywhere)
        for _ in range(self.count(config.table_count)):
            if self.place_on_floor(_make_table(rng), self.anywhere):
                self.tables.append(self.floor.occupied[-1])
        for _ in range(self.count(config.chair_count)):
            self.place_on_floor(_make_chair(rng), self.at_table)
        for _ in range(self.count(config.lamp_count)):
            self.place_on_floor(_make_lamp(rng), self.anywhere)

    def add_clutter(self) -> None:
        for _ in range(self.count(self.config.clutter_count)):
            support = self.supports[int(self.rng.integers(len(self.supports)))]
            self.place_on_support(_make_clutter(self.rng, scale=1.5 if support is self.floor else 1.0), support)

    def add_objects(self) -> None:
        """Free-form objects of the configured families, each where such an object stands."""
        families = self.config.object_families
        if not families:
            return
        for _ in range(self.count(self.config.object_count)):
            maker, where = FAMILIES[families[int(self.rng.integers(len(families)))]]
            part = maker(self.rng)
            if where == "wall":
                self.place_on_floor(part, self.against_wall)
            elif where == "floor" or (where == "table" and len(self.supports) == 1):
                self.place_on_floor(part, self.anywhere)
            else:  # on a table or cabinet top, or on the floor when none has room for it
                raised = self.supports[1:] if where == "table" else self.supports
                if not self.place_on_support(part, raised[int(self.rng.integers(len(raised)))]):
                    self.place_on_floor(part, self.anywhere)

    def place_on_floor(self, part: Part, propose) -> bool:
        """Place `part` at the first proposed footprint that fits on the floor."""
        half_size = part.half_size()
        for _ in range(self.config.placement_tries):
            center, yaw = propose(half_size)
            footprint = _Footprint(np.asarray(center, float), half_size, yaw)
            if self.floor.fits(footprint, self.config.gap):
                self.floor.occupied.append(footprint)
                self.primitives.extend(_place(part, footprint, 0.0))
                if part.top_height is not None:
                    self.supports.append(_Support(footprint, part.top_height))
                return True
        return False

    def place_on_support(self, part: Part, support: _Support) -> bool:
        """Place `part` at a random free spot of a support surface (clutter: 1 cm clearance)."""
        half_size = part.half_size()
        for _ in range(self.config.placement_tries):
            local = self.rng.uniform(-1.0, 1.0, size=2) * np.maximum(support.area.half_size - np.max(half_size), 0.0)
            footprint = _Footprint(support.area.center + local @ support.area.axes(), half_size,
                                   self.rng.uniform(0.0, 2.0 * np.pi))
            if support.fits(footprint, 0.01):
                support.occupied.append(footprint)
                self.primitives.extend(_place(part, footprint, support.height))
                return True
        return False

    def anywhere(self, half_size):
        margin = np.min(half_size)
        return (self.rng.uniform(-self.half[0] + margin, self.half[0] - margin),
                self.rng.uniform(-self.half[1] + margin, self.half[1] - margin)), self.rng.uniform(0.0, 2.0 * np.pi)

    def against_wall(self, half_size):
        # Back (local -y) towards a wall: yaw 0 -> south wall, pi -> north, pi/2 -> east, -pi/2 -> west.
        rng, (half_length, half_width) = self.rng, self.half
        yaw = float(rng.choice([0.0, np.pi, np.pi / 2.0, -np.pi / 2.0]))
        depth = half_size[1] + self.config.gap + 1e-6
        if yaw in (0.0, np.pi):
            center = (rng.uniform(-half_length, half_length), (-half_width + depth) * (1.0 if yaw == 0.0 else -1.0))
        else:
            center = ((half_length - depth) * (1.0 if yaw > 0 else -1.0), rng.uniform(-half_width, half_width))
        return center, yaw

    def at_table(self, half_size):
        """Pulled out from a random table side, facing the table."""
        rng = self.rng
        if not self.tables or rng.uniform() < 0.3:
            return self.anywhere(half_size)
        table = self.tables[int(rng.integers(len(self.tables)))]
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
