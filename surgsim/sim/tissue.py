"""The elastic tissue model: a fast reduced-order model of what touching tissue does to the tool
and to the anatomy (``tissue="elastic"``). Pure arithmetic on plain floats, no PyBullet: the tasks
feed it the geometry PyBullet measured (how much shaft is inside tissue, how far it moved, how deep
a critical structure is penetrated) and get back forces (N, world frame, force of the tissue on
the tool) and displacements (m).

The model, piece by piece (parameters: :class:`Material`, from the spec's ``tissue`` block):

- **Before puncture** the surface dimples under the tip: a stiffness force ``k1 d + k2 d^2`` along
  the shaft for an indentation ``d`` (the second-order polynomial form of Okamura, Simone and
  O'Leary 2004, "Force modeling for needle insertion into soft tissue", IEEE TBME 51(10)).
  When it reaches the puncture force the capsule gives way and the force drops.
- **After puncture** the tissue grips the shaft (a stick spring of stiffness ``k_drag``) until the
  grip exceeds the friction limit ``friction x length inside`` plus, while the tip advances into
  new tissue, the cutting force; then it slips (an elasto-plastic friction law in the spirit of
  Dahl's model: the friction force stays when the tool stops, the cutting force goes, and the
  force reverses when the tool retracts).
- **Lateral**: the tissue along the inserted length is a bed of virtual springs (per unit length)
  holding the shaft on the track it cut (the virtual-spring model of needle steering, Glozman and
  Shoham 2007, IEEE T-RO 23(3)); beyond ``lateral_yield`` of offset the tissue tears and the track
  follows the shaft, so sweeping keeps a bounded force (and the tasks count the swept damage).
- **Cutting** (a blade): a force against the blade's motion growing with blade depth and speed.
- **Critical structures**: a stiff contact force ``k_critical x penetration``; above the rupture
  force the structure ruptures (the task's failure).
- **Displacement** of the anatomy: the tool's load, applied at one point, moves embedded points by
  the regularised Kelvinlet (de Goes and James 2017, "Regularized Kelvinlets", ACM TOG 36(4)), the
  Kelvin solution of a point load in an infinite linear-elastic medium with the load spread over
  ``load_radius``. It is a function of the load now, so the anatomy returns when the load goes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

Vec = tuple[float, float, float]
ZERO: Vec = (0.0, 0.0, 0.0)


@dataclass(frozen=True)
class Material:
    """Mechanical parameters of one tissue and the critical structures in it (SI units)."""

    young_modulus: float  #: Pa
    poisson_ratio: float  #: 1, in (0, 0.5)
    stiffness_linear: float  #: N/m: k1 of the pre-puncture stiffness force
    stiffness_quadratic: float  #: N/m^2: k2 of the pre-puncture stiffness force
    puncture_force: float  #: N
    friction: float  #: N/m: friction limit per length of shaft inside tissue
    cutting_force: float  #: N: at the tip while it advances into new tissue
    drag_stiffness: float  #: N/m: stiffness of the tissue's grip on the shaft before it slips
    lateral_stiffness: float  #: N/m^2: virtual springs per length of shaft inside tissue
    lateral_yield: float  #: m: lateral offset beyond which the tissue tears and the track follows
    blade_force: float  #: N/m: cutting force per depth of blade, at zero speed
    blade_speed_factor: float  #: s/m: the cutting force grows by this factor per m/s of blade speed
    critical_stiffness: float  #: N/m: contact stiffness of a vessel, nerve or critical layer
    rupture_force: float  #: N: a critical structure ruptures above this force
    load_radius: float  #: m: radius the tool's load is spread over (the Kelvinlet's epsilon)

    @property
    def shear_modulus(self) -> float:
        return self.young_modulus / (2.0 * (1.0 + self.poisson_ratio))


def stiffness_force(material: Material, indentation: float) -> float:
    """Magnitude (N) of the pre-puncture stiffness force for an indentation (m)."""
    if indentation <= 0.0:
        return 0.0
    return material.stiffness_linear * indentation + material.stiffness_quadratic * indentation * indentation


def _perp(vx: float, vy: float, vz: float, d: Vec) -> Vec:
    """The part of (vx, vy, vz) perpendicular to the unit vector ``d``."""
    along = vx * d[0] + vy * d[1] + vz * d[2]
    return (vx - along * d[0], vy - along * d[1], vz - along * d[2])


class ShaftContact:
    """One straight instrument (a needle, a trocar shaft, a blade pressed in) in one tissue: the
    state of its puncture, of the tissue's grip on it and of the track it cut.

    ``lateral=False`` leaves out the lateral springs (a blade cuts sideways instead; see
    :func:`blade_force`).
    """

    def __init__(self, material: Material, lateral: bool = True) -> None:
        self.material = material
        self.lateral = lateral
        self.reset()

    def reset(self) -> None:
        self.punctured = False
        #: tissue dragged along the shaft (m along it; positive: pushed in)
        self.drag = 0.0
        #: material points of the track: where the shaft entered, and the end of the cut track
        self.anchor: Vec | None = None
        self.track_end: Vec | None = None

    def update(self, tip: Vec, direction: Vec, inside: float, advance: float) -> Vec:
        """The force (N, world frame) of the tissue on the shaft after a move.

        ``tip``: the tip now (m); ``direction``: the unit shaft direction, pointing into the
        tissue; ``inside``: the length of shaft inside the undeformed tissue (m; the indentation
        before puncture); ``advance``: how far the tip moved along the shaft this step (m).
        """
        m = self.material
        d = direction
        if inside <= 0.0:  # out of the tissue: the hole closes behind it
            self.reset()
            return ZERO
        if not self.punctured:
            f = stiffness_force(m, inside)
            if f < m.puncture_force:
                return (-f * d[0], -f * d[1], -f * d[2])
            self.punctured = True
            self.anchor = (tip[0] - inside * d[0], tip[1] - inside * d[1], tip[2] - inside * d[2])
            self.track_end = tip
            self.drag = math.inf  # the tip has just cut in: the grip slips at its limit below
            advance = max(advance, 1e-12)
        # axial: the grip holds until it exceeds friction (plus cutting while the tip advances)
        limit = m.friction * inside + (m.cutting_force if advance > 0.0 else 0.0)
        drag = self.drag + advance
        cap = limit / m.drag_stiffness
        drag = min(max(drag, -cap), cap)
        self.drag = drag
        axial = -m.drag_stiffness * drag
        fx, fy, fz = axial * d[0], axial * d[1], axial * d[2]
        if self.lateral:
            if advance > 0.0:  # the tip cuts its own way: the track ends where the tip is
                self.track_end = tip
            at_entry, self.anchor = self._offset(self.anchor, tip, d)
            at_end, self.track_end = self._offset(self.track_end, tip, d)
            k = m.lateral_stiffness * inside / 2.0  # springs along the length, offset linear in between
            fx += k * (at_entry[0] + at_end[0])
            fy += k * (at_entry[1] + at_end[1])
            fz += k * (at_entry[2] + at_end[2])
        return (fx, fy, fz)

    def _offset(self, point: Vec, tip: Vec, d: Vec) -> tuple[Vec, Vec]:
        """The offset from the shaft's line to a track point (perpendicular to the shaft), and the
        track point itself, pulled towards the shaft where the offset exceeds the yield."""
        o = _perp(point[0] - tip[0], point[1] - tip[1], point[2] - tip[2], d)
        size = math.sqrt(o[0] * o[0] + o[1] * o[1] + o[2] * o[2])
        y = self.material.lateral_yield
        if size <= y:
            return o, point
        pull = (size - y) / size  # the tissue tears: the track follows the shaft
        moved = (point[0] - pull * o[0], point[1] - pull * o[1], point[2] - pull * o[2])
        return (o[0] - pull * o[0], o[1] - pull * o[1], o[2] - pull * o[2]), moved


def blade_force(material: Material, depth: float, velocity: Vec) -> Vec:
    """Cutting force (N) on a blade moving at ``velocity`` (m/s) ``depth`` (m) deep: against its
    motion, ``blade_force x depth x (1 + blade_speed_factor x speed)``; none at rest or above the
    surface."""
    speed = math.sqrt(velocity[0] ** 2 + velocity[1] ** 2 + velocity[2] ** 2)
    if depth <= 0.0 or speed == 0.0:
        return ZERO
    f = material.blade_force * depth * (1.0 + material.blade_speed_factor * speed) / speed
    return (-f * velocity[0], -f * velocity[1], -f * velocity[2])


def critical_force(material: Material, penetration: float, normal: Vec) -> Vec:
    """Contact force (N) of a critical structure penetrated ``penetration`` (m) deep, along the
    unit ``normal`` pointing from the structure to the tool; none without contact."""
    if penetration <= 0.0:
        return ZERO
    f = material.critical_stiffness * penetration
    return (f * normal[0], f * normal[1], f * normal[2])


def kelvinlet(material: Material, points: np.ndarray, load_point: Vec, load: Vec) -> np.ndarray:
    """Displacement (m) of ``points`` (N, 3) under a ``load`` (N, the force on the tissue) applied
    at ``load_point``: the regularised Kelvinlet

        u(r) = [ (a - b) / r_e I + b / r_e^3 r r^T + a e^2 / (2 r_e^3) I ] f,
        a = 1 / (4 pi mu), b = a / (4 (1 - nu)), r_e = sqrt(|r|^2 + e^2),

    with ``mu`` the shear modulus, ``nu`` Poisson's ratio and ``e`` the load radius."""
    mu, nu, e = material.shear_modulus, material.poisson_ratio, material.load_radius
    a = 1.0 / (4.0 * math.pi * mu)
    b = a / (4.0 * (1.0 - nu))
    r = np.asarray(points, dtype=float).reshape(-1, 3) - np.asarray(load_point, dtype=float)
    f = np.asarray(load, dtype=float)
    r_e = np.sqrt(np.einsum("ij,ij->i", r, r) + e * e)
    along = (r @ f) * b / r_e**3
    isotropic = (a - b) / r_e + a * e * e / (2.0 * r_e**3)
    return isotropic[:, None] * f + along[:, None] * r


def norm(v: Vec) -> float:
    return math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
