"""The clearance of off-surface samples from the planes of sparse points."""
import numpy as np
import torch
from scipy.spatial import cKDTree

from sa_convonet_ros.meshing import point_gaps
from sa_convonet_ros.window_batch import ClearancePlanes, WindowBatch, sample_uce_queries

CPU = torch.device("cpu")


def lattice(x0, spacing, height=0.0, size=0.8):
    steps = np.arange(0.0, size, spacing)
    return np.stack(np.meshgrid(x0 + steps, steps, [height], indexing="ij"), -1).reshape(-1, 3)


def test_planes_are_held_only_where_the_points_lie_far_apart():
    dense, sparse = lattice(0.0, 0.01), lattice(2.0, 0.04, height=0.3)
    cloud = np.vstack([dense, sparse])
    tree = cKDTree(cloud)
    planes = ClearancePlanes.where_sparse(tree, point_gaps(tree), min_gap=0.03)
    assert planes.index.tolist() == list(range(len(dense), len(cloud)))
    assert np.allclose(np.abs(planes.normals), [0, 0, 1], atol=1e-6)  # the sparse patch is flat in z
    normals = planes.at(np.array([0, len(dense) + 5, 3, len(cloud) - 1]))
    assert np.allclose(np.abs(normals[:, 2]), [0, 1, 0, 1])
    # a worker's share of the cloud, re-indexed by the place of each point in it
    share = np.array([2, len(dense) + 1, len(dense) + 7])
    part = planes.among(share)
    assert part.index.tolist() == [1, 2] and np.array_equal(part.at(np.arange(3)), planes.at(share))
    assert len(planes.among(np.zeros(0, dtype=np.int64)).index) == 0
    # three points are too few for a gap, so none gets a plane
    few = cKDTree(cloud[:3])
    assert len(ClearancePlanes.where_sparse(few, point_gaps(few), 0.0).index) == 0


def test_off_surface_samples_with_a_plane_keep_clear_of_it_and_the_others_do_not_move():
    cloud = lattice(-0.4, 0.04, height=0.1).astype(np.float32)
    normals = np.tile(np.float32([0, 0, 1]), (len(cloud), 1))
    without = np.zeros_like(normals)
    batch = WindowBatch.from_arrays([cloud, cloud], CPU, 5000, np.random.default_rng(0), normals=[normals, without])
    sigma, clearance = 0.05, 0.3
    cleared, _ = sample_uce_queries(batch, 500, 2000, sigma, torch.Generator().manual_seed(3), clearance=clearance)
    plain, _ = sample_uce_queries(batch, 500, 2000, sigma, torch.Generator().manual_seed(3))
    assert torch.equal(cleared[:, :500], plain[:, :500])  # surface samples are the points themselves
    assert torch.equal(cleared[:, :, :2], plain[:, :, :2])  # moved along the normal only
    assert torch.equal(cleared[1], plain[1])  # no plane: the Gaussian offsets as drawn
    height = (cleared[0, 500:, 2] - 0.1).abs()
    assert height.min() >= clearance * sigma - 1e-6
    near = (plain[0, 500:, 2] - 0.1).abs() < clearance * sigma
    assert 0.1 < near.float().mean() < 0.4  # about a quarter were closer and were moved
    far = ~near
    assert torch.equal(cleared[0, 500:, 2][far], plain[0, 500:, 2][far])
    # each keeps its side of the plane
    side = torch.where(plain[0, 500:, 2] >= 0.1, 1.0, -1.0)
    assert torch.equal(torch.sign(cleared[0, 500:, 2] - 0.1)[near], side[near])
