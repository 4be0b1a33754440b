"""Generated multi-room floors: furnished rooms along a corridor, shared walls with doors, exact occupancy.

    floor = generate_floor(seed, size=(30, 20))     # a Floor: one Scene, and the interior of every space
    points, infos = scan_floor(floor, "dense")      # a depth camera through every room and the corridor

The plan: a corridor runs along x through the middle of the floor; each side of it holds one row of rooms,
or two where the side is deeper than `FloorConfig.max_room_depth`. Rooms of a row have drawn widths and
share their walls; every room has a door, to the corridor or to the room between it and the corridor, and
neighbours in a row are joined by a door at random. The furniture of each room is that of `generate_room`
for a room of the same interior (its own walls and floor left out), so rooms look like the benchmark rooms.

Wall centre lines lie on the plan's lines (x = 0 and x = length, y = 0 and y = width outside); the floor's
top is z = 0, as in every scene.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from .primitives import Box, Primitive
from .rooms import RoomConfig, generate_room
from .scans import SCAN_SETTINGS, ScanInfo, ScanSetting, simulate_scans, voxel_downsample
from .scenes import Scene

Interior = tuple[np.ndarray, np.ndarray]  # (min xyz, max xyz) of a space's free volume


@dataclass
class FloorConfig:
    """Dimensions of `generate_floor`, metres."""

    height: float = 2.7
    wall_thickness: float = 0.12
    floor_thickness: float = 0.1
    corridor_width: float = 2.0
    room_width_range: tuple[float, float] = (4.0, 7.0)  # along the corridor
    max_room_depth: float = 6.0  # a deeper side of the corridor holds two rows of rooms
    door_width: float = 0.9
    door_height: float = 2.05
    neighbour_door_probability: float = 0.5


@dataclass
class Floor:
    """A generated floor: the scene of all its primitives and the interiors of its spaces."""

    scene: Scene
    spaces: list[Interior]  # the corridor first, then the rooms
    size: tuple[float, float]


def generate_floor(seed: int, size: tuple[float, float] = (30.0, 20.0), config: FloorConfig | None = None) -> Floor:
    """A random furnished floor of `size` (length along x, width along y); the same seed gives the same floor."""
    config = config or FloorConfig()
    length, width = float(size[0]), float(size[1])
    side = (width - config.corridor_width) / 2.0
    if side < 2.5 or length < config.room_width_range[0]:
        raise ValueError(f"a floor of {length:g} x {width:g} m has no room for rooms beside a "
                         f"{config.corridor_width:g} m corridor (rooms need 2.5 m of depth and "
                         f"{config.room_width_range[0]:g} m of width)")
    rng = np.random.default_rng(seed)
    plan = _FloorPlan(config, rng, length, width)
    primitives = [_box((0.0, 0.0, -config.floor_thickness), (length, width, 0.0), "floor")]
    primitives += plan.walls()
    spaces = [plan.corridor()]
    for room in plan.rooms():
        spaces.append(room)
        primitives += _furniture(room, int(rng.integers(2**31)))
    return Floor(Scene(primitives), spaces, (length, width))


def scan_floor(floor: Floor, setting: ScanSetting | str = "dense", seed: int = 0,
               caster: str = "open3d") -> tuple[np.ndarray, list[ScanInfo]]:
    """One map of the whole floor: `simulate_scans` in every space (camera poses in proportion to its area,
    `setting.pose_count` per 30 m^2, the size of a benchmark room), the clouds voxel-filtered together like
    a mapper's accumulated map. Returns (points (N, 3) float32, the ScanInfo of each space)."""
    setting = SCAN_SETTINGS[setting] if isinstance(setting, str) else setting
    rng = np.random.default_rng(seed)
    clouds, infos = [], []
    for interior in floor.spaces:
        area = float(np.prod(interior[1][:2] - interior[0][:2]))
        poses = max(4, int(round(setting.pose_count * area / 30.0)))
        view = _SpaceOfFloor(floor.scene.primitives, interior=interior, floor=floor.scene)
        points, info = simulate_scans(view, dataclasses.replace(setting, pose_count=poses),
                                      seed=int(rng.integers(2**31)), caster=caster)
        clouds.append(points)
        infos.append(info)
    return voxel_downsample(np.concatenate(clouds), setting.voxel_size).astype(np.float32), infos


@dataclass(eq=False)
class _SpaceOfFloor(Scene):
    """The floor seen from one of its spaces: its camera loop runs in `interior`; the rays meet the whole
    floor, whose mesh is built once for every space."""

    floor: Scene | None = None

    def mesh(self):
        return self.floor.mesh()


def _box(low, high, label: str) -> Box:
    low, high = np.asarray(low, float), np.asarray(high, float)
    return Box(center=(low + high) / 2.0, half_extents=(high - low) / 2.0, label=label)


def _furniture(interior: Interior, seed: int) -> list[Primitive]:
    """The furniture and clutter of a generated room of this interior, moved into it."""
    low, high = interior
    extent = high - low
    room = generate_room(seed, RoomConfig.of_size(extent[0], extent[1], extent[2], open_probability=0.0,
                                                  door_probability=0.0))
    shift = np.array([(low[0] + high[0]) / 2.0, (low[1] + high[1]) / 2.0, 0.0])
    return [p.transformed(np.eye(3), shift) for p in room.primitives if p.label not in ("wall", "floor")]


def _split(length: float, widths: tuple[float, float], rng: np.random.Generator) -> list[float]:
    """Cut positions 0 = c0 < c1 < ... = length, every piece within `widths` where the length allows."""
    cuts = [0.0]
    while length - cuts[-1] > widths[1]:
        step = float(rng.uniform(*widths))
        if length - cuts[-1] - step < widths[0]:
            step = (length - cuts[-1]) / 2.0  # two pieces rather than a sliver at the end
        cuts.append(cuts[-1] + step)
    return cuts + [length]


@dataclass
class _Row:
    """A row of rooms between two wall lines y0 < y1, cut along x at `cuts`."""

    y0: float
    y1: float
    cuts: list[float]
    toward_corridor: int  # +1: the corridor lies at larger y, -1: at smaller y


class _FloorPlan:
    """The lines of the plan, and the walls with their doors."""

    def __init__(self, config: FloorConfig, rng: np.random.Generator, length: float, width: float) -> None:
        self.config, self.rng, self.length, self.width = config, rng, length, width
        side = (width - config.corridor_width) / 2.0
        self.corridor_lines = (side, side + config.corridor_width)
        count = int(np.ceil(side / config.max_room_depth))
        depth = side / count
        self.rows: list[_Row] = []  # per side, the row next to the corridor first
        for k in range(count):
            self.rows.append(_Row(side - (k + 1) * depth, side - k * depth,
                                  _split(length, config.room_width_range, rng), +1))
            top = self.corridor_lines[1]
            self.rows.append(_Row(top + k * depth, top + (k + 1) * depth,
                                  _split(length, config.room_width_range, rng), -1))

    def _interior(self, x0: float, x1: float, y0: float, y1: float) -> Interior:
        half = self.config.wall_thickness / 2.0
        return np.array([x0 + half, y0 + half, 0.0]), np.array([x1 - half, y1 - half, self.config.height])

    def corridor(self) -> Interior:
        return self._interior(0.0, self.length, *self.corridor_lines)

    def rooms(self) -> list[Interior]:
        return [self._interior(x0, x1, row.y0, row.y1) for row in self.rows
                for x0, x1 in zip(row.cuts[:-1], row.cuts[1:])]

    def walls(self) -> list[Box]:
        """Outer walls, the walls along x with each room's door, the walls between neighbours."""
        boxes = self._wall(1, 0.0, 0.0, self.length, []) + self._wall(1, self.width, 0.0, self.length, [])
        boxes += self._wall(0, 0.0, 0.0, self.width, []) + self._wall(0, self.length, 0.0, self.width, [])
        for row in self.rows:
            line = row.y1 if row.toward_corridor > 0 else row.y0
            beyond = self._row_beyond(row)  # the row between this one and the corridor, if any
            cuts = sorted(set(row.cuts) | set(beyond.cuts if beyond else []))
            doors = [self._door_along(x0, x1, cuts) for x0, x1 in zip(row.cuts[:-1], row.cuts[1:])]
            boxes += self._wall(1, line, 0.0, self.length, [d for d in doors if d is not None])
            for x in row.cuts[1:-1]:
                door = None
                if self.rng.uniform() < self.config.neighbour_door_probability:
                    door = self._door_along(row.y0, row.y1, [])
                boxes += self._wall(0, x, row.y0, row.y1, [door] if door is not None else [])
        return boxes

    def _row_beyond(self, row: _Row) -> _Row | None:
        line = row.y1 if row.toward_corridor > 0 else row.y0
        return next((other for other in self.rows if other is not row and line in (other.y0, other.y1)), None)

    def _door_along(self, x0: float, x1: float, cuts: list[float]) -> float | None:
        """A door centre in [x0, x1] of a wall, clear of the walls crossing it at `cuts`; None where none fits."""
        clearance = self.config.door_width / 2.0 + self.config.wall_thickness / 2.0 + 0.1
        inside = [x0] + [c for c in cuts if x0 < c < x1] + [x1]
        spans = [(a + clearance, b - clearance) for a, b in zip(inside[:-1], inside[1:]) if b - a > 2 * clearance]
        if not spans:
            return None
        low, high = spans[int(self.rng.integers(len(spans)))]
        return float(self.rng.uniform(low, high))

    def _wall(self, axis: int, position: float, start: float, end: float, doors: list[float]) -> list[Box]:
        """A wall on the line `axis` = position (0: x = position, 1: y = position) from start to end, its
        corners closed, cut by a doorway at each door centre."""
        config = self.config
        half, run = config.wall_thickness / 2.0, 1 - axis  # the coordinate the wall runs along
        pieces, bottom = [], -config.floor_thickness
        edges = [start - half] + [e for d in sorted(doors) for e in (d - config.door_width / 2,
                                                                        d + config.door_width / 2)] + [end + half]
        spans = [(edges[i], edges[i + 1], bottom) for i in range(0, len(edges), 2)]
        spans += [(edges[i], edges[i + 1], config.door_height) for i in range(1, len(edges) - 1, 2)]  # lintels
        for a, b, z in spans:
            low, high = np.zeros(3), np.zeros(3)
            low[axis], high[axis] = position - half, position + half
            low[run], high[run] = a, b
            low[2], high[2] = z, config.height
            pieces.append(_box(low, high, "wall"))
        return pieces
