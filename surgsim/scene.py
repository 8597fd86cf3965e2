"""The scene value: one frozen description of a patient, made of primitive shapes with roles.

A task draws a :class:`Scene` from its spec and the episode's random generator; the simulator
builds PyBullet bodies from it (:class:`surgsim.sim.anatomy.SceneBodies`), and the pre-operative
volume and the planner read it (:mod:`surgsim.planning`). So a patient is described once, in
numbers (metres), and nothing downstream needs to know which task drew it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

Vec3 = tuple[float, float, float]
RGBA = tuple[float, float, float, float]
#: tissue and critical parts collide (the instrument's queries see them); target, port and marker
#: parts are only seen (rays and clearance queries pass through them)
Role = Literal["tissue", "critical", "target", "port", "marker"]


def vec3(v) -> Vec3:
    """A point as a tuple of floats (a frozen value compares and hashes; an array does not)."""
    return (float(v[0]), float(v[1]), float(v[2]))


@dataclass(frozen=True)
class Point:
    """A point with no extent (the port, a start position): no body; one voxel in the volume."""

    centre: Vec3


@dataclass(frozen=True)
class Sphere:
    centre: Vec3
    radius: float


@dataclass(frozen=True)
class Box:
    """An axis-aligned box."""

    centre: Vec3
    half_extents: Vec3


@dataclass(frozen=True)
class Ellipsoid:
    """An axis-aligned ellipsoid."""

    centre: Vec3
    radii: Vec3


@dataclass(frozen=True)
class Tube:
    """A tube of capsules between consecutive points (a vessel, a nerve, a line); it may bend."""

    points: tuple[Vec3, ...]
    radius: float

    @functools.cached_property
    def array(self) -> np.ndarray:
        """The points as a (K, 3) array."""
        return np.array(self.points, dtype=float)


def slab(top_z: float, half_xy, thickness: float) -> Box:
    """A flat layer centred on the z axis whose upper surface is at ``top_z``."""
    return Box((0.0, 0.0, top_z - thickness / 2), (float(half_xy[0]), float(half_xy[1]), thickness / 2))


Shape = Point | Sphere | Box | Ellipsoid | Tube


@dataclass(frozen=True)
class Part:
    """One named shape of the patient; ``name`` is also its body's name in the world."""

    name: str
    role: Role
    shape: Shape
    #: colour of its body; None: no body in the world (it appears in the volume only)
    rgba: RGBA | None = None
    #: the pre-operative volume channel of a target, port or marker part (None: not imaged);
    #: tissue and critical parts always appear in the channel named by their role
    channel: str | None = None

    @property
    def collides(self) -> bool:
        return self.role in ("tissue", "critical")


@dataclass(frozen=True)
class Scene:
    """A patient: its parts (built in this order) and the task's parameters (its spec's ``params``)."""

    parts: tuple[Part, ...]
    params: object = field(default=None, compare=False)

    def part(self, name: str) -> Part:
        try:
            return next(p for p in self.parts if p.name == name)
        except StopIteration:
            names = [p.name for p in self.parts]
            raise KeyError(f"no part named {name!r} in this scene; have {names}") from None

    def with_role(self, role: Role) -> tuple[Part, ...]:
        return tuple(p for p in self.parts if p.role == role)

    def only(self, role: Role) -> Part:
        """The one part of ``role``."""
        parts = self.with_role(role)
        if len(parts) != 1:
            raise ValueError(f"expected one {role} part in this scene, found {[p.name for p in parts]}")
        return parts[0]

    @functools.cached_property
    def critical(self) -> tuple[str, ...]:
        """Names of the critical structures (vessels, nerves, a critical layer)."""
        return tuple(p.name for p in self.parts if p.role == "critical")

    def with_part(self, part: Part) -> Scene:
        """This scene with ``part`` in place of the part of that name, or added at the end."""
        parts = [part if p.name == part.name else p for p in self.parts]
        if part not in parts:
            parts.append(part)
        return Scene(tuple(parts), self.params)
