"""When a window fits its points: effort where the surface needs it.

Every few steps each adapting window measures how far its observed points lie from its field's level set:
a point's distance is estimated as |logit| / |gradient of the logit| (one Newton step towards the level),
the gradient from central differences half a grid cell wide. A window whose points lie, but for a few,
within the tolerance of its surface stops adapting; one whose thin parts or clutter do not fit yet keeps
its steps, up to the profile's budget. Unlike a loss plateau, the criterion is the fit to the data itself.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

FIT_POINTS = 512  # check points per window, drawn once over its observed surface: the same ones every check


@dataclass
class WindowFit:
    """The fit check of a batch's windows; distances in their unit-cube frames."""

    tolerance: float  # the points' largest distance from the level that counts as fitted
    share: float  # the share of the check points that must lie within it
    spacing: float  # the half-width of the central differences: half a grid cell
    every: int  # steps between two checks
    points: torch.Tensor  # [W, FIT_POINTS, 3] per window of the batch

    @classmethod
    def start(cls, source: torch.Tensor, counts: torch.Tensor, tolerance: float, share: float, spacing: float,
              every: int, seed: int) -> "WindowFit":
        """Check points spread over each window's observed surface `source` [W, N, 3] (`counts` valid each):
        one per cell of 4 grid cells (2 x `spacing` is one), so a sparsely seen wall weighs as much as a densely
        seen floor of the same area; at most FIT_POINTS of them, drawn at random."""
        generator = torch.Generator().manual_seed(seed)
        points = torch.empty(len(source), FIT_POINTS, 3, dtype=source.dtype, device=source.device)
        for window, count in enumerate(counts.tolist()):
            cloud = source[window, :count]
            cells = torch.floor(cloud / (8 * spacing)).long()
            _, first = _first_of_each(cells)
            pick = first[torch.randint(len(first), (FIT_POINTS,), generator=generator).to(first.device)]
            points[window] = cloud[pick]
        return cls(tolerance, share, spacing, every, points)

    def due(self, steps_done: int) -> bool:
        return steps_done % self.every == 0

    def fitted(self, decode, windows: torch.Tensor) -> torch.Tensor:
        """Which of `windows` (indices into the batch) fit their points; `decode(queries [w, M, 3]) -> logits
        [w, M]` evaluates their current fields."""
        distances = level_distances(decode, self.points[windows], self.spacing)
        return torch.quantile(distances, self.share, dim=1) <= self.tolerance


def _first_of_each(cells: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct rows of `cells` [N, 3] and the index of the first row of each."""
    unique, inverse = torch.unique(cells, dim=0, return_inverse=True)
    first = torch.full((len(unique),), len(cells), dtype=torch.long, device=cells.device)
    first.scatter_reduce_(0, inverse, torch.arange(len(cells), device=cells.device), reduce="amin")
    return unique, first


def level_distances(decode, points: torch.Tensor, spacing: float) -> torch.Tensor:
    """Estimated distances [W, M] of points [W, M, 3] from the level set (logit 0) of the fields `decode`
    evaluates: |logit| over the length of its gradient, by central differences `spacing` wide."""
    offsets = spacing * torch.cat([torch.zeros(1, 3), torch.eye(3), -torch.eye(3)]).to(points)  # [7, 3]
    queries = (points[:, :, None, :] + offsets).reshape(len(points), -1, 3)
    with torch.no_grad():
        logits = decode(queries).float().reshape(len(points), -1, 7)
    gradient = (logits[..., 1:4] - logits[..., 4:7]) / (2 * spacing)
    return logits[..., 0].abs() / gradient.norm(dim=-1).clamp_min(1e-6)
