"""Polyline utilities for tool-tip paths (m), and the PyBullet check of a tip path.

A path is an (N, 3) array of tip positions in metres, followed piecewise linearly. The
predictor learns paths resampled to K waypoints by arc length (:func:`resample`); the env
projects the tip onto its reference path (:class:`Polyline`) for the progress reward, the
deviation and the scripted expert; :func:`check_tip_path` replays any tip path through the
env's own collision queries, so planned and predicted paths are judged by the same rule.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from surgsim.tasks.base import Task

#: spacing (m) at which :func:`check_tip_path` poses the instrument along a path
CHECK_STEP = 0.001


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
        self.arc = cumulative_length(self.points)
        self.length = float(self.arc[-1])
        self._starts = self.points[:-1]
        self._segments = np.diff(self.points, axis=0)
        lengths2 = np.einsum("ij,ij->i", self._segments, self._segments)
        self._inverse_lengths2 = 1.0 / np.maximum(lengths2, 1e-18)
        self._segment_lengths = np.sqrt(lengths2)

    def project(self, point: np.ndarray) -> tuple[float, float]:
        """Arc length ``s`` (m) of the nearest point of the path to ``point``, and the distance to it."""
        if len(self.points) == 1:
            return 0.0, float(np.linalg.norm(np.asarray(point) - self.points[0]))
        offsets = point - self._starts
        t = np.einsum("ij,ij->i", offsets, self._segments) * self._inverse_lengths2
        np.clip(t, 0.0, 1.0, out=t)
        gaps = offsets - t[:, None] * self._segments
        gaps2 = np.einsum("ij,ij->i", gaps, gaps)
        i = int(np.argmin(gaps2))
        return float(self.arc[i] + t[i] * self._segment_lengths[i]), math.sqrt(gaps2[i])

    def point_at(self, s: np.ndarray | float) -> np.ndarray:
        """Point(s) at arc length ``s`` (clamped to the ends)."""
        s = np.clip(np.asarray(s, dtype=float), 0.0, self.length)
        return np.stack([np.interp(s, self.arc, self.points[:, k]) for k in range(3)], axis=-1)


@dataclass(frozen=True)
class PathCheck:
    """The env's verdict on a tip path, pose by pose along it (spacing :data:`CHECK_STEP`).

    ``collision_free``: no pose touches a critical structure; ``valid``: no pose breaks any of
    the env's failure rules (depth limit, workspace, joint limits included); ``reason`` names the
    first broken rule and where; ``min_clearance`` (m) is the smallest clearance of the
    instrument along the path; ``reaches_target``: the path ends within the task's tolerance.
    """

    collision_free: bool
    valid: bool
    reaches_target: bool
    min_clearance: float
    end_error: float
    reason: str | None


def check_tip_path(task: Task, tips: np.ndarray, step: float = CHECK_STEP) -> PathCheck:
    """Pose the instrument along ``tips`` (N, 3) in PyBullet and apply the env's failure rules."""
    tips = as_path(tips, "tips")
    dense = densify(tips, step)
    clearance, reasons = task.check_poses(dense)
    first = next((i for i, r in enumerate(reasons) if r is not None), None)
    reason = None
    if first is not None:
        s = cumulative_length(dense)[first]
        reason = f"{reasons[first]} at {1000 * s:.1f} mm along the path, tip {np.round(1000 * dense[first], 1).tolist()} mm"
    end_error = float(np.linalg.norm(tips[-1] - task.path_end()))
    return PathCheck(
        collision_free="critical_structure" not in reasons,
        valid=first is None,
        reaches_target=end_error <= task.tolerance,
        min_clearance=float(np.min(clearance)),
        end_error=end_error,
        reason=reason,
    )
