"""Training data: rooms with scans over a range of densities and noise, crops in the reconstruction's frame."""
import math

import numpy as np
import pytest
import torch

from sa_convonet_ros.denoise import estimate_noise
from sa_convonet_ros.synthetic import TRAINING_WORLD, generate_room
from sa_convonet_ros.training.crops import (
    CropSampler,
    DataConfig,
    collate,
    from_crop,
    load_rooms,
    scan_settings,
    to_crop,
    validation_crops,
)
from sa_convonet_ros.window_scale import window_scale_for
from sa_convonet_ros.windows import WindowGrid

SMALL = DataConfig(max_points=1000, uniform_queries=200, near_queries=200, surface_samples=20000)


@pytest.fixture(scope="module")
def room(tmp_path_factory):
    return load_rooms([1000], SMALL, torch.device("cpu"), str(tmp_path_factory.mktemp("cache")))[0]


def test_crop_frame_matches_the_reconstruction_windows():
    grid = WindowGrid.from_sizes(1.2, 0.02, 0.2)
    assert math.isclose(grid.crop_size, DataConfig().crop_size)
    window = np.array([1, -2, 0])
    points = np.random.default_rng(0).uniform(-3, 3, (100, 3))
    unit = to_crop(torch.from_numpy(points), torch.from_numpy(grid.center(window)), torch.eye(3, dtype=torch.float64),
                   grid.crop_size)
    np.testing.assert_allclose(unit.numpy(), grid.to_unit(points, window), atol=1e-6)


def test_rooms_hold_standard_and_random_scans_of_the_training_world(room):
    settings = scan_settings(1000, SMALL)
    assert [s.name for s in settings[:2]] == ["dense", "sparse"] and len(settings) == 2 + SMALL.random_scans
    for s in settings[2:]:
        assert SMALL.scan_voxel_range[0] <= s.voxel_size <= SMALL.scan_voxel_range[1]
        assert SMALL.scan_noise_range[0] <= s.noise_std <= SMALL.scan_noise_range[1]
    assert len(room.scans) == len(settings) and len(room.surface) == SMALL.surface_samples
    counts = [len(scan) for scan in room.scans]
    assert counts[0] > counts[1]  # 1 cm maps are denser than 4 cm ones
    scene = generate_room(1000, TRAINING_WORLD)
    assert np.abs(scene.sdf(room.surface.double().numpy()[:2000])).max() < 1e-6


def test_crops_are_in_the_unit_cube_and_labels_are_exact(room):
    sampler = CropSampler(SMALL, seed=1, device=torch.device("cpu"))
    scene = generate_room(1000, TRAINING_WORLD)
    for _ in range(6):
        crop = sampler.crop(room)
        assert crop is not None
        assert SMALL.min_points <= len(crop.points) <= SMALL.max_points
        assert torch.all(crop.points.abs() <= 0.5)
        assert torch.all(crop.queries.abs() <= SMALL.query_extent + 1e-6)
        world = from_crop(crop.queries, crop.centre, crop.rotation, crop.crop_size)
        np.testing.assert_array_equal(crop.labels.numpy() > 0.5, scene.occupancy(world.double().numpy()))
        np.testing.assert_allclose(to_crop(world, crop.centre, crop.rotation, crop.crop_size), crop.queries, atol=1e-5)
        assert 0 < crop.labels[crop.n_uniform:].mean() < 1  # near-surface queries straddle the surface


def test_crops_are_deterministic_and_scales_vary_the_crop_edge(room):
    a = CropSampler(SMALL, seed=7, device=torch.device("cpu")).crop(room)
    b = CropSampler(SMALL, seed=7, device=torch.device("cpu")).crop(room)
    torch.testing.assert_close(a.points, b.points)
    torch.testing.assert_close(a.queries, b.queries)
    scaled = DataConfig(**{**SMALL.__dict__, "crop_scale_range": (0.5, 2.0)})
    sampler = CropSampler(scaled, seed=3, device=torch.device("cpu"))
    sizes = [sampler.crop(room).crop_size for _ in range(12)]
    assert min(sizes) >= 0.8 - 1e-9 and max(sizes) <= 3.2 + 1e-9 and max(sizes) / min(sizes) > 1.5


def test_crops_can_grow_with_their_scan_spacing_as_the_reconstruction_windows_do(room):
    follows = DataConfig(**{**SMALL.__dict__, "crop_scale_follows_spacing": True})
    sampler = CropSampler(follows, seed=3, device=torch.device("cpu"))
    scales = [sampler.window_scale(room, scan) for scan in range(len(room.scans))]
    sparse_spacing = estimate_noise(room.scans[1].numpy()).spacing  # 4 cm voxels: about 2.5 cm apart
    assert scales[0] == 1.0 and scales[1] == window_scale_for(sparse_spacing) > 1.0
    sizes = {round(sampler.crop(room).crop_size, 6) for _ in range(30)}
    assert sizes <= {round(SMALL.crop_size * s, 6) for s in [1.0, *scales]}
    assert round(SMALL.crop_size * scales[1], 6) in sizes


def test_validation_crops_are_fixed_and_collate_pads(room):
    first = validation_crops([room], SMALL, 3, seed=5)
    second = validation_crops([room], SMALL, 3, seed=5)
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a.points, b.points)
    points, mask, queries, labels = collate(first, torch.device("cpu"))
    assert points.shape[0] == 3 and mask.sum(1).tolist() == [len(c.points) for c in first]
    assert queries.shape == (3, 400, 3) and labels.shape == (3, 400)


def test_validation_crops_split_evenly_between_scales_the_first_scale_as_alone(room):
    alone = validation_crops([room], SMALL, 2, seed=5)
    mixed = validation_crops([room], SMALL, 5, seed=5, scales=(1.0, 2.0))
    assert [round(c.crop_size / SMALL.crop_size, 6) for c in mixed] == [1.0, 1.0, 1.0, 2.0, 2.0]
    for a, b in zip(alone, mixed[:2], strict=True):
        torch.testing.assert_close(a.points, b.points)


def test_unknown_world_is_rejected():
    with pytest.raises(ValueError, match="world must be one of"):
        DataConfig(world="moon")
