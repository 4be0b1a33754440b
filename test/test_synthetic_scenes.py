"""Procedural scenes: analytic primitives, exact union occupancy and surface samples, rooms."""
import numpy as np
import pytest

from sa_convonet_ros.synthetic import (
    Box,
    Capsule,
    Cone,
    Cylinder,
    RoomConfig,
    Scene,
    Sphere,
    Torus,
    generate_room,
    make_box_scene,
    make_crossing_planes_scene,
    make_primitive_gallery_scene,
    rotation_from_z,
    sample_occupancy_queries,
    yaw_rotation,
)

SHELL_LABELS = {"floor", "wall", "ceiling"}

PRIMITIVES = [
    Box(center=(0.1, -0.2, 0.3), half_extents=(0.3, 0.1, 0.2), rotation=rotation_from_z([1.0, 2.0, 0.5])),
    Sphere(center=(0.2, 0.0, 0.1), radius=0.25),
    Cylinder(center=(0.0, 0.1, 0.0), radius=0.15, height=0.6, rotation=rotation_from_z([0.0, 1.0, 1.0])),
    Capsule(center=(0.0, 0.0, 0.2), radius=0.1, height=0.4, rotation=yaw_rotation(0.3) @ rotation_from_z([1, 0, 0])),
    Cone(center=(0.0, 0.0, -0.1), radius=0.2, height=0.5, rotation=rotation_from_z([0.2, -0.3, 1.0])),
    Torus(center=(0.1, 0.1, 0.0), major_radius=0.3, minor_radius=0.07, rotation=rotation_from_z([1.0, 0.0, 1.0])),
]


@pytest.fixture(scope="module")
def room():
    return generate_room(7)


# --- primitives -------------------------------------------------------------------------------

@pytest.mark.parametrize("primitive", PRIMITIVES, ids=lambda p: type(p).__name__)
def test_primitive_inside_test_agrees_with_sdf_and_bounds(primitive):
    lo, hi = primitive.aabb
    points = np.random.default_rng(0).uniform(lo - 0.1, hi + 0.1, size=(20000, 3))
    inside = primitive.contains(points)
    sdf = primitive.sdf(points)
    assert 0.02 < inside.mean() < 0.95
    away_from_surface = np.abs(sdf) > 1e-9
    np.testing.assert_array_equal(inside[away_from_surface], sdf[away_from_surface] < 0)
    assert np.all((points[inside] >= lo) & (points[inside] <= hi))


@pytest.mark.parametrize("primitive", PRIMITIVES, ids=lambda p: type(p).__name__)
def test_primitive_surface_samples_lie_on_surface_with_outward_normals(primitive):
    points, normals = primitive.sample_surface(5000, np.random.default_rng(1))
    assert np.abs(primitive.sdf(points)).max() < 1e-9
    np.testing.assert_allclose(np.linalg.norm(normals, axis=1), 1.0, atol=1e-9)
    assert not primitive.contains(points + 1e-4 * normals).any()
    assert primitive.contains(points - 1e-4 * normals).all()


@pytest.mark.parametrize("primitive", PRIMITIVES, ids=lambda p: type(p).__name__)
def test_primitive_mesh_matches_analytic_shape(primitive):
    mesh = primitive.mesh()
    # Inscribed tessellations: vertices on the analytic surface, area slightly below.
    assert np.abs(primitive.sdf(mesh.vertices)).max() < 1e-6
    assert mesh.is_watertight
    assert 0.97 * primitive.area < mesh.area < 1.001 * primitive.area


def test_box_occupancy_by_hand():
    scene = make_box_scene(center=(1.0, 0.0, 0.5), half_extents=(0.5, 0.1, 0.5), yaw=np.pi / 2)
    points = np.array([
        [1.0, 0.0, 0.5],  # centre
        [1.05, 0.45, 0.9],  # inside: the yaw swapped the x and y extents
        [1.45, 0.0, 0.5],  # outside along x after the yaw
        [1.0, 0.0, 1.05],  # above
    ])
    np.testing.assert_array_equal(scene.occupancy(points), [True, True, False, False])


def test_table_leg_occupancy_by_hand():
    top = Box(center=(0.0, 0.0, 0.735), half_extents=(0.6, 0.4, 0.015))
    legs = [Cylinder(center=(sx * 0.55, sy * 0.35, 0.36), radius=0.02, height=0.72)
            for sx in (-1, 1) for sy in (-1, 1)]
    scene = Scene([top, *legs])
    points = np.array([
        [0.55, 0.35, 0.3],  # inside a leg
        [0.565, 0.35, 0.3],  # inside the same leg, near its side
        [0.58, 0.35, 0.3],  # just outside that leg
        [0.0, 0.0, 0.3],  # under the table
        [0.0, 0.0, 0.74],  # inside the top
        [0.0, 0.0, 0.76],  # above the top
    ])
    np.testing.assert_array_equal(scene.occupancy(points), [True, True, False, False, True, False])


# --- scenes --------------------------------------------------------------------------------------

def test_culled_occupancy_and_sdf_match_brute_force(room):
    points = np.random.default_rng(2).uniform(*room.bounds, size=(20000, 3))
    brute_inside = np.any([p.contains(points) for p in room.primitives], axis=0)
    np.testing.assert_array_equal(room.occupancy(points), brute_inside)
    brute_sdf = np.min([p.sdf(points) for p in room.primitives], axis=0)
    np.testing.assert_allclose(room.sdf(points), brute_sdf)
    np.testing.assert_allclose(room.sdf(points, truncation=0.1), np.minimum(brute_sdf, 0.1))


@pytest.mark.parametrize("make_scene",
                         [make_crossing_planes_scene, make_primitive_gallery_scene, lambda: generate_room(7)],
                         ids=["crossing_planes", "gallery", "room"])
def test_surface_samples_lie_on_union_boundary(make_scene):
    scene = make_scene()
    points, normals = scene.sample_surface(20000, seed=3)
    assert points.shape == normals.shape == (20000, 3)
    assert np.abs(scene.sdf(points)).max() < 1e-9
    # Occupancy flips across the surface: free just outside, solid just inside. Right next to a
    # crease where two primitives meet, "just outside" at 1 mm may already touch the neighbour.
    assert not scene.occupancy(points + 1e-5 * normals).any()
    assert scene.occupancy(points + 1e-3 * normals).mean() < 0.005
    assert scene.occupancy(points - 1e-3 * normals).all()
    # No sample is buried inside another primitive (beyond rounding of its own surface).
    for primitive in scene.primitives:
        assert primitive.sdf(points).min() > -1e-9


def test_crossing_planes_samples_skip_the_hidden_core():
    size, thickness = 1.0, 0.05
    points, _ = make_crossing_planes_scene(size, thickness).sample_surface(20000, seed=4)
    # Faces inside the other slab (|x| and |y| both below thickness/2) are not part of the boundary,
    # except on the top and bottom faces.
    core = np.all(np.abs(points[:, :2]) < thickness / 2 - 1e-6, axis=1)
    assert np.all(np.abs(np.abs(points[core, 2]) - size / 2) < 1e-9)


def test_sample_surface_is_reproducible(room):
    a, _ = room.sample_surface(1000, seed=5)
    b, _ = room.sample_surface(1000, seed=5)
    c, _ = room.sample_surface(1000, seed=6)
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_occupancy_queries(room):
    points, occupancy = sample_occupancy_queries(room, 10000, near_surface_fraction=0.6, sigma=0.02, seed=0)
    assert points.shape == (10000, 3) and points.dtype == np.float32
    assert occupancy.shape == (10000,) and occupancy.dtype == bool
    np.testing.assert_array_equal(occupancy, room.occupancy(points))
    assert 0.05 < occupancy.mean() < 0.6
    near = np.abs(room.sdf(points, truncation=0.2)) < 0.06
    assert near.mean() > 0.6


# --- rooms ---------------------------------------------------------------------------------------

def _room_signature(scene: Scene) -> list:
    return [(type(p).__name__, p.label, *np.round(p.center, 12), *np.round(p.rotation.ravel(), 12))
            for p in scene.primitives]


def test_generate_room_is_reproducible_and_seed_dependent():
    assert _room_signature(generate_room(11)) == _room_signature(generate_room(11))
    signatures = [_room_signature(generate_room(seed)) for seed in range(5)]
    assert all(signatures[i] != signatures[j] for i in range(5) for j in range(i))
    points = np.random.default_rng(0).uniform(-3, 3, size=(5000, 3))
    np.testing.assert_array_equal(generate_room(11).occupancy(points), generate_room(11).occupancy(points))


@pytest.mark.parametrize("seed", range(8))
def test_room_layout(seed):
    scene = generate_room(seed)
    config = RoomConfig()
    lo, hi = scene.interior
    size = hi - lo
    assert config.length_range[0] <= size[0] <= config.length_range[1]
    assert config.width_range[0] <= size[1] <= config.width_range[1]
    assert config.height_range[0] <= size[2] <= config.height_range[1]
    labels = set(scene.labels)
    assert {"floor", "wall"} <= labels and "ceiling" not in labels
    for primitive in scene.primitives:
        if primitive.label in SHELL_LABELS:
            continue
        # Furniture and clutter stand inside the room, on or above the floor.
        box_lo, box_hi = primitive.aabb
        assert np.all(box_lo[:2] >= lo[:2] - 1e-9) and np.all(box_hi[:2] <= hi[:2] + 1e-9), primitive.label
        assert box_lo[2] >= -1e-9 and box_hi[2] <= hi[2]


def test_room_options():
    closed = generate_room(0, RoomConfig(open_probability=0.0, door_probability=0.0, ceiling=True))
    assert closed.labels.count("wall") == 4 and closed.labels.count("ceiling") == 1
    # Inside a closed room with a ceiling, the centre is free and the space above the ceiling is not enclosed.
    lo, hi = closed.interior
    assert not closed.occupancy(np.array([[0.0, 0.0, hi[2] - 0.05]])).any()
    assert closed.occupancy(np.array([[0.0, 0.0, hi[2] + 0.05]])).all()
    empty = generate_room(0, RoomConfig(table_count=(0, 0), chair_count=(0, 0), shelf_count=(0, 0),
                                        sofa_count=(0, 0), lamp_count=(0, 0), clutter_count=(0, 0)))
    assert set(empty.labels) <= SHELL_LABELS


def test_rooms_of_a_fixed_size():
    scene = generate_room(4, RoomConfig.of_size(3.5, 2.5, 2.0, open_probability=0.0, door_probability=0.0))
    lo, hi = scene.interior
    np.testing.assert_allclose(hi - lo, [3.5, 2.5, 2.0], atol=1e-9)
    assert scene.labels.count("wall") == 4


def test_the_surface_area_of_a_union_leaves_out_what_is_buried():
    """Two unit cubes side by side share a face: their union's boundary is 10 faces, not 12."""
    from sa_convonet_ros.synthetic import Scene
    from sa_convonet_ros.synthetic.primitives import Box

    scene = Scene([Box(center=(0.0, 0.0, 0.0), half_extents=(0.5, 0.5, 0.5)),
                   Box(center=(1.0, 0.0, 0.0), half_extents=(0.5, 0.5, 0.5))])
    assert scene.surface_area() == pytest.approx(10.0, rel=0.01)
