"""The windows of a batch as tensors, and the UCE queries drawn from them at each step.

Each window's points are in its own unit-cube frame, padded to one length: the encoder's input (capped as
in training) and the observed points the loss samples from. A step draws, per window, surface samples
(observed points, target 0.5) and off-surface samples (observed points plus Gaussian noise, target 1.0).

Where a surface's points lie several grid cells apart (a far wall), off-surface samples that land on the
surface between its points push the field off the level where the mesh should join them; such samples are
moved out to a clearance from the local plane (`ClearancePlanes`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import cKDTree

from .denoise import plane_fits

# Points per plane fit of the clearance: a lattice's nearest ring and a little more.
CLEARANCE_NEIGHBOURS = 8
# Rows per pass of the clearance's plane fits: bounds their temporaries to tens of MB on any map.
CLEARANCE_CHUNK = 1 << 16


@dataclass
class ClearancePlanes:
    """The planes some points' off-surface samples keep clear of: `index` (sorted) into a cloud's points,
    `normals` (K, 3) the unit normals of the planes through their nearest points."""

    index: np.ndarray
    normals: np.ndarray

    @classmethod
    def where_sparse(cls, tree: cKDTree, gaps: np.ndarray, min_gap: float) -> "ClearancePlanes":
        """Planes at the points of `tree` whose gap (meshing.point_gaps) is at least `min_gap`."""
        index = np.flatnonzero(np.isfinite(gaps) & (gaps >= min_gap))  # inf: too few points for a plane
        normals = np.zeros((len(index), 3), dtype=np.float32)
        k = min(CLEARANCE_NEIGHBOURS, tree.n)
        for start in range(0, len(index), CLEARANCE_CHUNK):
            _, neighbours = tree.query(tree.data[index[start:start + CLEARANCE_CHUNK]], k=k, workers=-1)
            normals[start:start + CLEARANCE_CHUNK] = plane_fits(tree.data, neighbours)[1]
        return cls(index, normals)

    def among(self, points: np.ndarray) -> "ClearancePlanes":
        """The planes at the cloud's points `points` (sorted indices), indexed by their place in `points`."""
        place, held = _places(points, self.index)
        return ClearancePlanes(place[held], self.normals[held])

    def at(self, points: np.ndarray) -> np.ndarray:
        """The normals at the cloud's points `points` (indices), (n, 3); zero where no plane is held."""
        out = np.zeros((len(points), 3), dtype=np.float32)
        slot, held = _places(self.index, points)
        out[held] = self.normals[slot[held]]
        return out


def _places(sorted_ids: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Where each of `ids` stands in `sorted_ids`, and whether it is there at all (bool)."""
    if len(sorted_ids) == 0:
        return np.zeros(len(ids), dtype=np.int64), np.zeros(len(ids), dtype=bool)
    place = np.minimum(np.searchsorted(sorted_ids, ids), len(sorted_ids) - 1)
    return place, sorted_ids[place] == ids


@dataclass
class WindowBatch:
    """Points of several windows, each in its own unit-cube frame, padded to one length.

    `points` feed the encoder (capped at `max_points` per window, as in training); `samples` are the
    observed points the UCE loss draws its surface samples from (all of them, up to `max_samples`).
    """

    points: torch.Tensor  # [W, N, 3] float32; padding rows are zero
    mask: torch.Tensor  # [W, N] bool, True for real points (real points come first)
    counts: torch.Tensor  # [W] number of real points
    samples: torch.Tensor | None = None  # [W, S, 3]; None: draw from `points`
    sample_counts: torch.Tensor | None = None  # [W]
    # [W, S]: each window's running share of its sample weights (ending at 1); None: every point alike
    sample_cdf: torch.Tensor | None = None
    # [W, S, 3]: the plane normal each loss point's off-surface samples keep clear of (zero: none); None: none
    sample_normals: torch.Tensor | None = None

    @classmethod
    def from_arrays(cls, clouds: list[np.ndarray], device: torch.device, max_points: int,
                    rng: np.random.Generator, max_samples: int | None = None,
                    targets: list[np.ndarray] | None = None,
                    weights: list[np.ndarray] | None = None,
                    normals: list[np.ndarray] | None = None) -> "WindowBatch":
        """`targets` (one per cloud): the points the loss samples from when they differ from the encoder's
        input (e.g. denoised ones); by default the clouds themselves. `weights` (one per cloud, one per
        point the loss samples from): how likely each is drawn as a surface sample; by default alike.
        `normals` (one (n, 3) per cloud, aligned the same way): the planes their off-surface samples keep
        clear of (`ClearancePlanes`; zero rows: none)."""
        points, mask, counts = pad_clouds([_cap(c, max_points, rng) for c in clouds], device)
        if (targets is None and weights is None and normals is None
                and (max_samples is None or all(len(c) <= max_points for c in clouds))):
            return cls(points, mask, counts)
        sources = targets or clouds
        limit = max_samples or max(len(c) for c in sources)
        kept = [_cap(np.arange(len(c)), limit, rng) for c in sources]  # the same rows of points and weights
        samples, _, sample_counts = pad_clouds([c[rows] for c, rows in zip(sources, kept)], device)
        cdf = None if weights is None else running_shares([w[rows] for w, rows in zip(weights, kept)], samples.shape[1],
                                                          device)
        planes = None if normals is None else pad_clouds([n[rows] for n, rows in zip(normals, kept)], device)[0]
        return cls(points, mask, counts, samples, sample_counts, cdf, planes)

    def __len__(self) -> int:
        return self.points.shape[0]

    def subset(self, index: torch.Tensor) -> "WindowBatch":
        """The windows at `index` (a copy)."""
        def pick(tensor):
            return None if tensor is None else tensor[index]

        return WindowBatch(self.points[index], self.mask[index], self.counts[index], pick(self.samples),
                           pick(self.sample_counts), pick(self.sample_cdf), pick(self.sample_normals))

    def loss_points(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The points the UCE loss draws from, [W, S, 3], and how many are real per window, [W]."""
        if self.samples is not None:
            return self.samples, self.sample_counts
        return self.points, self.counts


def _cap(cloud: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    return cloud if len(cloud) <= limit else cloud[rng.choice(len(cloud), limit, replace=False)]


def running_shares(weights: list[np.ndarray], length: int, device: torch.device) -> torch.Tensor:
    """Each window's cumulative weights over its total, [W, length] float32, padding rows at 1 (a uniform
    draw in [0, 1) finds its point by a binary search)."""
    shares = torch.ones(len(weights), length, device=device)
    for w, row in enumerate(weights):
        total = np.cumsum(np.asarray(row, dtype=np.float64))
        if len(total) and total[-1] > 0:
            shares[w, :len(total)] = torch.as_tensor(total / total[-1], dtype=torch.float32, device=device)
    return shares


def pad_clouds(clouds: list, device: torch.device):
    """Stack clouds (numpy arrays or tensors) of different lengths: zero-padded float32 points [W, N, 3],
    mask of real points [W, N], counts [W]."""
    tensors = [torch.as_tensor(cloud).to(device=device, dtype=torch.float32) for cloud in clouds]
    length = max(len(t) for t in tensors)
    points = torch.zeros(len(tensors), length, 3, device=device)
    mask = torch.zeros(len(tensors), length, dtype=torch.bool, device=device)
    for w, cloud in enumerate(tensors):
        points[w, :len(cloud)] = cloud
        mask[w, :len(cloud)] = True
    counts = torch.tensor([len(t) for t in tensors], device=device)
    return points, mask, counts


class ResidualSampling:
    """Where the fit is worst: a running UCE excess per observed point of each window.

    Part of every step's surface samples is drawn in proportion to it, so the steps go to the points
    the surface still misses (typically thin parts) rather than to the floor that fits after a few
    steps. Points not drawn yet keep a high weight, so every point is visited."""

    UNSEEN = 1.0  # about the excess of a point 3 logits off the surface
    FLOOR = 1e-3  # a point that fits keeps a small chance

    def __init__(self, batch: WindowBatch, fraction: float) -> None:
        source, counts = batch.loss_points()
        arange = torch.arange(source.shape[1], device=source.device)
        self.weights = (arange[None] < counts[:, None]).float() * self.UNSEEN
        self.fraction = fraction
        self.last_pick: torch.Tensor | None = None

    def weighted_count(self, n_surface: int) -> int:
        """How many of the `n_surface` samples come from the weights."""
        return int(round(self.fraction * n_surface))

    def update(self, surface_losses: torch.Tensor) -> None:
        """Record the UCE of the surface samples just drawn ([W, n_surface], in draw order)."""
        excess = (surface_losses.detach().float() - math.log(2.0)).clamp_min(0.0) + self.FLOOR
        self.weights.scatter_(1, self.last_pick, excess)


def sample_uce_queries(batch: WindowBatch, n_surface: int, n_off_surface: int, sigma: float,
                       generator: torch.Generator, residuals: ResidualSampling | None = None,
                       rows: torch.Tensor | None = None, among: int = 0,
                       clearance: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Surface samples (target 0.5) and noisy off-surface samples (target 1.0) from each window's points.

    Surface samples follow the batch's `sample_cdf` where it has one (uniformly over the points otherwise);
    off-surface samples are centred on points drawn alike, and those of a point with a plane in
    `sample_normals` lie at least `clearance` × `sigma` off it (moved along its normal). With `residuals`,
    part of the surface samples is drawn where the fit is worst (see ResidualSampling).
    `rows`: the batch is these windows of a batch of `among`, and draws what their rows of that batch's
    uniform draws would be (so a window's samples do not depend on which others still adapt)."""
    windows, device = len(batch), batch.points.device
    source, counts = batch.loss_points()
    total = n_surface + n_off_surface
    drawn = windows if rows is None else among
    uniform = torch.rand(drawn, total, device=device, generator=generator)
    noise = torch.randn(drawn, n_off_surface, 3, device=device, generator=generator) * sigma
    if rows is not None:
        uniform, noise = uniform[rows], noise[rows]
    pick = (uniform * counts[:, None]).long()
    if batch.sample_cdf is not None:
        by_area = torch.searchsorted(batch.sample_cdf, uniform[:, :n_surface].contiguous(), right=True)
        pick[:, :n_surface] = torch.minimum(by_area, counts[:, None] - 1)
    if residuals is not None:
        weighted = residuals.weighted_count(n_surface)
        if weighted:
            pick[:, :weighted] = torch.multinomial(residuals.weights, weighted, replacement=True,
                                                   generator=generator)
        residuals.last_pick = pick[:, :n_surface]
    queries = torch.gather(source, 1, pick.unsqueeze(-1).expand(-1, -1, 3))
    if clearance > 0 and batch.sample_normals is not None:
        normals = torch.gather(batch.sample_normals, 1, pick[:, n_surface:].unsqueeze(-1).expand(-1, -1, 3))
        noise = _cleared(noise, normals, clearance * sigma)
    queries = torch.cat([queries[:, :n_surface], queries[:, n_surface:] + noise], dim=1)
    targets = torch.cat([torch.full((windows, n_surface), 0.5, device=device),
                         torch.ones(windows, n_off_surface, device=device)], dim=1)
    return queries, targets


def _cleared(noise: torch.Tensor, normals: torch.Tensor, distance: float) -> torch.Tensor:
    """The offsets `noise` [W, n, 3], those closer than `distance` to their plane (unit `normals`, zero: no
    plane) moved out along the normal to that distance, on their own side."""
    along = (noise * normals).sum(dim=-1, keepdim=True)
    side = torch.where(along >= 0, 1.0, -1.0)
    short = torch.where(along.abs() < distance, side * distance - along, torch.zeros_like(along))
    return noise + short * normals
