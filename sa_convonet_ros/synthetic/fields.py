"""Signed fields of every solid shape in its local frame, written once for numpy and torch.

Each function takes local points `q` (..., 3) and shape parameters that broadcast against `q[..., 0]`
(one shape: plain numbers and arrays; a batch of P shapes on the GPU: parameters with a leading P axis
against points of shape (N, P, 3)), plus the array namespace `xp` (numpy or torch) that does the work.
So the CPU scene code (numpy, one primitive at a time) and the GPU scan and label generator (torch, all
primitives of one kind at once) evaluate the very same formulas.

Every field is negative inside, zero on the surface and 1-Lipschitz, so its value never exceeds the
distance to the surface: the classic primitives return their exact signed distance; the free-form
shapes (superellipsoids, blobs, sheets, ...) return their defining function divided by a bound on its
gradient, which is exact in sign (so occupancy is exact) and a safe step for sphere tracing.
"""
from __future__ import annotations

import math
import sys

import numpy as np


def namespace(array):
    """numpy or torch, whichever `array` belongs to."""
    torch = sys.modules.get("torch")
    return torch if torch is not None and isinstance(array, torch.Tensor) else np


def _norm(v, xp):
    return xp.sqrt((v * v).sum(-1))


def _relu(x, xp):
    return xp.clip(x, 0.0, None)


def _outside_plus_inside(d, xp):
    """Exact distance from per-axis slab distances `d` (..., k): the SDF of an intersection of slabs."""
    return _norm(_relu(d, xp), xp) + xp.clip(xp.amax(d, -1), None, 0.0)


# ------------------------------------------------------------------------------------ classic primitives

def box(q, half_extents, xp=np):
    return _outside_plus_inside(xp.abs(q) - half_extents, xp)


def sphere(q, radius, xp=np):
    return _norm(q, xp) - radius


def cylinder(q, radius, height, xp=np):
    """Solid cylinder along local z, centred on the origin; `height` is the full length."""
    rho = xp.sqrt(q[..., 0] ** 2 + q[..., 1] ** 2)
    return _outside_plus_inside(xp.stack([rho - radius, xp.abs(q[..., 2]) - height / 2.0], -1), xp)


def capsule(q, radius, height, xp=np):
    """Segment of length `height` along local z, inflated by `radius`."""
    half = height / 2.0
    z = q[..., 2] - xp.clip(q[..., 2], -half, half)
    return xp.sqrt(q[..., 0] ** 2 + q[..., 1] ** 2 + z * z) - radius


def cone(q, radius, height, xp=np):
    """Base disc (radius `radius`) at z = 0, apex at z = `height`: distance to base and slant in the
    (distance from axis, z) half-plane, negative inside."""
    rho, z = xp.sqrt(q[..., 0] ** 2 + q[..., 1] ** 2), q[..., 2]
    to_base = xp.sqrt((rho - xp.minimum(rho, radius)) ** 2 + z * z)  # rho >= 0
    # slant segment from (radius, 0) to (0, height)
    t = xp.clip(((rho - radius) * -radius + z * height) / (radius * radius + height * height), 0.0, 1.0)
    to_slant = xp.sqrt((rho - radius + t * radius) ** 2 + (z - t * height) ** 2)
    distance = xp.minimum(to_base, to_slant)
    inside = (z > 0.0) & (rho / radius + z / height < 1.0)
    return xp.where(inside, -distance, distance)


def torus(q, major_radius, minor_radius, xp=np):
    """Ring in the local xy-plane."""
    rho = xp.sqrt(q[..., 0] ** 2 + q[..., 1] ** 2)
    return xp.sqrt((rho - major_radius) ** 2 + q[..., 2] ** 2) - minor_radius


# --------------------------------------------------------------------------------- free-form shapes

def superellipsoid_lipschitz(half_extents, exponent) -> float:
    """|grad| bound of ||q / a||_p: 1 / min(a), times 3^(1/p - 1/2) where p < 2 (the p-norm exceeds the 2-norm)."""
    return max(1.0, 3.0 ** (1.0 / exponent - 0.5)) / float(np.min(half_extents))


def superellipsoid(q, half_extents, exponent, lipschitz, xp=np):
    """||q / a||_p <= 1: a box with rounded edges (p large), an ellipsoid (p = 2) or a pillow/diamond (p < 2)."""
    p = exponent if isinstance(exponent, (int, float)) else exponent[..., None]
    scaled = xp.abs(q / half_extents) + 1e-12
    return (((scaled ** p).sum(-1)) ** (1.0 / exponent) - 1.0) / lipschitz


def blob_lipschitz(radius, amplitudes, frequencies) -> float:
    """|grad| bound of |q| - r(q / |q|) where the surface is at least r_min from the centre."""
    amplitudes = np.abs(np.asarray(amplitudes, float))
    slope = radius * float((amplitudes * np.linalg.norm(frequencies, axis=-1)).sum())
    return math.sqrt(1.0 + (slope / (radius * (1.0 - amplitudes.sum()))) ** 2)


def blob(q, radius, frequencies, amplitudes, phases, lipschitz, xp=np):
    """A sphere whose radius varies with direction: r(u) = radius * (1 + sum_k a_k sin(w_k . u + phase_k)).

    `frequencies` (..., K, 3), `amplitudes` and `phases` (..., K); star-shaped, so the inside test is exact."""
    distance = _norm(q, xp) + 1e-12
    direction = q / distance[..., None]
    waves = xp.sin((direction[..., None, :] * frequencies).sum(-1) + phases)
    surface = radius * (1.0 + (amplitudes * waves).sum(-1))
    return (distance - surface) / lipschitz


def tube(q, path, radius, xp=np):
    """A sphere of `radius` swept along the polyline `path` (..., M, 3): the union of capsules."""
    start, segment = path[..., :-1, :], path[..., 1:, :] - path[..., :-1, :]
    offset = q[..., None, :] - start
    t = xp.clip((offset * segment).sum(-1) / ((segment * segment).sum(-1) + 1e-12), 0.0, 1.0)
    return xp.amin(_norm(offset - t[..., None] * segment, xp), -1) - radius


def sheet_lipschitz(half_width, bend, fold_amplitude, fold_frequency) -> float:
    """|grad| bound of z - mid(x): the steepest slope of the mid-surface, plus one."""
    return math.sqrt(1.0 + (abs(bend) * half_width + abs(fold_amplitude * fold_frequency)) ** 2)


def sheet(q, half_width, half_height, thickness, bend, fold_amplitude, fold_frequency, fold_phase, lipschitz,
          xp=np):
    """A thin sheet spanning local x (width) and y (height), thickness along z, its mid-surface
    z = bend * x^2 / 2 + fold_amplitude * sin(fold_frequency * x + fold_phase): a bent plate, a curtain, a leaf."""
    x = q[..., 0]
    # beyond the edges the mid-surface stays flat, so the slope bound holds everywhere
    edge = xp.clip(x, -half_width, half_width)
    middle = bend * edge * edge / 2.0 + fold_amplitude * xp.sin(fold_frequency * edge + fold_phase)
    across = (xp.abs(q[..., 2] - middle) - thickness / 2.0) / lipschitz
    return xp.maximum(across, xp.maximum(xp.abs(x) - half_width, xp.abs(q[..., 1]) - half_height))


def revolved_lipschitz(amplitudes, frequencies) -> float:
    return math.sqrt(1.0 + float(np.abs(np.asarray(amplitudes) * np.asarray(frequencies)).sum()) ** 2)


def revolved(q, radius, height, amplitudes, frequencies, phases, lipschitz, xp=np):
    """A solid of revolution about local z from z = 0 to `height`, its radius
    r(z) = radius + sum_k a_k sin(w_k z + phase_k): vases, columns, turned parts."""
    z = q[..., 2]
    level = xp.clip(z, 0.0 * height, height)[..., None]  # the profile stays constant beyond the caps
    profile = radius + (amplitudes * xp.sin(frequencies * level + phases)).sum(-1)
    around = (xp.sqrt(q[..., 0] ** 2 + q[..., 1] ** 2) - profile) / lipschitz
    return xp.maximum(around, xp.abs(z - height / 2.0) - height / 2.0)


def smooth_union(q, centers, radii, smoothness, xp=np):
    """Spheres (..., K) blended with the polynomial smooth minimum: organic bodies (creatures, statues).

    Each step is a convex combination of 1-Lipschitz fields, so the blend stays 1-Lipschitz."""
    distances = _norm(q[..., None, :] - centers, xp) - radii
    result = distances[..., 0]
    for k in range(1, distances.shape[-1]):
        other = distances[..., k]
        h = xp.clip(0.5 + 0.5 * (other - result) / smoothness, 0.0, 1.0)
        result = other + (result - other) * h - smoothness * h * (1.0 - h)
    return result


def holed_box(q, half_extents, hole_centers, hole_radii, xp=np):
    """A box with round holes through it along local z (hole centres (..., K, 2) in the xy-plane):
    brackets and plates of mechanical parts. The max of exact fields: exact sign, a distance bound."""
    holes = _norm(q[..., None, :2] - hole_centers, xp) - hole_radii
    return xp.maximum(box(q, half_extents, xp), -xp.amin(holes, -1))
