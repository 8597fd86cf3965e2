"""Scripted experts: functions of a task's state (and of a reference path) that give a unit
action in [-1, 1]^n using good technique. Each task names its own as ``Task.expert``; with a
planned or predicted reference the env's expert is :func:`pursue` instead."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from surgsim.tasks.base import MM

if TYPE_CHECKING:
    from surgsim.tasks.base import Task
    from surgsim.tasks.incision import IncisionTask
    from surgsim.tasks.needle_reach import NeedleReachTask
    from surgsim.tasks.surgical_path import SurgicalPathTask


def within_one_step(action: np.ndarray) -> np.ndarray:
    """``action`` shortened, if need be, to fit in [-1, 1]^n with its direction kept (clipping
    each axis instead would bend the direction towards a diagonal)."""
    largest = float(np.max(np.abs(action)))
    return action / largest if largest > 1.0 else action


def pursue(task: Task, point: np.ndarray) -> np.ndarray:
    """Move the instrument straight (in configuration space) towards ``point``, as far as one
    step allows: how the expert follows a reference path."""
    tool = task.tool
    delta = tool.tip_to_config(point)[0] - tool.config
    return within_one_step(delta / tool.config_steps)


def reach(task: NeedleReachTask) -> np.ndarray:
    """Straight at the target, a full step on every axis that is still far from it."""
    return np.clip((task.target - task.tool.tip) / task.max_step, -1.0, 1.0)


def aim_then_advance(task: SurgicalPathTask) -> np.ndarray:
    """Retract to the safe depth, re-aim there, then advance along the straight safe line (re-aiming
    while deep would sweep the shaft through tissue)."""
    t = task.tool
    yaw_t, pitch_t = task.target_angles
    d_yaw, d_pitch = yaw_t - t.yaw, pitch_t - t.pitch
    aim_tolerance = max(0.4 * task.tolerance / task.target_insertion, 0.6 * task.angle_step)
    aim = [
        float(np.clip(d_yaw / task.angle_step, -1, 1)),
        float(np.clip(d_pitch / task.angle_step, -1, 1)),
    ]
    if max(abs(d_yaw), abs(d_pitch)) > aim_tolerance:
        if t.insertion > task.start_insertion + 0.5 * MM:
            retract = (task.start_insertion - t.insertion) / task.insertion_step
            return np.array([0.0, 0.0, max(retract, -1.0)])
        return np.array(aim + [0.0])
    advance = (task.target_insertion - t.insertion) / task.insertion_step
    return np.array(aim + [float(np.clip(advance, -1, 1))])


def follow_line(task: IncisionTask) -> np.ndarray:
    """Sink the blade to mid-band at the start, then follow the line (pure pursuit).

    The heading aims a little ahead along the tangent and pulls back onto the line with
    twice the cross-track error, so deviations stay small even one axis at a time.
    """
    tip = task.tool.tip
    # the last step's measurement of this same tip: its depth and projection on the line
    depth = task.last_depth
    _, s, nearest, tangent = task.last_projection
    nearest, tangent = np.array(nearest), np.array(tangent)
    dz = float(np.clip((-task.band_mid - tip[2]) / task.depth_step, -1, 1))
    if depth < task.band[0] + 0.25 * MM:
        return np.array([0.0, 0.0, dz])
    if task.length - s < task.reference_lookahead:
        heading = task.curve[-1] - tip[:2]
    else:
        heading = tangent * task.reference_lookahead + 2.0 * (nearest - tip[:2])
    move = np.clip(heading / task.max_step, -1, 1)
    return np.array([move[0], move[1], dz])
