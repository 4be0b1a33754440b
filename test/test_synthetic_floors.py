"""Generated multi-room floors: the plan's geometry, its doors, and a scan of the whole floor."""
import numpy as np
import pytest
from scipy import ndimage

from sa_convonet_ros.synthetic import SCAN_SETTINGS, Scene
from sa_convonet_ros.synthetic.floors import FloorConfig, generate_floor, scan_floor

SIZE = (12.0, 8.0)


@pytest.fixture(scope="module")
def floor():
    return generate_floor(seed=1, size=SIZE)


@pytest.fixture(scope="module")
def scan(floor):
    return scan_floor(floor, "sparse", seed=0)


def test_the_same_seed_gives_the_same_floor(floor):
    def boxes(of):
        return np.array([np.concatenate(p.aabb) for p in of.scene.primitives])

    again, other = generate_floor(seed=1, size=SIZE), generate_floor(seed=2, size=SIZE)
    np.testing.assert_array_equal(boxes(again), boxes(floor))
    assert boxes(other).shape != boxes(floor).shape or not np.array_equal(boxes(other), boxes(floor))


def test_spaces_fill_the_floor_between_the_walls_without_overlapping(floor):
    config = FloorConfig()
    corridor, rooms = floor.spaces[0], floor.spaces[1:]
    assert len(rooms) >= 4 and corridor[1][0] - corridor[0][0] == pytest.approx(SIZE[0] - config.wall_thickness)
    areas = [np.prod(high[:2] - low[:2]) for low, high in floor.spaces]
    assert all(area > 2.0 for area in areas)
    for i, (low, high) in enumerate(floor.spaces):
        assert np.all(low >= [0, 0, 0]) and np.all(high <= [*SIZE, config.height])
        for other_low, other_high in floor.spaces[i + 1:]:
            assert np.any((high <= other_low) | (other_high <= low)), "two spaces overlap"
    # what the spaces leave of the floor plan is walls: at most one wall thickness around each space
    walls = SIZE[0] * SIZE[1] - sum(areas)
    perimeters = sum(np.sum(2 * (high[:2] - low[:2])) for low, high in floor.spaces)
    assert 0 < walls < perimeters * config.wall_thickness


def test_walls_close_every_space_above_its_doors(floor):
    """Just inside a space's sides, near the ceiling, is free; just outside them (walls and lintels) is solid."""
    config = FloorConfig()
    z = config.door_height + 0.3  # above the doorways and the furniture
    for low, high in floor.spaces:
        inside, outside = _side_points(low, high, z, -0.02), _side_points(low, high, z, 0.02)
        assert not floor.scene.occupancy(inside).any()
        assert floor.scene.occupancy(outside).all()


def _side_points(low, high, z, offset):
    """Points along the four vertical sides of a space's box, `offset` metres outside it (< 0: inside)."""
    t = np.linspace(0.05, 0.95, 40)
    x, y = low[0] + t * (high[0] - low[0]), low[1] + t * (high[1] - low[1])
    sides = [np.c_[x, np.full_like(x, low[1] - offset)], np.c_[x, np.full_like(x, high[1] + offset)],
             np.c_[np.full_like(y, low[0] - offset), y], np.c_[np.full_like(y, high[0] + offset), y]]
    xy = np.concatenate(sides)
    return np.c_[xy, np.full(len(xy), z)]


def test_doors_join_every_room_to_the_corridor(floor):
    """The walls alone, cut at hip height: all free space inside the outer walls is one region."""
    walls = Scene([p for p in floor.scene.primitives if p.label == "wall"])
    step, half = 0.05, FloorConfig().wall_thickness / 2
    xs, ys = np.arange(half + step / 2, SIZE[0] - half, step), np.arange(half + step / 2, SIZE[1] - half, step)
    grid = np.stack(np.meshgrid(xs, ys, indexing="ij"), axis=-1).reshape(-1, 2)
    free = ~walls.occupancy(np.c_[grid, np.full(len(grid), 1.0)]).reshape(len(xs), len(ys))
    _, regions = ndimage.label(free)
    assert regions == 1
    # and the doors are the only gaps: the same cut above the doorways splits the floor into its spaces
    free_above = ~walls.occupancy(np.c_[grid, np.full(len(grid), 2.4)]).reshape(len(xs), len(ys))
    assert ndimage.label(free_above)[1] == len(floor.spaces)


def test_a_floor_without_room_for_rooms_is_refused():
    with pytest.raises(ValueError, match="no room for rooms"):
        generate_floor(seed=0, size=(12.0, 6.0))


def test_the_scan_lies_on_the_floors_surface_and_sees_every_space(floor, scan):
    points, infos = scan
    setting = SCAN_SETTINGS["sparse"]
    assert points.dtype == np.float32 and len(infos) == len(floor.spaces)
    sample = points[np.random.default_rng(0).choice(len(points), 5000, replace=False)]
    distance = np.abs(floor.scene.sdf(sample, truncation=0.2))
    assert distance.max() < 6.0 * setting.noise_std + 0.5 * np.sqrt(3.0) * setting.voxel_size + 0.002
    assert np.median(distance) < setting.noise_std
    for low, high in floor.spaces:  # the floor of each space is seen
        above = np.all((points[:, :2] > low[:2]) & (points[:, :2] < high[:2]), axis=1)
        on_floor = above & (np.abs(points[:, 2]) < 0.05)
        assert on_floor.sum() > 0.2 * np.prod(high[:2] - low[:2]) / setting.voxel_size ** 2
    # one map: the per-space clouds are voxel-filtered together, so no two points share a voxel
    cells = np.floor(points / setting.voxel_size).astype(np.int64)
    assert len(np.unique(cells, axis=0)) == len(points)
