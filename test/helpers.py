"""What several test modules share: a small configuration of the reconstruction, and reference versions of
steps the package does another way (one marching-cubes pass over the whole field, trimming after it, the
mean UCE, a window's whole core), which the tests hold the package's own against."""
import numpy as np
import torch
import trimesh

from sa_convonet_ros.cache import WindowCache
from sa_convonet_ros.config import ModelConfig, get_profile
from sa_convonet_ros.meshing import BlockField, StreamingMesher
from sa_convonet_ros.optimize import uce_per_query
from sa_convonet_ros.windows import WindowGrid

TINY = ModelConfig(c_dim=8, hidden_dim=16, grid_resolution=8, unet_levels=2, unet_base_channels=8)


def small_config(iterations=0):
    """The fast profile on a 4 cm grid with 0.8 m windows and few samples: seconds per run on a CPU."""
    config = get_profile("fast")
    return config.updated(optimization={"iterations": iterations, "surface_samples": 256,
                                        "off_surface_samples": 128},
                          meshing={"voxel_size": 0.04}, windows={"window_size": 0.8, "margin": 0.2})


def extract_mesh(field: BlockField, threshold: float = 0.5) -> trimesh.Trimesh:
    """Marching cubes over every block of a whole field at once; one merged mesh in metres."""
    mesher = StreamingMesher(field.grid, field.blocks, threshold, field.fill_value)
    for key in sorted(field.blocks):
        mesher.add(key, field.blocks[key])
    return mesher.mesh()


def uce_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Unsigned cross-entropy, averaged over the last axis."""
    return uce_per_query(logits, targets).mean(dim=-1)


def core_min(grid: WindowGrid, windows: np.ndarray) -> np.ndarray:
    """World position of each window's first grid point."""
    return np.asarray(windows, dtype=np.int64) * grid.cells * grid.voxel_size


def core_unit_points(grid: WindowGrid, window: np.ndarray) -> np.ndarray:
    """All core grid points of one window in its unit-cube frame, shape (cells, cells, cells, 3), x first."""
    index = np.stack(np.meshgrid(*[np.arange(grid.cells)] * 3, indexing="ij"), axis=-1)
    return grid.unit_points_at(index)


def cached_bytes(cache: WindowCache) -> tuple[int, int]:
    """Bytes the cache holds in field blocks and in adapted states."""
    return cache._blocks.bytes, cache._states.bytes
