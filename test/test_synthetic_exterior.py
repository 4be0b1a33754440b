"""The generated building exterior: exact geometry (recesses, roof, trees) and its LiDAR-like scan."""
import numpy as np
import pytest

from sa_convonet_ros.denoise import estimate_noise
from sa_convonet_ros.synthetic.exterior import (
    ExteriorConfig,
    LidarSetting,
    generate_exterior,
    lidar_stations,
    observed_by_lidar,
    scan_exterior,
    window_columns,
    window_rows,
)

SMALL = ExteriorConfig(length=8.0, width=6.0, eaves_height=3.0, storeys=1, apron=2.5, trees=2, poles=1)
COARSE = LidarSetting(stations=4, standoff=4.0, angular_step_deg=0.6, voxel_size=0.1, noise_std=0.02)


@pytest.fixture(scope="module")
def house():
    return generate_exterior(0, SMALL)


@pytest.fixture(scope="module")
def scan(house):
    return scan_exterior(house, SMALL, COARSE, seed=0)


def test_windows_are_recesses_in_the_facade(house):
    (z0, z1), (u0, u1) = window_rows(SMALL)[0], window_columns(SMALL.width, SMALL)[0]
    x_face = SMALL.length / 2.0
    in_recess = [x_face - SMALL.recess / 2.0, (u0 + u1) / 2.0, (z0 + z1) / 2.0]
    behind_glass = [x_face - 1.5 * SMALL.recess, (u0 + u1) / 2.0, (z0 + z1) / 2.0]
    in_pier = [x_face - SMALL.recess / 2.0, u0 - 0.05, (z0 + z1) / 2.0]
    assert house.occupancy(np.array([in_recess, behind_glass, in_pier])).tolist() == [False, True, True]
    # the recess is exactly `recess` deep: the distance from its middle to the glass and the jambs
    assert house.surface_distance(np.array([in_recess]))[0] == pytest.approx(SMALL.recess / 2.0)


def test_the_gable_roof_is_closed_and_meets_on_the_ridge(house):
    half_core = SMALL.width / 2.0 - SMALL.recess
    ridge_top = SMALL.eaves_height + half_core + SMALL.roof_thickness * np.sqrt(2.0)
    assert house.sdf(np.array([[0.0, 0.0, ridge_top]]))[0] == pytest.approx(0.0, abs=1e-9)
    gable = [SMALL.length / 2.0 - SMALL.recess - 0.01, 0.0, SMALL.eaves_height + 0.5 * half_core]
    attic_gap = [SMALL.length / 2.0 - SMALL.recess + 0.01, 0.0, SMALL.eaves_height + 0.5 * half_core]
    assert house.occupancy(np.array([gable, attic_gap])).tolist() == [True, False]


def test_trees_and_poles_stand_on_the_apron_and_move_with_the_seed(house):
    labels = house.labels
    assert labels.count("tree") == 2 * SMALL.trees and labels.count("pole") == SMALL.poles
    low, high = house.bounds
    assert np.allclose(low[:2], -(np.array([SMALL.length, SMALL.width]) / 2.0 + SMALL.apron))
    other = generate_exterior(1, SMALL)
    trees = [p.center for p in house.primitives if p.label == "tree"]
    assert not np.allclose(trees, [p.center for p in other.primitives if p.label == "tree"])


def test_stations_ring_the_building_outside_it(house):
    stations = lidar_stations(SMALL, COARSE)
    assert stations.shape == (COARSE.stations, 3)
    assert np.all(house.sdf(stations) > 1.0)


def test_scan_lies_on_the_surface_within_the_noise(house, scan):
    distance = house.surface_distance(scan.astype(np.float64))
    assert np.median(distance) < COARSE.noise_std
    # range noise, and voxels that average points across an edge
    assert distance.max() < 5.0 * COARSE.noise_std + 0.5 * np.sqrt(3.0) * COARSE.voxel_size


def test_scan_sees_every_part_at_lidar_spacing(house, scan):
    nearest = np.argmin([np.abs(p.sdf(scan)) for p in house.primitives], axis=0)
    seen = {house.primitives[i].label for i in nearest}
    assert seen == {"ground", "wall", "roof", "tree", "pole"}
    assert 0.6 * COARSE.voxel_size < estimate_noise(scan).spacing < 1.1 * COARSE.voxel_size


def test_scans_are_reproducible(house, scan):
    np.testing.assert_array_equal(scan_exterior(house, SMALL, COARSE, seed=0), scan)


def test_the_lidar_observes_the_surface_its_points_lie_on_within_its_range(house, scan):
    from scipy.spatial import cKDTree

    truth, _ = house.sample_surface(40_000, seed=1)
    observed = observed_by_lidar(house, truth, SMALL, COARSE)
    near_scan = cKDTree(scan).query(truth, distance_upper_bound=0.05)[0] < np.inf
    assert observed[near_scan].mean() > 0.98
    assert near_scan.mean() < observed.mean() < 0.95
    assert not observed_by_lidar(house, truth, SMALL, COARSE.__class__(stations=4, standoff=4.0, max_range=1.0)).any()
