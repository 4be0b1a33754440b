"""The GPU data generator (torch scene, sphere-traced scans) against the CPU one (numpy, Open3D)."""
import dataclasses

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from sa_convonet_ros.synthetic import HELD_OUT_WORLD, TRAINING_WORLD, generate_room, make_primitive_gallery_scene
from sa_convonet_ros.synthetic.scans import SCAN_SETTINGS, simulate_scans
from sa_convonet_ros.synthetic.torch_scene import TorchScene

SMALL_CAMERA = dict(image_width=40, image_height=30, pose_count=5)


@pytest.fixture(scope="module", params=["training", "held-out"])
def room(request):
    return generate_room(3001, TRAINING_WORLD if request.param == "training" else HELD_OUT_WORLD)


def test_occupancy_matches_the_cpu_scene(room):
    low, high = room.bounds
    queries = np.random.default_rng(0).uniform(low, high, size=(100_000, 3))
    expected = room.occupancy(queries)
    got = TorchScene(room).occupancy(torch.from_numpy(queries)).numpy()
    assert 0.02 < expected.mean() < 0.5
    np.testing.assert_array_equal(got, expected)


def test_field_is_the_exact_distance_of_analytic_rooms():
    room = generate_room(3003)  # boxes, cylinders, spheres, ...: exact signed distances
    queries = np.random.default_rng(1).uniform(*room.bounds, size=(20_000, 3))
    got = TorchScene(room).field(torch.from_numpy(queries)).double().numpy()
    np.testing.assert_allclose(got, room.sdf(queries), atol=2e-6)


@pytest.mark.parametrize("setting", ["dense", "sparse"])
def test_scans_of_the_same_scene_agree(room, setting):
    """Same rays: the same rays hit, the maps have the same density and see the same surfaces."""
    small = dataclasses.replace(SCAN_SETTINGS[setting], **SMALL_CAMERA)
    cpu, cpu_info = simulate_scans(room, small, seed=5)
    gpu, gpu_info = simulate_scans(room, small, seed=5, caster="torch")
    assert abs(gpu_info.hit_count - cpu_info.hit_count) <= 0.002 * cpu_info.hit_count
    assert abs(len(gpu) - len(cpu)) <= 0.01 * len(cpu)
    for a, b in ((cpu, gpu), (gpu, cpu)):  # visibility: no surface seen by one scanner only
        gaps, _ = cKDTree(b).query(a)
        assert np.quantile(gaps, 0.99) < 2.0 * small.voxel_size + 3.0 * small.noise_std


def test_torch_scans_lie_on_the_exact_surface():
    scene = make_primitive_gallery_scene()
    setting = dataclasses.replace(SCAN_SETTINGS["dense"], noise_std=0.0, **SMALL_CAMERA)
    origins = np.zeros((1, 3))
    points, info = simulate_scans(scene, setting, seed=0, caster="torch")
    assert info.point_count > 500 and origins.shape == (1, 3)
    # voxel averages of exact hits: within a voxel of the surface
    assert np.abs(scene.sdf(points)).max() < setting.voxel_size


def test_rays_that_hit_nothing_are_infinite():
    scene = make_primitive_gallery_scene()
    torch_scene = TorchScene(scene)
    origins = torch.tensor([[0.0, 0.0, 3.0], [0.0, 0.0, 3.0]])
    directions = torch.tensor([[0.0, 0.0, 1.0], [0.0, 0.0, -1.0]])
    distance = torch_scene.cast_rays(origins, directions, 0.0, 10.0)
    assert torch.isinf(distance[0])
    np.testing.assert_allclose(float(distance[1]), 3.0 - 0.0, atol=2e-4)  # the floor's top, z = 0


def test_padding_of_stacked_shapes_changes_nothing():
    """Shapes with fewer waves, holes or path points than others of their kind keep their own field."""
    room = generate_room(3002, HELD_OUT_WORLD)
    queries = np.random.default_rng(2).uniform(*room.bounds, size=(20_000, 3))
    stacked = TorchScene(room).occupancy(torch.from_numpy(queries)).numpy()
    one_by_one = np.zeros(len(queries), bool)
    for primitive in room.primitives:
        one_by_one |= primitive.contains(queries)
    np.testing.assert_array_equal(stacked, one_by_one)
