"""Instrument kinematics: a free tool, a trocar-constrained laparoscopic tool and a scalpel.

Instruments are position-controlled (as a surgical robot's are): each step sets a pose and
PyBullet answers the collision, distance and ray queries against the anatomy.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from surgsim._data import asset_path
from surgsim.sim.world import IDENTITY_QUAT, World


class FreeTool:
    """A needle tip moved freely in Cartesian space."""

    body = "tool"

    def __init__(self, world: World, tip: Sequence[float]) -> None:
        self.world = world
        world.load_urdf(self.body, asset_path("instruments/free_tool.urdf"), tip)
        self.tip = np.array(tip, dtype=float)

    def set_tip(self, tip: np.ndarray) -> None:
        self.tip = tip
        self.world.move(self.body, tip, IDENTITY_QUAT)


class Scalpel(FreeTool):
    """A blade held upright whose point cuts into a tissue surface."""

    body = "scalpel"

    def __init__(self, world: World, tip: Sequence[float]) -> None:
        self.world = world
        world.load_urdf(self.body, asset_path("instruments/scalpel.urdf"), tip)
        self.tip = np.array(tip, dtype=float)


def trocar_direction(yaw: float, pitch: float) -> tuple[float, float, float]:
    """Unit shaft direction (pointing into the patient) for outer yaw and pitch angles.

    Yaw turns about the port's x axis and pitch about the turned y axis, both through the
    remote centre of motion, like the outer joints of a da Vinci patient-side manipulator;
    (0, 0) points straight down (-z). Singular only at 90 degrees, outside any usable range.
    """
    cp = math.cos(pitch)
    return (-math.sin(pitch), math.sin(yaw) * cp, -math.cos(yaw) * cp)


def trocar_angles(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`trocar_direction`: (yaw, pitch) of unit directions (..., 3)."""
    d = np.asarray(direction, dtype=float)
    return np.arctan2(d[..., 1], -d[..., 2]), -np.arcsin(np.clip(d[..., 0], -1.0, 1.0))


class TrocarTool:
    """Laparoscopic instrument pivoting about a fixed remote centre of motion (the port).

    Configuration: yaw and pitch (rad) and insertion (m, tip distance from the RCM along
    the shaft). The shaft is one collision capsule from the tip back out through the port.
    """

    body = "instrument"

    def __init__(self, world: World, rcm: Sequence[float]) -> None:
        self.world = world
        self.rcm = tuple(float(v) for v in rcm)
        world.load_urdf(self.body, asset_path("instruments/laparoscopic_tool.urdf"), self.rcm)
        self.yaw = self.pitch = self.insertion = 0.0
        self.direction = (0.0, 0.0, -1.0)
        self.tip = np.array(self.rcm, dtype=float)

    def set_config(self, yaw: float, pitch: float, insertion: float) -> None:
        self.yaw, self.pitch, self.insertion = yaw, pitch, insertion
        d = trocar_direction(yaw, pitch)
        self.direction = d
        r = self.rcm
        tip = (r[0] + insertion * d[0], r[1] + insertion * d[1], r[2] + insertion * d[2])
        self.tip = np.array(tip)
        self.world.move(self.body, tip, _shaft_orientation(yaw, pitch))


def _shaft_orientation(yaw: float, pitch: float) -> tuple[float, float, float, float]:
    """Quaternion of Rx(yaw) * Ry(pitch), which takes local +z back along the shaft (-direction)."""
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    return (sy * cp, cy * sp, sy * sp, cy * cp)
