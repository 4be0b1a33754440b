"""Simulated robot inputs: noisy surface clouds and depth-camera maps of procedural rooms."""
import dataclasses

import numpy as np
import pytest

from sa_convonet_ros.synthetic import generate_room, make_box_scene, make_primitive_gallery_scene
from sa_convonet_ros.synthetic.scans import (
    SCAN_SETTINGS,
    ScanInfo,
    ScanSetting,
    in_sight,
    look_rotation,
    observed_by_cameras,
    plan_camera_poses,
    simulate_scans,
    surface_cloud,
    voxel_downsample,
)


@pytest.fixture(scope="module")
def room():
    return generate_room(3)


@pytest.fixture(scope="module")
def scans(room):
    return {name: simulate_scans(room, name, seed=0) for name in ("dense", "sparse")}


def test_scans_are_reproducible(room, scans):
    points, info = simulate_scans(room, "sparse", seed=0)
    np.testing.assert_array_equal(points, scans["sparse"][0])
    np.testing.assert_array_equal(info.camera_poses, scans["sparse"][1].camera_poses)
    other, _ = simulate_scans(room, "sparse", seed=1)
    assert other.shape != points.shape or not np.array_equal(other, points)


@pytest.mark.parametrize("name", ["dense", "sparse"])
def test_scan_points_lie_near_the_surface(room, scans, name):
    points, info = scans[name]
    setting = SCAN_SETTINGS[name]
    assert points.dtype == np.float32 and points.shape == (info.point_count, 3)
    distance = np.abs(room.sdf(points, truncation=0.2))
    # Range noise, the averaging of voxels that straddle edges, and the tessellation.
    bound = 6.0 * setting.noise_std + 0.5 * np.sqrt(3.0) * setting.voxel_size + 0.002
    assert distance.max() < bound
    assert np.median(distance) < setting.noise_std


def test_scan_points_match_ground_truth_samples(room, scans):
    from scipy.spatial import cKDTree

    gt_points, _ = room.sample_surface(200000, seed=0)
    points, _ = scans["dense"]
    distance, _ = cKDTree(gt_points).query(points[::20])
    # GT samples are ~2 cm apart on ~60 m2 of surface; the scan is within a few noise sigmas of them.
    assert np.quantile(distance, 0.99) < 0.03


def test_sparse_setting_has_fewer_points(scans):
    dense_info, sparse_info = scans["dense"][1], scans["sparse"][1]
    assert sparse_info.point_count < dense_info.point_count / 3
    assert 50_000 <= dense_info.point_count <= 400_000
    assert dense_info.hit_count <= dense_info.ray_count


@pytest.mark.parametrize("name", ["dense", "sparse"])
def test_voxel_filter_leaves_one_point_per_voxel(scans, name):
    points, _ = scans[name]
    keys = np.floor(points.astype(np.float64) / SCAN_SETTINGS[name].voxel_size).astype(np.int64)
    assert len(np.unique(keys, axis=0)) == len(points)


def test_voxel_downsample_averages_within_voxels():
    points = np.array([[0.01, 0.01, 0.01], [0.03, 0.03, 0.03], [0.15, 0.0, 0.0]])
    filtered = voxel_downsample(points, 0.1)
    # Means on a voxel face are nudged inside by a float32-sized margin.
    np.testing.assert_allclose(filtered, [[0.02, 0.02, 0.02], [0.15, 0.0, 0.0]], atol=1e-6)
    assert voxel_downsample(np.zeros((0, 3)), 0.1).shape == (0, 3)


def test_camera_poses_are_in_free_space(room, scans):
    for _, info in scans.values():
        setting = info.setting
        poses = info.camera_poses
        assert len(poses) == setting.pose_count
        positions = poses[:, :3, 3]
        assert not room.occupancy(positions).any()
        assert np.all(room.sdf(positions) >= setting.clearance - 1e-9)
        lo, hi = room.interior
        assert np.all((positions > lo) & (positions < hi))
        assert np.all((positions[:, 2] >= setting.height_range[0]) & (positions[:, 2] <= setting.height_range[1]))
        rotations = poses[:, :3, :3]
        np.testing.assert_allclose(rotations @ rotations.transpose(0, 2, 1),
                                   np.broadcast_to(np.eye(3), rotations.shape), atol=1e-9)
        np.testing.assert_allclose(np.linalg.det(rotations), 1.0)
        # Optical z is the viewing direction: level or slightly down.
        assert np.all(rotations[:, 2, 2] <= 0.0)


def test_scanning_a_non_room_scene_orbits_it():
    scene = make_primitive_gallery_scene()
    setting = dataclasses.replace(SCAN_SETTINGS["sparse"], pose_count=8)
    points, info = simulate_scans(scene, setting, seed=0)
    assert len(info.camera_poses) == 8 and info.point_count > 1000
    assert not scene.occupancy(info.camera_poses[:, :3, 3]).any()
    assert np.abs(scene.sdf(points, truncation=0.2)).max() < 0.15


def test_camera_poses_respect_clearance_in_a_cluttered_room():
    room = generate_room(5)
    setting = ScanSetting(clearance=0.5, pose_count=10)
    poses = plan_camera_poses(room, setting, seed=2)
    assert np.all(room.sdf(poses[:, :3, 3]) >= 0.5 - 1e-9)


def test_unknown_setting_name_is_rejected(room):
    with pytest.raises(ValueError, match="unknown scan setting"):
        simulate_scans(room, "medium")


def test_surface_cloud_noise(room):
    clean = surface_cloud(room, 5000, noise_std=0.0, seed=0)
    noisy = surface_cloud(room, 5000, noise_std=0.01, seed=0)
    assert clean.dtype == np.float32 and clean.shape == (5000, 3)
    assert np.abs(room.sdf(clean)).max() < 1e-6
    # Isotropic noise: the normal component is N(0, sigma), so the mean distance is about 0.8 sigma.
    assert 0.005 < np.abs(room.sdf(noisy, truncation=0.1)).mean() < 0.01
    np.testing.assert_array_equal(noisy, surface_cloud(room, 5000, noise_std=0.01, seed=0))


def test_a_face_is_in_sight_from_its_side_even_at_a_grazing_angle_and_its_back_is_not():
    box = make_box_scene(half_extents=(0.5, 0.5, 0.5))
    front = np.c_[np.full(50, 0.5), np.linspace(-0.4, 0.4, 50), np.zeros(50)]  # the +x face
    back = front * [-1, 1, 1]
    side = np.c_[np.linspace(-0.4, 0.4, 50), np.full(50, 0.5), np.zeros(50)]  # the +y face
    viewpoint = np.array([3.0, 0.55, 0.0])  # in front of +x, 5 cm above the +y face's plane: grazing it
    assert in_sight(box, viewpoint, front, 10.0).all()
    assert not in_sight(box, viewpoint, back, 10.0).any()
    assert in_sight(box, viewpoint, side, 10.0).all()  # at 1.6 to 0.8 degrees
    assert not in_sight(box, viewpoint, front, 2.0).any()  # out of range


def test_cameras_observe_what_is_in_view_and_in_sight_only():
    box = make_box_scene(half_extents=(0.5, 0.5, 0.5))
    pose = np.eye(4)
    pose[:3, :3], pose[:3, 3] = look_rotation(np.pi, 0.0), [3.0, 0.0, 0.0]  # looking along -x at the box
    info = ScanInfo(SCAN_SETTINGS["dense"], pose[None], 0, 0, 0, 0.0)
    front = np.c_[np.full(50, 0.5), np.linspace(-0.4, 0.4, 50), np.zeros(50)]
    assert observed_by_cameras(box, front, info).all()
    assert not observed_by_cameras(box, front * [-1, 1, 1], info).any()  # the back
    beside = front + [0.0, 5.0, 0.0]  # in sight, but outside the 75-degree field of view
    assert not observed_by_cameras(make_box_scene(center=(0.0, 5.0, 0.0)), beside, info).any()


def test_the_scans_points_lie_on_the_observed_surface(room, scans):
    """Every ground-truth point next to a scan point was observed, and more: surface the sensor saw at an
    angle or a distance that gave few points."""
    from scipy.spatial import cKDTree

    points, info = scans["dense"]
    truth, _ = room.sample_surface(60_000, seed=1)
    observed = observed_by_cameras(room, truth, info)
    near_scan = cKDTree(points).query(truth, distance_upper_bound=0.01)[0] < np.inf
    assert observed[near_scan].mean() > 0.99
    assert near_scan.mean() < observed.mean() < 0.9  # not the ceiling, the camera looks down
