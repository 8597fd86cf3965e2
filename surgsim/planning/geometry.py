"""Vectorised analytic geometry (numpy only): signed distances and segment distances.

The pre-operative volume and the planner's search evaluate thousands of points or shaft
poses at once; one PyBullet query per point would take seconds. These closed forms model the
same shapes as the scene value and its bodies (ellipsoid organ, capsule-chain vessels, box
slabs, spheres), and every path the planner returns is re-checked with PyBullet's own queries.
All lengths in metres.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from surgsim.scene import Part

_EPS = 1e-12


def sphere_sdf(points: np.ndarray, centre: np.ndarray, radius: float) -> np.ndarray:
    """Signed distance (negative inside) from ``points`` (..., 3) to a sphere."""
    return np.linalg.norm(points - centre, axis=-1) - radius


def box_sdf(points: np.ndarray, centre: np.ndarray, half_extents: np.ndarray) -> np.ndarray:
    """Exact signed distance to an axis-aligned box."""
    q = np.abs(points - centre) - half_extents
    outside = np.linalg.norm(np.maximum(q, 0.0), axis=-1)
    return outside + np.minimum(q.max(axis=-1), 0.0)


def ellipsoid_sdf(points: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Signed distance to an axis-aligned ellipsoid, first-order accurate near the surface.

    ``k0 (k0 - 1) / k1`` with ``k0 = |p / r|``, ``k1 = |p / r^2|``: exact on the surface and its
    sign is exact everywhere, which is what occupancy and partial-volume values need.
    """
    p = points - centre
    k0 = np.linalg.norm(p / radii, axis=-1)
    k1 = np.linalg.norm(p / (radii * radii), axis=-1)
    return np.where(k1 > _EPS, k0 * (k0 - 1.0) / np.maximum(k1, _EPS), -float(np.min(radii)))


def point_segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Distance from ``points`` (..., 3) to segments ``a`` -> ``b`` (broadcast against points)."""
    ab = b - a
    t = np.einsum("...i,...i->...", points - a, ab) / np.maximum(np.einsum("...i,...i->...", ab, ab), _EPS)
    t = np.clip(t, 0.0, 1.0)
    return np.linalg.norm(points - (a + t[..., None] * ab), axis=-1)


def capsule_chain_sdf(points: np.ndarray, chain: np.ndarray, radius: float,
                      cutoff: float = np.inf) -> np.ndarray:
    """Signed distance to a tube made of capsules between consecutive ``chain`` points (K, 3).

    Points (N, 3) farther than ``cutoff`` outside every capsule's bounding box read +inf: only
    points near the tube are evaluated, which makes a voxel grid tens of times faster.
    """
    best = np.full(len(points), np.inf)
    pad = radius + cutoff
    idx = np.arange(len(points))
    if np.isfinite(cutoff):
        low, high = chain.min(axis=0) - pad, chain.max(axis=0) + pad
        idx = idx[((points >= low) & (points <= high)).all(axis=1)]
    near_points, near_best = points[idx], best[idx]
    for a, b in zip(chain[:-1], chain[1:]):
        np.minimum(near_best, point_segment_distance(near_points, a, b), out=near_best)
    best[idx] = near_best
    return best - radius


def segment_distance(p0: np.ndarray, p1: np.ndarray, q0: np.ndarray, q1: np.ndarray) -> np.ndarray:
    """Closest distance between segments ``p0 -> p1`` and ``q0 -> q1`` (all (..., 3), broadcast).

    Clamped closest-point parameters on both segments (segments of non-zero length).
    """
    d1, d2, r = p1 - p0, q1 - q0, p0 - q0
    a = np.einsum("...i,...i->...", d1, d1)
    e = np.einsum("...i,...i->...", d2, d2)
    f = np.einsum("...i,...i->...", d2, r)
    c = np.einsum("...i,...i->...", d1, r)
    b = np.einsum("...i,...i->...", d1, d2)
    denom = a * e - b * b
    parallel = denom <= _EPS * a * e
    s = np.where(parallel, 0.0, np.clip((b * f - c * e) / np.where(parallel, 1.0, denom), 0.0, 1.0))
    t = (b * s + f) / e
    low, high = t < 0.0, t > 1.0
    s = np.where(low, np.clip(-c / a, 0.0, 1.0), np.where(high, np.clip((b - c) / a, 0.0, 1.0), s))
    t = np.clip(t, 0.0, 1.0)
    gap = (p0 + s[..., None] * d1) - (q0 + t[..., None] * d2)
    return np.linalg.norm(gap, axis=-1)


@dataclass(frozen=True)
class Tubes:
    """Capsule chains flattened to segments: ``a``, ``b`` (M, 3), ``radius`` (M,), ``owner`` (M,)."""

    a: np.ndarray
    b: np.ndarray
    radius: np.ndarray
    owner: np.ndarray
    names: tuple[str, ...]

    @classmethod
    def from_parts(cls, parts: Sequence[Part]) -> "Tubes":
        """The segments of a scene's tube parts (its vessels and nerves)."""
        a, b, radius, owner = [], [], [], []
        for k, part in enumerate(parts):
            points, r = part.shape.array, part.shape.radius
            a.append(points[:-1])
            b.append(points[1:])
            radius += [r] * (len(points) - 1)
            owner += [k] * (len(points) - 1)
        if not a:
            empty = np.zeros((0, 3))
            return cls(empty, empty, np.zeros(0), np.zeros(0, dtype=int), ())
        names = tuple(p.name for p in parts)
        return cls(np.vstack(a), np.vstack(b), np.array(radius), np.array(owner), names)


@dataclass(frozen=True)
class Shaft:
    """A straight instrument shaft modelled as a capsule along the back direction from the tip.

    ``near`` and ``far`` bound its axis (m from the tip), ``radius`` its thickness: the trocar
    tool's are read from its URDF (``TrocarTool.shaft``); a test compares this model against
    PyBullet's distances.
    """

    radius: float
    near: float
    far: float

    def clearance(self, tips: np.ndarray, back: np.ndarray, tubes: Tubes, cap: float,
                  block: int = 2048) -> tuple[np.ndarray, np.ndarray]:
        """Clearance (N,) of the shaft at ``tips`` (N, 3) pointing along ``back`` (N, 3, unit) to
        the nearest tube, capped at ``cap``, and the index (N,) of that tube in ``tubes.names``
        (-1 where nothing is within ``cap``)."""
        n = len(tips)
        best = np.full(n, cap)
        owner = np.full(n, -1)
        if len(tubes.radius) == 0:
            return best, owner
        for start in range(0, n, block):
            sl = slice(start, start + block)
            p0 = (tips[sl] + self.near * back[sl])[:, None, :]
            p1 = (tips[sl] + self.far * back[sl])[:, None, :]
            d = segment_distance(p0, p1, tubes.a[None], tubes.b[None]) - tubes.radius - self.radius
            k = d.argmin(axis=1)
            dmin = d[np.arange(len(k)), k]
            closer = dmin < best[sl]
            best[sl] = np.where(closer, dmin, best[sl])
            owner[sl] = np.where(closer, tubes.owner[k], owner[sl])
        return best, owner


def segment_hits_ellipsoid(a: np.ndarray, b: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Whether segments ``a -> b`` (..., 3) meet the ellipsoid (in its unit-sphere coordinates)."""
    return point_segment_distance(np.zeros(3), (a - centre) / radii, (b - centre) / radii) <= 1.0
