"""The instrument in finite-element tissue: the ``fem`` tier's counterpart of
:class:`surgsim.sim.tissue.ShaftContact`, with every force from PyBullet's deformable world.

The tissue is a :class:`~surgsim.sim.fem.FemBody` of the patient's tissue part
(:func:`tissue_body`), held where the rest of the patient holds it. The tool moves from its last
pose to the new one over the control period in the engine's sub-steps (a step of the env is
``1 / CONTROL_RATE_HZ`` s of tissue dynamics) and acts on the tissue through soft-body anchors
(``createSoftBodyAnchor``) to a body that moves with the tool, not through PyBullet's rigid-soft
contact: a kinematic sphere pressed into these meshes tunnels through them (no force at all on
the 420 kPa skin slab, lost contact under 1 N on liver; ``tests/test_fem_tissue.py`` shows the
anchors hold). The model:

- **Touch**: when the tip enters the tissue (it lies inside an element of the deformed mesh,
  checked every ``CHECK_EVERY`` sub-steps), the surface nodes of that element are
  gripped where they are: pushing on, the tool indents the surface and the tissue pushes back.
  A gripped surface node lets go when it would pull the tool in (the tool is withdrawn: tissue
  does not stick) or when its pull across the shaft exceeds ``FRICTION`` times its push (Coulomb
  sliding); it is gripped again where it then is, at a later check, while the tip is still in
  and not withdrawing (a tip on its way out grips nothing new: it would drag the surface out).
  A tip advancing into an element with no surface node while holding nothing has gone through
  the surface: that is a puncture too (on a fine mesh the tip can slide past the surface layer
  below the puncture force).
- **Puncture**: once the tissue pushes back along the shaft by more than the puncture force
  (checked as often as entry), the tool is through: from then on it grips the corners of the
  element that holds the tip and every node within ``capture_radius`` of the inserted length.
- **Friction, stick-slip and tearing**: a gripped node whose elastic force (the engine's law on
  the engine's node positions) exceeds its share of the grip, ``grip_per_length x inserted
  length / gripped nodes``, slips: its anchor is removed, the tissue relaxes under the engine's
  forces, and it is gripped again where it then is at the next check, ``CHECK_EVERY`` sub-steps
  later (PyBullet anchors a node where it is, so slipping is letting go). So the
  shaft drags tissue along while it moves (stick), the force it can transmit stays near the
  grip (slip), and a shaft swept sideways tears through rather than dragging the organ with it.
  Cutting at the tip is the same grip on the element the tip is in.
- **Tearing free**: once an element is squeezed below ``CRUSHED`` of its rest volume, every
  anchor is released (the tissue tears free rather than inverting: an inverted element makes
  the explicit elastic forces run away).
- **Withdrawal**: once nothing is inside, every anchor is released.

The force on the tool (N, world frame, the tissue on the tool) is read where the tissue is held:
the change of the engine's elastic forces on the anchored nodes (:meth:`FemBody.static_load`),
which is the load the tool puts on the tissue when the tissue is at rest (quasi-static:
inertia and damping forces are left out). PyBullet's own contact report is not used.

Model parameters here, not published values: the capture radius (a fraction of the mesh cell),
the tool-tissue friction coefficient, and how often slip is checked. The force before puncture is the engine's response to a few surface nodes pushed in:
a coarse mesh makes it stiffer than a fine one (benchmarks/elastic_vs_fem.py).
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pybullet as p

from surgsim.scene import Box, Ellipsoid
from surgsim.sim.fem import (FemBody, SoftMaterial, TetMesh, box_mesh, boundary_nodes, ellipsoid_mesh, embed,
                             signed_volumes)

#: where the tool's body waits before the first pose (m): far from any tissue
_PARK = (0.0, 0.0, 10.0)
#: nodes within this fraction of the mesh cell of the inserted shaft are gripped (model
#: parameter: about one node per cell along the track)
CAPTURE_FRACTION = 0.6
#: the tip is checked for entering the tissue and for puncture, and the grip for slip, every
#: this many sub-steps (and at the end of the control period): a fixed share of the stable
#: time step, so stiff tissue (more, shorter sub-steps) is checked as often per millimetre of
#: deformation as soft tissue
CHECK_EVERY = 8
#: the tool lets go of everything it grips once an element is squeezed below this share of its
#: rest volume (the tissue tears free rather than inverting; model parameter)
CRUSHED = 0.25
#: m per check: a tip moving out of the tissue faster than this is withdrawing
_STILL = 1e-6
#: Coulomb friction coefficient between the tool and the tissue's surface before puncture
#: (model parameter; wet soft tissue on steel is usually put at 0.1-0.5)
FRICTION = 0.5


def tissue_body(shape: Box | Ellipsoid, cell: float, material: SoftMaterial, time_step: float) -> FemBody:
    """The finite-element body of a scene's tissue part, meshed with cells of about ``cell`` (m):
    a slab (:class:`~surgsim.scene.Box`) held at its bottom face, an organ
    (:class:`~surgsim.scene.Ellipsoid`) held over the lower half of its surface (it rests on the
    rest of the abdomen). No gravity: the tissue's own weight is carried by what holds it and
    the rest shape is the imaged one, so what moves is what the tool does."""
    mesh, anchored = part_mesh(shape, cell)
    return FemBody(mesh, anchored, material, time_step, gravity=0.0)


def part_mesh(shape: Box | Ellipsoid, cell: float) -> tuple[TetMesh, np.ndarray]:
    """The mesh of a tissue part and the indices of its held nodes (see :func:`tissue_body`)."""
    if isinstance(shape, Box):
        centre, half = np.asarray(shape.centre), np.asarray(shape.half_extents)
        cells = [max(1, math.ceil(2 * h / cell)) for h in half]
        mesh = box_mesh(2 * half, cells, centre - half)
        return mesh, np.flatnonzero(mesh.nodes[:, 2] <= centre[2] - half[2] + 1e-9)
    if isinstance(shape, Ellipsoid):
        mesh = ellipsoid_mesh(shape.centre, shape.radii, cell)
        surface = boundary_nodes(mesh)
        return mesh, surface[mesh.nodes[surface, 2] <= shape.centre[2] + 1e-9]
    raise TypeError(f"no finite-element mesh for a {type(shape).__name__} tissue part")


def _quaternion(direction: Sequence[float]) -> tuple[float, float, float, float]:
    """The rotation (x, y, z, w) that turns +z onto the unit vector ``direction``."""
    dx, dy, dz = direction
    if dz < -1.0 + 1e-12:  # straight down: half a turn about x
        return (1.0, 0.0, 0.0, 0.0)
    # half-way vector trick: q = (z x d, 1 + z . d), normalised
    x, y, z, w = -dy, dx, 0.0, 1.0 + dz
    n = math.sqrt(x * x + y * y + z * z + w * w)
    return (x / n, y / n, z / n, w / n)


class FemToolContact:
    """A tool (shaft and tip) in a :class:`FemBody`: see the module's docstring.

    :meth:`update` has the signature of :meth:`ShaftContact.update
    <surgsim.sim.tissue.ShaftContact.update>`: the task gives the tip, the shaft's direction, the
    length inside the tissue and the advance; it returns the force of the tissue on the tool.
    """

    def __init__(self, body: FemBody, puncture_force: float, grip_per_length: float,
                 capture_radius: float) -> None:
        self.body = body
        self.puncture_force = puncture_force
        self.grip_per_length = grip_per_length
        self.capture_radius = capture_radius
        self._carrier = p.createMultiBody(baseMass=0, baseCollisionShapeIndex=-1, basePosition=_PARK,
                                          physicsClientId=body.client)
        self._base_at_rest = body.base_force(body.mesh.nodes)
        self._held = np.zeros(len(body.mesh.nodes), dtype=bool)
        self._held[body.anchored] = True
        self._surface = np.zeros(len(body.mesh.nodes), dtype=bool)
        self._surface[boundary_nodes(body.mesh)] = True
        self._rest_volumes = body.mesh.volumes()
        #: node -> anchor id of the nodes the tool grips now
        self.gripped: dict[int, int] = {}
        #: the tip is in the tissue (touching or through), and through it
        self.touching = False
        self.punctured = False
        #: node positions (m) after the last update
        self.positions = body.mesh.nodes.copy()
        self._pose: tuple[np.ndarray, tuple[float, ...]] | None = None
        self._inside = 0.0
        #: the force (N) of the last update; while ``frozen``, :meth:`update` returns it and
        #: moves nothing (a measurement must not step the tissue)
        self.force = (0.0, 0.0, 0.0)
        self.frozen = False

    def update(self, tip: Sequence[float], direction: Sequence[float], inside: float,
               advance: float = 0.0) -> tuple[float, float, float]:
        """Move the tool to ``tip`` (m) along ``direction`` (unit, into the tissue) over one
        control period, ``inside`` (m) of the shaft in the tissue; the force of the tissue on the
        tool (N). ``advance`` is not needed: the engine sees the motion itself."""
        if self.frozen:
            return self.force
        tip = np.asarray(tip, dtype=float)
        d = np.asarray(direction, dtype=float)
        quat = _quaternion(direction)
        self._move(tip, d, quat, inside)
        x = self.positions = self.body.node_positions()
        force = self._load(x)
        if self.punctured and inside <= 0.0:
            self._release_all()
        self.force = (float(force[0]), float(force[1]), float(force[2]))
        return self.force

    def _load(self, x: np.ndarray | None = None) -> np.ndarray:
        """Force of the tissue on the tool (N): the change of the held nodes' elastic forces."""
        return self._base_at_rest - self.body.base_force(x)

    def _move(self, tip: np.ndarray, direction: np.ndarray, quat: tuple[float, ...], inside: float) -> None:
        """Carry the tool from its last pose to this one in the engine's sub-steps (the first
        pose of an episode is taken without stepping); every ``CHECK_EVERY`` sub-steps on the way
        the tip is checked for entry and puncture and the grip for slip (a stiff tissue would be
        pressed far past its puncture force within a period, and a grip held for a whole period
        drags the tissue much further than friction allows)."""
        cid = self.body.client
        if self._pose is None:
            p.resetBasePositionAndOrientation(self._carrier, tip.tolist(), quat, physicsClientId=cid)
            self._pose, self._inside = (tip, quat), inside
            return
        (start, start_quat), start_inside = self._pose, self._inside
        n = self.body.substeps
        last_check = start
        for k in range(1, n + 1):
            s = k / n
            pos = start + s * (tip - start)
            orn = p.getQuaternionSlerp(start_quat, quat, s)
            p.resetBasePositionAndOrientation(self._carrier, pos.tolist(), orn, physicsClientId=cid)
            p.stepSimulation(physicsClientId=cid)
            if k % CHECK_EVERY and k != n:
                continue
            x = self.body.node_positions()
            now_inside = start_inside + s * (inside - start_inside)
            withdrawing = float((pos - last_check) @ direction) < -_STILL
            last_check = pos
            if self.gripped and self._crushed(x):
                self._let_go_all()  # the tissue tears free of the tool
                continue  # and is let be until the next check
            if self.punctured:
                if now_inside > 0.0:
                    self._slip_and_grip(x, pos, direction, now_inside, orn)
            elif not self.touching:
                if not withdrawing and self._holder(x, pos, strict=True) is not None:
                    self.touching = True
                    self._press(x, pos, direction, orn, withdrawing)
            elif -float(self._load(x) @ direction) > self.puncture_force:
                self.punctured = True  # the surface gives way under the tip
                self._let_go_all()
            else:
                self._press(x, pos, direction, orn, withdrawing)
        self._pose, self._inside = (tip, quat), inside

    def _crushed(self, x: np.ndarray) -> bool:
        """Whether some element is squeezed below ``CRUSHED`` of its rest volume: a tool dragging
        gripped nodes further would invert it, and an inverted element makes the explicit
        elastic forces run away (seen: a surface dragged 25 mm sideways before puncture)."""
        return bool(np.min(signed_volumes(x, self.body.mesh.tets) / self._rest_volumes) < CRUSHED)

    def _holder(self, x: np.ndarray, point: np.ndarray, strict: bool = False) -> int | None:
        """The element of the deformed mesh that holds ``point``; None if ``strict`` and it is
        outside the mesh, else the nearest."""
        mesh = TetMesh(x, self.body.mesh.tets)
        try:
            if strict:  # on the surface is not in
                return int(embed(mesh, point, tol=0.0).tets[0])
            return int(embed(mesh, point, outside="nearest").tets[0])
        except ValueError:  # outside, and strict
            return None

    def _grip(self, nodes, x: np.ndarray, tip: np.ndarray, quat: tuple[float, ...]) -> None:
        """Anchor ``nodes`` to the tool where they are now (in the tool's frame)."""
        cid, soft = self.body.client, self.body.body
        rotation = np.asarray(p.getMatrixFromQuaternion(quat)).reshape(3, 3)
        for node in nodes:
            local = (rotation.T @ (x[node] - tip)).tolist()
            self.gripped[node] = p.createSoftBodyAnchor(soft, node, self._carrier, -1, local,
                                                        physicsClientId=cid)

    def _let_go(self, node: int) -> None:
        p.removeConstraint(self.gripped.pop(node), physicsClientId=self.body.client)

    def _let_go_all(self) -> None:
        for node in list(self.gripped):
            self._let_go(node)

    def _press(self, x: np.ndarray, tip: np.ndarray, d: np.ndarray, quat: tuple[float, ...],
               withdrawing: bool) -> None:
        """Before puncture: let go of the surface nodes that pull the tool in or slide, then (the
        tip not withdrawing) grip the other surface nodes of the element the tip is in. The tip
        out of the tissue is not touching; advancing in an element with no surface node and
        holding nothing, it is through."""
        forces = self.body.elastic_forces(x) if self.gripped else None
        released = set()
        for node in list(self.gripped):
            f = forces[node]  # the node's push on the tool
            push = -float(f @ d)
            across = f + push * d
            if push <= 0.0 or math.sqrt(float(across @ across)) > FRICTION * push:
                self._let_go(node)
                released.add(node)
        holder = self._holder(x, tip, strict=True)
        if holder is None:
            if not self.gripped:
                self.touching = False
            return
        if withdrawing:
            return
        corners = self.body.mesh.tets[holder]
        self._grip([int(n) for n in corners if self._surface[n] and not self._held[n]
                    and int(n) not in self.gripped and int(n) not in released], x, tip, quat)
        if not self.gripped and not released and not self._surface[corners].any():
            self.punctured = True  # past the surface layer, nothing holding the tip back

    def _slip_and_grip(self, x: np.ndarray, tip: np.ndarray, d: np.ndarray, inside: float,
                       quat: tuple[float, ...]) -> None:
        """Through the tissue: let go of the gripped nodes pulled harder than their share of the
        grip, then grip the free corners of the element holding the tip and the free nodes
        within the capture radius of the inserted length."""
        slipped = set()
        if self.gripped:
            forces = self.body.elastic_forces(x)
            share = self.grip_per_length * inside / len(self.gripped)
            for node in list(self.gripped):
                f = forces[node]
                if math.sqrt(float(f @ f)) > share:
                    self._let_go(node)
                    slipped.add(node)
        # distance of each node from the inserted segment [tip - inside d, tip]
        rel = x - tip
        along = np.clip(rel @ d, -max(inside, 0.0), 0.0)
        gap = rel - along[:, None] * d
        near = np.einsum("ij,ij->i", gap, gap) <= self.capture_radius**2
        near[self.body.mesh.tets[self._holder(x, tip)]] = True
        self._grip([n for n in np.flatnonzero(near & ~self._held).tolist()
                    if n not in self.gripped and n not in slipped], x, tip, quat)

    def _release_all(self) -> None:
        """The tool is out: let go of every node."""
        self._let_go_all()
        self.punctured = self.touching = False
