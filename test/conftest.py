"""Fixtures shared by the tests of the reconstruction's stages: a tiny random network and a sparse scan of a
room's corner."""
import numpy as np
import pytest
import torch

from sa_convonet_ros.model import ConvONet
from sa_convonet_ros.synthetic import generate_room, simulate_scans

from helpers import TINY


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return ConvONet(TINY).eval()


@pytest.fixture(scope="session")
def room_corner():
    """A sparse simulated scan of a 2 x 2 m corner of a generated room (walls, floor, furniture)."""
    scene = generate_room(seed=3)
    points, _ = simulate_scans(scene, "sparse", seed=0)
    low = scene.bounds[0]
    keep = np.all((points[:, :2] >= low[:2]) & (points[:, :2] <= low[:2] + 2.0), axis=1)
    return points[keep].astype(np.float64)
