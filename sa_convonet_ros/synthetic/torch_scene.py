"""A scene on a torch device: occupancy labels and sphere-traced depth-camera rays, for data made on the GPU.

`TorchScene` stacks the primitives of each kind into tensors and evaluates the same field formulas as
the CPU scene (`fields`, called with `xp=torch`), so labels are exact and identical to `Scene.occupancy`
wherever a point is not on a surface. Rays are cast by sphere tracing the union's field (each field is
1-Lipschitz, a safe step), which needs no triangle mesh: on a GPU machine without Open3D the scanner
of `scans.simulate_scans(..., caster="torch")` runs here.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from . import fields
from .freeform import FreeformPrimitive
from .scenes import Scene

ELEMENT_BUDGET = 1 << 23  # floats per intermediate tensor of one chunk of field evaluations


@dataclass
class _Group:
    """All primitives of one kind: their placement and field parameters stacked along a leading axis."""

    function: object
    centers: torch.Tensor  # (P, 3)
    rotations: torch.Tensor  # (P, 3, 3), world = rotation @ local + center
    parameters: dict[str, torch.Tensor]
    box_centers: torch.Tensor | None  # (P, 3) local bounding boxes of free-form shapes (a far-field bound)
    box_half: torch.Tensor | None
    width: int  # floats per (point, primitive) pair in the widest intermediate

    @classmethod
    def stack(cls, primitives: list, device: torch.device) -> "_Group":
        kind = type(primitives[0])
        values = [p.field_parameters() for p in primitives]
        padding = getattr(kind, "field_padding", {})
        parameters, width = {}, 3
        for name in values[0]:
            arrays = [np.asarray(v[name], dtype=np.float64) for v in values]
            if arrays[0].ndim and len({a.shape for a in arrays}) > 1:
                arrays = _padded(arrays, padding[name])
            stacked = np.stack(arrays)
            width = max(width, int(np.prod(stacked.shape[1:])))
            parameters[name] = torch.as_tensor(stacked, dtype=torch.float32, device=device)
        box_centers = box_half = None
        if issubclass(kind, FreeformPrimitive):
            bounds = np.array([p.local_bounds() for p in primitives])
            box_centers = torch.as_tensor((bounds[:, 0] + bounds[:, 1]) / 2.0, dtype=torch.float32, device=device)
            box_half = torch.as_tensor((bounds[:, 1] - bounds[:, 0]) / 2.0, dtype=torch.float32, device=device)
        as_tensor = lambda a: torch.as_tensor(np.array(a), dtype=torch.float32, device=device)  # noqa: E731
        return cls(kind.field_function, as_tensor([p.center for p in primitives]),
                   as_tensor([p.rotation for p in primitives]), parameters, box_centers, box_half, width)

    def field(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) world points -> (N,) the smallest field value over the group's primitives."""
        chunk = max(256, ELEMENT_BUDGET // (len(self.centers) * self.width))
        return torch.cat([self._field(points[i:i + chunk]) for i in range(0, len(points), chunk)])

    def _field(self, points: torch.Tensor) -> torch.Tensor:
        local = torch.einsum("npi,pij->npj", points[:, None, :] - self.centers, self.rotations)
        values = self.function(local, **self.parameters, xp=torch)
        if self.box_centers is not None:  # outside its bounding box a shape is at least that far away
            values = torch.maximum(values, fields.box(local - self.box_centers, self.box_half, xp=torch))
        return values.amin(dim=1)


def _padded(arrays: list[np.ndarray], rule) -> list[np.ndarray]:
    """Arrays of different lengths along axis 0, padded to the longest with `rule` ('edge' or a value)."""
    longest = max(len(a) for a in arrays)
    out = []
    for a in arrays:
        extra = longest - len(a)
        if rule == "edge":
            out.append(np.concatenate([a, np.repeat(a[-1:], extra, axis=0)]))
        else:
            out.append(np.concatenate([a, np.full((extra, *a.shape[1:]), float(rule))]))
    return out


class TorchScene:
    """A `Scene` on a torch device: the union's field, exact occupancy and ray casting."""

    def __init__(self, scene: Scene, device: str | torch.device = "cpu"):
        self.device = torch.device(device)
        kinds: dict[type, list] = {}
        for primitive in scene.primitives:
            kinds.setdefault(type(primitive), []).append(primitive)
        self.groups = [_Group.stack(primitives, self.device) for primitives in kinds.values()]

    def field(self, points: torch.Tensor) -> torch.Tensor:
        """(N, 3) -> (N,): the union's field, negative inside, never above the distance to the surface."""
        points = points.to(self.device, torch.float32)
        return torch.stack([group.field(points) for group in self.groups]).amin(dim=0)

    def occupancy(self, points: torch.Tensor) -> torch.Tensor:
        """Exact inside test of the union, (N,) bool; boundary points count as outside."""
        return self.field(points) < 0.0

    @torch.no_grad()
    def cast_rays(self, origins: torch.Tensor, directions: torch.Tensor, min_range: float, max_range: float,
                  epsilon: float = 1e-4, max_steps: int = 300) -> torch.Tensor:
        """Distance along each unit ray to the first surface beyond `min_range` (inf: no hit within
        `max_range`), by sphere tracing: every step advances by the field, which cannot cross a surface."""
        origins = origins.to(self.device, torch.float32)
        directions = directions.to(self.device, torch.float32)
        hit_distance = torch.full((len(origins),), float("inf"), device=self.device)
        travelled = torch.full((len(origins),), float(min_range), device=self.device)
        active = torch.arange(len(origins), device=self.device)
        for _ in range(max_steps):
            if len(active) == 0:
                break
            step = self.field(origins[active] + travelled[active, None] * directions[active])
            arrived = step < epsilon
            hit_distance[active[arrived]] = travelled[active[arrived]]
            travelled[active] += step.clamp_min(0.0)
            active = active[~arrived & (travelled[active] <= max_range)]
        return hit_distance
