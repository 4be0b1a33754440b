"""The windows' feature grids as free per-window latents, with Adam touching only the cells the steps use."""
from __future__ import annotations

import itertools

import torch

from .model import normalize_coordinates


class FeatureGrids:
    """The windows' adapted feature grids, sampled trilinearly with the gradient written out by hand.

    The same interpolation as the decoder's grid_sample (align_corners, coordinates inside the grid), but
    grid_sample's backward zero-fills a gradient as large as all the grids on every step; here a step
    writes only the cells its queries touch, into a buffer kept across steps (about a fifth of a step's
    time on a CPU). The grids are stored with the channels last, so each cell's features are one row.

    `restrict` lets Adam adapt only the cells the steps will touch (a fifth to a half of them on a room's
    windows): a cell whose gradient has always been zero has zero moments, so Adam would not move it anyway,
    and the update of the rest is the same, for a fraction of the work."""

    def __init__(self, volume: torch.Tensor, padding: float) -> None:
        self.values = volume.detach().permute(0, 2, 3, 4, 1).contiguous()  # [W, D, H, W, C]
        self.resolution, self.padding = self.values.shape[1], padding
        r = self.resolution
        # row offsets of a cell's 8 corners in a grid's table (x slowest, z fastest, as the weights below)
        self._corner_offsets = torch.tensor([dz * r * r + dy * r + dx for dx, dy, dz in
                                             itertools.product((0, 1), repeat=3)], device=volume.device)
        self.touched: torch.Tensor | None = None  # bool per row of the table: the rows `active` holds
        self.active: torch.Tensor | None = None  # [K, C] the touched rows, adapted in place of `values`
        self._slot_of_row: torch.Tensor | None = None  # row of the table -> row of `active`
        self._gradient: torch.Tensor | None = None  # kept across steps, so only the rows written are cleared
        self._written: torch.Tensor | None = None  # rows written by the last backward
        self._rows: torch.Tensor | None = None
        self._weights: torch.Tensor | None = None
        self._sampled: torch.Tensor | None = None

    @property
    def volume(self) -> torch.Tensor:
        """The grids as the decoder takes them, [W, C, D, H, W] (a view; `sync` first after restricted steps)."""
        return self.values.permute(0, 4, 1, 2, 3)

    @property
    def parameter(self) -> torch.Tensor:
        """What the optimiser adapts: the touched rows once restricted, else the whole grids."""
        return self.values if self.active is None else self.active

    def corner_rows(self, queries: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rows of the 8 corners of each query's cell in the table of all the grids [W * M * 8], and the
        fractions of the queries [W, M, 3] across their cells."""
        windows = queries.shape[0]
        r = self.resolution
        position = normalize_coordinates(queries, self.padding) * (r - 1)  # x, y, z -> the W, H, D axes
        low = position.floor().long().clamp(0, r - 2)
        first = (low[..., 2] * r + low[..., 1]) * r + low[..., 0]
        first += torch.arange(windows, device=queries.device)[:, None] * r ** 3
        return (first[..., None] + self._corner_offsets).reshape(-1), position - low

    def restrict(self, touched: torch.Tensor) -> None:
        """Adapt only the rows marked in `touched` (bool over the table's rows) from now on."""
        self.touched = touched
        rows = touched.nonzero().squeeze(1)
        self.active = self.values.view(-1, self.values.shape[-1])[rows].clone()
        self._slot_of_row = torch.full((len(touched),), -1, dtype=torch.long, device=touched.device)
        self._slot_of_row[rows] = torch.arange(len(rows), device=touched.device)
        self._gradient = self._written = None

    def sync(self) -> None:
        """Write the adapted rows back into the whole grids."""
        if self.active is not None:
            with torch.no_grad():
                self.values.view(-1, self.values.shape[-1])[self.touched] = self.active

    def release_gradient(self) -> None:
        self.parameter.grad = self._gradient = self._written = self._rows = self._weights = self._sampled = None

    def subset(self, index: torch.Tensor) -> "FeatureGrids":
        """The grids of the windows at `index` (a copy, restricted to the same rows; `sync` first)."""
        part = FeatureGrids(self.volume[index], self.padding)
        if self.touched is not None:
            part.restrict(self.touched.view(len(self.values), -1)[index].reshape(-1))
        return part

    def state_rows(self, index: torch.Tensor) -> torch.Tensor:
        """Which rows of `parameter` (and so of its optimiser state) belong to the windows at `index`."""
        if self.touched is None:
            return index
        window_of_row = self.touched.nonzero().squeeze(1) // self.resolution ** 3
        return torch.isin(window_of_row, index).nonzero().squeeze(1)

    def sample(self, queries: torch.Tensor) -> torch.Tensor:
        """Features at queries [W, M, 3] (unit cube): a leaf [W, M, C] whose gradient `backward` carries
        on to the grids."""
        windows, count, _ = queries.shape
        self._rows, fraction = self.corner_rows(queries)
        if self.active is not None:
            self._rows = self._slot_of_row[self._rows]
        # the 8 corners' weights in the same order: products of (1 - f, f) per axis
        pair = torch.stack([1 - fraction, fraction], dim=-1)  # [W, M, 3 axes, 2]
        self._weights = (pair[..., 0, :, None, None] * pair[..., 1, None, :, None]
                         * pair[..., 2, None, None, :]).reshape(windows, count, 8)
        table = self.parameter.view(-1, self.values.shape[-1])
        corners = table.index_select(0, self._rows).view(windows, count, 8, -1)  # faster than table[rows]
        self._sampled = (corners * self._weights[..., None]).sum(dim=2).requires_grad_(True)
        return self._sampled

    def backward(self) -> None:
        """Set the grids' gradient from the sampled features' one (after the loss's backward)."""
        if self._gradient is None:
            self._gradient, self._written = torch.zeros_like(self.parameter), None
        table = self._gradient.view(-1, self._gradient.shape[-1])
        if self._written is not None:
            table.index_fill_(0, self._written, 0.0)
        contributions = self._sampled.grad[:, :, None, :] * self._weights[..., None]
        table.index_add_(0, self._rows, contributions.reshape(-1, table.shape[-1]))
        self._written = self._rows
        self.parameter.grad = self._gradient
