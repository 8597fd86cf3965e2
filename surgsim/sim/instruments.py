"""Instruments that own their kinematics: a free tool (needle, scalpel) and a trocar-constrained
laparoscopic tool. Each maps a unit action to a motion within its limits, and configurations to tips.

Instruments are position-controlled (as a surgical robot's are): each step sets a pose and
PyBullet answers the collision, distance and ray queries against the anatomy.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence
from xml.etree import ElementTree

import numpy as np

from surgsim._data import asset_path
from surgsim.sim.world import IDENTITY_QUAT, World


class FreeTool:
    """A tool whose tip moves freely in Cartesian space (a needle, a scalpel held upright): its
    configuration is the tip itself. ``urdf`` (under assets/) gives its body; ``steps`` (m) is its
    largest move along x, y and z in one step."""

    def __init__(self, world: World, body: str, urdf: str, tip: Sequence[float], steps: Sequence[float]) -> None:
        self.world = world
        self.body = body
        world.load_urdf(body, asset_path(urdf), tip)
        self.tip = np.array(tip, dtype=float)
        #: largest change of each configuration coordinate in one step (a unit action)
        self.config_steps = np.array(steps, dtype=float)

    def set_tip(self, tip: np.ndarray) -> None:
        self.tip = tip
        # PyBullet reads a list of floats about twice as fast as an array
        self.world.move(self.body, np.asarray(tip).tolist(), IDENTITY_QUAT)

    def move(self, action: np.ndarray) -> float:
        """Move by a unit action; the angle (rad) the tool turned: a free tool never turns."""
        self.set_tip(self.tip + action * self.config_steps)
        return 0.0

    @property
    def config(self) -> np.ndarray:
        """The configuration now."""
        return self.tip.copy()

    def tip_to_config(self, tips: np.ndarray) -> np.ndarray:
        """Configurations (N, 3) that put the tip at ``tips`` (N, 3)."""
        return np.array(tips, dtype=float).reshape(-1, 3)

    def config_to_tip(self, configs: np.ndarray) -> np.ndarray:
        """Tip positions (N, 3) of configurations (N, 3)."""
        return np.array(configs, dtype=float).reshape(-1, 3)

    def within_limits(self, configs: np.ndarray) -> np.ndarray:
        """A free tool has no joint limits (its task's workspace rule bounds it)."""
        return np.ones(len(np.reshape(configs, (-1, 3))), dtype=bool)


def trocar_direction(yaw: Any, pitch: Any, xp: Any = math) -> tuple[Any, Any, Any]:
    """Unit shaft direction (pointing into the patient) for outer yaw and pitch angles.

    Yaw turns about the port's x axis and pitch about the turned y axis, both through the
    remote centre of motion, like the outer joints of a da Vinci patient-side manipulator;
    (0, 0) points straight down (-z). Singular only at 90 degrees, outside any usable range.
    ``xp=numpy`` takes arrays of angles (``math``, the default, is faster for one pose).
    """
    cp = xp.cos(pitch)
    return (-xp.sin(pitch), xp.sin(yaw) * cp, -xp.cos(yaw) * cp)


def trocar_angles(direction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`trocar_direction`: (yaw, pitch) of unit directions (..., 3)."""
    d = np.asarray(direction, dtype=float)
    return np.arctan2(d[..., 1], -d[..., 2]), -np.arcsin(np.clip(d[..., 0], -1.0, 1.0))


@functools.cache
def shaft_capsule(urdf: str) -> tuple[float, float, float]:
    """(radius, near, far) of the collision capsule along +z of an instrument's URDF: its radius and
    where its axis starts and ends (m from the origin, the tip), read from the file so that the
    planner's shaft model and PyBullet's body are one description (parsed once per URDF: every
    tool build, and so every periodic world clear, asks again; the tuple is immutable)."""
    collision = ElementTree.parse(asset_path(urdf)).find(".//collision")
    capsule, origin = collision.find("geometry/capsule"), collision.find("origin")
    centre = float(origin.get("xyz").split()[2])
    half = float(capsule.get("length")) / 2
    # rounded to the nanometre, as the URDF's decimals are, so that 0.15 - 0.1475 reads 0.0025
    return float(capsule.get("radius")), round(centre - half, 9), round(centre + half, 9)


class TrocarTool:
    """Laparoscopic instrument pivoting about a fixed remote centre of motion (the port).

    Configuration: yaw and pitch (rad, each within +-``angle_limit``) and insertion (m, tip
    distance from the RCM along the shaft, within ``insertion_range``); one step turns each
    angle by up to ``angle_step`` and inserts by up to ``insertion_step``. The shaft is one
    collision capsule from the tip back out through the port (:attr:`shaft`).
    """

    body = "instrument"
    urdf = "instruments/laparoscopic_tool.urdf"

    def __init__(self, world: World, rcm: Sequence[float], *, angle_limit: float, angle_step: float,
                 insertion_step: float, insertion_range: tuple[float, float]) -> None:
        self.world = world
        self.rcm = tuple(float(v) for v in rcm)
        world.load_urdf(self.body, asset_path(self.urdf), self.rcm)
        self.angle_limit = angle_limit
        self.insertion_min, self.insertion_max = insertion_range
        #: largest change of each configuration coordinate in one step (a unit action)
        self.config_steps = np.array([angle_step, angle_step, insertion_step])
        self._step_floats = self.config_steps.tolist()
        #: (radius, near, far) of the shaft capsule, m from the tip (see :func:`shaft_capsule`)
        self.shaft = shaft_capsule(self.urdf)
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

    def move(self, action: np.ndarray) -> float:
        """Move by a unit action, clamped to the limits; the angle (rad) the shaft turned."""
        lim = self.angle_limit
        angle_step, _, insertion_step = self._step_floats
        a_yaw, a_pitch, a_insertion = np.asarray(action, dtype=float).tolist()
        yaw = min(max(self.yaw + a_yaw * angle_step, -lim), lim)
        pitch = min(max(self.pitch + a_pitch * angle_step, -lim), lim)
        insertion = self.insertion + a_insertion * insertion_step
        insertion = min(max(insertion, self.insertion_min), self.insertion_max)
        before = self.direction
        self.set_config(yaw, pitch, insertion)
        after = self.direction
        dot = before[0] * after[0] + before[1] * after[1] + before[2] * after[2]
        cx = before[1] * after[2] - before[2] * after[1]
        cy = before[2] * after[0] - before[0] * after[2]
        cz = before[0] * after[1] - before[1] * after[0]
        # atan2(|a x b|, a . b) stays exact for tiny angles, where acos(dot) reads rounding as sweep
        return math.atan2(math.sqrt(cx * cx + cy * cy + cz * cz), dot)

    @property
    def config(self) -> np.ndarray:
        """The configuration now: (yaw, pitch, insertion)."""
        return np.array([self.yaw, self.pitch, self.insertion])

    def tip_to_config(self, tips: np.ndarray) -> np.ndarray:
        """(yaw, pitch, insertion) (N, 3) that put the tip at ``tips`` (N, 3): the shaft points
        from the port through the tip."""
        offsets = np.asarray(tips, dtype=float).reshape(-1, 3) - np.asarray(self.rcm)
        insertion = np.linalg.norm(offsets, axis=1)
        yaw, pitch = trocar_angles(offsets / np.maximum(insertion, 1e-12)[:, None])
        return np.column_stack([yaw, pitch, insertion])

    def config_to_tip(self, configs: np.ndarray) -> np.ndarray:
        """Tip positions (N, 3) of configurations (N, 3)."""
        yaw, pitch, insertion = np.asarray(configs, dtype=float).reshape(-1, 3).T
        d = np.column_stack(trocar_direction(yaw, pitch, np))
        return np.asarray(self.rcm) + insertion[:, None] * d

    def within_limits(self, configs: np.ndarray) -> np.ndarray:
        """Whether configurations (N, 3) lie inside the angle and insertion limits."""
        yaw, pitch, insertion = np.asarray(configs, dtype=float).reshape(-1, 3).T
        lim = self.angle_limit + 1e-9
        return (
            (np.abs(yaw) <= lim) & (np.abs(pitch) <= lim)
            & (insertion >= self.insertion_min - 1e-9) & (insertion <= self.insertion_max + 1e-9)
        )


#: any instrument: a task's ``tool``
Instrument = FreeTool | TrocarTool


def _shaft_orientation(yaw: float, pitch: float) -> tuple[float, float, float, float]:
    """Quaternion of Rx(yaw) * Ry(pitch), which takes local +z back along the shaft (-direction)."""
    cy, sy = math.cos(yaw / 2), math.sin(yaw / 2)
    cp, sp = math.cos(pitch / 2), math.sin(pitch / 2)
    return (sy * cp, cy * sp, sy * sp, cy * cp)
