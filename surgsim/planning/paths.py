"""The PyBullet check of a tool-tip path, and the path utilities the planner and predictor use.

A path is an (N, 3) array of tip positions in metres, followed piecewise linearly; its geometry
lives in :mod:`surgsim.polyline` (re-exported here for the planning code). :func:`check_tip_path`
replays any tip path through the env's own collision queries, so planned and predicted paths
are judged by the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from surgsim.polyline import Polyline, as_path, cumulative_length, densify, point_at, resample

if TYPE_CHECKING:
    from surgsim.tasks.base import Task

__all__ = [
    "CHECK_STEP", "PathCheck", "Polyline", "as_path", "check_tip_path", "cumulative_length", "densify",
    "point_at", "resample",
]

#: spacing (m) at which :func:`check_tip_path` poses the instrument along a path
CHECK_STEP = 0.001


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
