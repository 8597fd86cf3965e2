"""Polylines: paths of points in metres (N, 3), followed piecewise linearly.

Written once for the env (progress along its reference path), the planner and predictor
(resampling, densifying) and the scorer (deviation from a reference, path length). The Incision
task projects onto its line with its own search: the same nearest segment, found faster, but in a
float order that differs from ``Polyline.project`` in the last bit. NumPy only (SciPy where the
scorer's k-d tree needs it), so the scorer imports it without PyBullet.
"""

from __future__ import annotations

import math
from typing import overload

import numpy as np

# The per-step projections call these on arrays of about 80 rows, where NumPy's Python-level
# dispatch costs as much as the arithmetic. ``np.einsum`` (without ``optimize``) ends in
# ``c_einsum`` and ``ndarray.clip`` in the ``clip`` ufunc, so calling those directly computes the
# same bits about 1 us sooner each; NumPy versions without these private names fall back.
try:
    from numpy._core.multiarray import c_einsum as fast_einsum
    from numpy._core.umath import clip as fast_clip
except ImportError:  # pragma: no cover - other NumPy layouts
    fast_einsum = np.einsum

    def fast_clip(a, low, high, out=None):
        return a.clip(low, high, out=out)


def as_path(path: np.ndarray, name: str = "path") -> np.ndarray:
    """``path`` as a float (N, 3) array; a clear error for anything else."""
    array = np.asarray(path, dtype=float)
    if array.ndim != 2 or array.shape[1] != 3 or len(array) < 1:
        raise ValueError(f"{name} must be an (N, 3) array of tip positions in metres, got shape {array.shape}")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values")
    return array


def cumulative_length(path: np.ndarray) -> np.ndarray:
    """Arc length (N,) from the first point to each point of the polyline."""
    path = as_path(path)
    return np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])


def point_at(path: np.ndarray, s: np.ndarray | float) -> np.ndarray:
    """Point(s) at arc length ``s`` along the polyline (clamped to its ends)."""
    return Polyline(path).point_at(s)


def resample(path: np.ndarray, k: int) -> np.ndarray:
    """``k`` points equally spaced by arc length, first and last kept (the predictor's waypoints)."""
    if k < 2:
        raise ValueError(f"resample needs k >= 2 waypoints, got {k}")
    path = as_path(path)
    return point_at(path, np.linspace(0.0, cumulative_length(path)[-1], k))


def densify(path: np.ndarray, step: float) -> np.ndarray:
    """The polyline with extra points so that no two consecutive points are more than ``step`` apart."""
    path = as_path(path)
    out = [path[:1]]
    for a, b in zip(path[:-1], path[1:]):
        n = max(1, int(np.ceil(np.linalg.norm(b - a) / step)))
        out.append(a + np.linspace(0.0, 1.0, n + 1)[1:, None] * (b - a))
    return np.vstack(out)


class Polyline:
    """A path prepared once for projecting points onto it often (the env does at every step)."""

    def __init__(self, path: np.ndarray, name: str = "path") -> None:
        self.points = as_path(path, name)
        self._starts = self.points[:-1]
        self._segments = np.diff(self.points, axis=0)
        # cumulative_length(self.points), without checking and differencing the points again
        self.arc = np.concatenate([[0.0], np.cumsum(np.linalg.norm(self._segments, axis=1))])
        self.length = float(self.arc[-1])
        lengths2 = np.einsum("ij,ij->i", self._segments, self._segments)
        self._inverse_lengths2 = 1.0 / np.maximum(lengths2, 1e-18)
        self._segment_lengths = np.sqrt(lengths2)
        # the same numbers as plain floats, for the per-step projection (no NumPy scalars)
        self._arc_floats = self.arc.tolist()
        self._segment_length_floats = self._segment_lengths.tolist()

    def project(self, point: np.ndarray) -> tuple[float, float]:
        """Arc length ``s`` (m) of the nearest point of the path to ``point``, and the distance to it."""
        if len(self.points) == 1:
            return 0.0, float(np.linalg.norm(np.asarray(point) - self.points[0]))
        i, t, gap2 = self._closest(point)
        return self._arc_floats[i] + t * self._segment_length_floats[i], math.sqrt(gap2)

    def _closest(self, point: np.ndarray) -> tuple[int, float, float]:
        """Segment ``i`` nearest to ``point``, the fraction ``t`` along it and the squared distance."""
        offsets = point - self._starts
        t = fast_einsum("ij,ij->i", offsets, self._segments) * self._inverse_lengths2
        fast_clip(t, 0.0, 1.0, out=t)
        gaps = offsets - t[:, None] * self._segments
        gaps2 = fast_einsum("ij,ij->i", gaps, gaps)
        i = int(gaps2.argmin())
        return i, float(t[i]), float(gaps2[i])

    def point_at(self, s: np.ndarray | float) -> np.ndarray:
        """Point(s) at arc length ``s`` (clamped to the ends)."""
        s = np.clip(np.asarray(s, dtype=float), 0.0, self.length)
        return np.stack([np.interp(s, self.arc, self.points[:, k]) for k in range(3)], axis=-1)


@overload
def scaling_exponent(values: np.ndarray, axis: None = None) -> int: ...


@overload
def scaling_exponent(values: np.ndarray, axis: int) -> np.ndarray: ...


def scaling_exponent(values: np.ndarray, axis: int | None = None) -> int | np.ndarray:
    """The power of two that scales ``values`` into [-1, 1] (exactly: only the exponents change),
    so that their squares neither overflow (1e200 m) nor underflow (1e-300 m).

    With ``axis``, one power per slice along it (``axis=1``: per row of an (n, k) array), as an
    integer array without that axis.
    """
    exponent = np.frexp(np.abs(values).max(axis=axis, initial=0.0))[1]
    return int(exponent) if axis is None else exponent


def total_length(points: np.ndarray) -> float:
    """Length (m) of the polyline through ``points`` (N, 3) of any size; infinite beyond 1e308 m.

    Unlike :func:`cumulative_length` (paths the env builds, metres in size) this takes any
    finite recorded coordinates, so it sums steps scaled by a power of two.
    """
    points = np.asarray(points, dtype=float)
    exponent = scaling_exponent(points)
    steps = np.diff(np.ldexp(points, -exponent), axis=0)
    with np.errstate(over="ignore"):
        return float(np.ldexp(np.sqrt(np.einsum("ij,ij->i", steps, steps)).sum(), exponent))


def distance_to_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """Distance (m) from each of ``points`` (n, 3) to the polyline (m, 3).

    Up to 256 segments, exact (to a few nm of rounding) against every segment at once: with
    ``t = (p - a).ab / |ab|^2`` and ``u = clip(t, 0, 1)``, ``d^2 = |p - a|^2 + |ab|^2 u (u - 2 t)``,
    where the dot products of all points with all segments are two matrix products. Longer
    polylines use :func:`_nearest_kdtree` (high by at most 0.05 mm). :class:`Polyline` projects
    one point at a time; this form grades a whole recording against a reference in one go.
    """
    return _nearest(points, polyline)[0]


def progress_along_polyline(points: np.ndarray, polyline: np.ndarray) -> np.ndarray:
    """How far along the polyline (m, 3) a path through ``points`` (n, 3) has got at each point: the
    arc length of its nearest point, but never more than the previous point's progress plus the
    step between them and both points' distances to the polyline (the path starts from the
    polyline's start). So a sideways hop across a bend, or a tie at the two ends of a closed loop,
    cannot count as progress along it."""
    points = np.asarray(points, dtype=float)
    polyline = np.asarray(polyline, dtype=float)
    if len(polyline) == 1 or not len(points):
        return np.zeros(len(points))
    distance, segment, u = _nearest(points, polyline)
    lengths = np.linalg.norm(np.diff(polyline, axis=0), axis=1)
    nearest = np.concatenate([[0.0], np.cumsum(lengths)])[segment] + u * lengths[segment]
    previous = np.vstack([polyline[:1], points[:-1]])
    slack = np.linalg.norm(points - previous, axis=1) + distance + np.concatenate([[0.0], distance[:-1]])
    progress, reached = np.empty(len(points)), 0.0
    for i in range(len(points)):  # a running bound: sequential by nature
        reached = progress[i] = min(nearest[i], reached + slack[i])
    return progress


def _nearest(points: np.ndarray, polyline: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each point: its distance to the polyline, the nearest segment and the fraction ``u``
    along it; exact up to 256 segments, through a k-d tree beyond."""
    points = np.asarray(points, dtype=float)
    polyline = np.asarray(polyline, dtype=float)
    if len(polyline) > 257:
        return _nearest_kdtree(points, polyline)
    d2, segment, u = _nearest_on_segments(points, polyline)
    return np.sqrt(np.maximum(d2, 0.0)), segment, u


def _nearest_on_segments(points: np.ndarray, polyline: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For each point: the squared distance to the polyline, the index of the nearest segment and
    the fraction ``u`` along it (see :func:`distance_to_polyline` for the algebra)."""
    origin = polyline.mean(axis=0)  # small coordinates: less rounding in the expanded squares
    points, polyline = points - origin, polyline - origin
    if len(polyline) == 1:
        zeros = np.zeros(len(points), dtype=int)
        return np.einsum("ij,ij->i", points, points), zeros, zeros.astype(float)
    start, step = polyline[:-1], np.diff(polyline, axis=0)
    length2 = np.einsum("ij,ij->i", step, step)
    inverse2 = np.divide(1.0, length2, out=np.zeros_like(length2), where=length2 > 0)
    start_step = np.einsum("ij,ij->i", start, step)
    start2 = np.einsum("ij,ij->i", start, start)
    out, segment, fraction = np.empty(len(points)), np.empty(len(points), dtype=int), np.empty(len(points))
    rows = max(64, 32_768 // len(start))  # (segments, rows) temporaries that stay in cache
    column = lambda v: v[:, None]  # noqa: E731  (per-segment values broadcast over points)
    for lo in range(0, len(points), rows):
        p = np.ascontiguousarray(points[lo : lo + rows].T)  # (3, rows): reductions over segments run along rows
        t = (step @ p - column(start_step)) * column(inverse2)
        u = np.clip(t, 0.0, 1.0)
        d2 = np.einsum("ij,ij->j", p, p) - 2.0 * (start @ p) + column(start2) + column(length2) * u * (u - 2.0 * t)
        nearest = d2.argmin(axis=0)
        columns = np.arange(d2.shape[1])
        out[lo : lo + rows] = d2[nearest, columns]
        segment[lo : lo + rows] = nearest
        fraction[lo : lo + rows] = u[nearest, columns]
    return out, segment, fraction


def _nearest_kdtree(points: np.ndarray, polyline: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distance to a dense polyline, high by at most h/2 (h = 0.1 mm up to 5 m of polyline), with
    the segment and fraction along it of the nearest point found.

    A k-d tree of samples spaced h along the polyline finds each point's nearest sample; the
    result is the exact distance to that sample's segment. The nearest polyline point lies
    within h/2 of a sample, so d <= result <= d + h/2.
    """
    segments = np.diff(polyline, axis=0)
    lengths = np.sqrt(np.einsum("ij,ij->i", segments, segments))
    if not np.isfinite(lengths).all():  # a polyline beyond 1e154 m: no distance to it is meaningful
        zeros = np.zeros(len(points), dtype=int)
        return np.full(len(points), np.nan), zeros, zeros.astype(float)
    spacing = max(1e-4, float(lengths.sum()) / 50_000)
    pieces = np.maximum(1, np.ceil(lengths / spacing)).astype(int)
    owner = np.repeat(np.arange(len(segments)), pieces)
    fraction = (np.arange(len(owner)) - np.repeat(np.cumsum(pieces) - pieces, pieces)) / pieces[owner]
    samples = np.vstack([polyline[owner] + fraction[:, None] * segments[owner], polyline[-1:]])
    owner = np.append(owner, len(segments) - 1)
    from scipy.spatial import cKDTree  # here: SciPy costs ~0.2 s and ~30 MB at `import surgsim`

    nearest = cKDTree(samples).query(points)[1]
    beyond = nearest == len(samples)  # no neighbour: a point so far away that its distance overflows
    segment = owner[np.where(beyond, 0, nearest)]
    rel = points - polyline[segment]
    step = segments[segment]
    length2 = lengths[segment] ** 2
    u = np.clip(np.einsum("ij,ij->i", rel, step) / np.where(length2 > 0, length2, 1.0), 0.0, 1.0)
    rel -= u[:, None] * step
    return np.where(beyond, np.inf, np.sqrt(np.einsum("ij,ij->i", rel, rel))), segment, u
