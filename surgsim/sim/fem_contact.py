"""The instrument in finite-element tissue: the ``fem`` tier's counterpart of
:class:`surgsim.sim.tissue.ShaftContact`, with every force from PyBullet's deformable world.

The tissue is a :class:`~surgsim.sim.fem.FemBody` of the patient's tissue part
(:func:`tissue_body`), held where the rest of the patient holds it. The instrument acts on it
with the engine's own means:

- **Before puncture**: a kinematic sphere of the shaft's radius at the tip presses the surface
  (PyBullet's rigid-soft contact). The tool moves from its last pose to the new one over the
  control period in the engine's sub-steps, so a step of the env is ``1 / CONTROL_RATE_HZ`` s of
  tissue dynamics.
- **Puncture**: once the tissue pushes back along the shaft by more than the puncture force, the
  sphere stops colliding with the tissue (PyBullet cannot pierce a soft body) and the shaft
  *grips* the tissue instead: every node within ``capture_radius`` of the inserted length is
  anchored (``createSoftBodyAnchor``) to a body that moves with the shaft, at the place it has
  in the shaft's frame then.
- **Friction, stick-slip and tearing**: a gripped node whose elastic force (the engine's law on
  the engine's node positions) exceeds its share of the grip, ``grip_per_length x inserted
  length / gripped nodes``, slips: its anchor is removed for one control period, the tissue
  relaxes under the engine's forces, and it is gripped again where it then is. So the shaft
  drags tissue along while it moves (stick), the force it can transmit is bounded by the grip
  (slip), and a shaft swept sideways tears through rather than dragging the organ with it.
  Cutting at the tip is the same grip on the nodes the tip reaches.
- **Withdrawal**: once nothing is inside, every anchor is released and the sphere collides again.

The force on the tool (N, world frame, the tissue on the tool) is read where the tissue is held:
the change of the engine's elastic forces on the anchored nodes (:meth:`FemBody.static_load`),
which is the load the tool puts on the tissue when the tissue is at rest (quasi-static:
inertia and damping forces are left out). PyBullet's own contact report is not used: it gives
12-65 % of the load (``benchmarks/fem_probe.py``).

What is a model parameter here, not a published value: the capture radius (a fraction of the
mesh cell) and the rule that slipping nodes let go for one control period.
"""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np
import pybullet as p

from surgsim.scene import Box, Ellipsoid
from surgsim.sim.fem import FemBody, SoftMaterial, TetMesh, box_mesh, boundary_nodes, ellipsoid_mesh

#: where the tool's bodies wait before the first pose (m): far from any tissue
_PARK = (0.0, 0.0, 10.0)
#: m: the radius of the sphere that presses the tissue before puncture: the tip of a 5 mm
#: instrument (model parameter)
TIP_RADIUS = 0.0025
#: nodes within this fraction of the mesh cell of the inserted shaft are gripped (model
#: parameter: about one node per cell along the track)
CAPTURE_FRACTION = 0.6
#: times per control period the load is read for puncture while the tip presses the surface
PUNCTURE_CHECKS = 4


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

    def __init__(
        self,
        body: FemBody,
        tip_radius: float,
        puncture_force: float,
        grip_per_length: float,
        capture_radius: float,
    ) -> None:
        self.body = body
        self.puncture_force = puncture_force
        self.grip_per_length = grip_per_length
        self.capture_radius = capture_radius
        cid = body.client
        sphere = p.createCollisionShape(p.GEOM_SPHERE, radius=tip_radius, physicsClientId=cid)
        self._tip = p.createMultiBody(baseMass=0, baseCollisionShapeIndex=sphere, basePosition=_PARK,
                                      physicsClientId=cid)
        self._carrier = p.createMultiBody(baseMass=0, baseCollisionShapeIndex=-1, basePosition=_PARK,
                                          physicsClientId=cid)
        self._base_at_rest = body.base_force(body.mesh.nodes)
        self._held = np.zeros(len(body.mesh.nodes), dtype=bool)
        self._held[body.anchored] = True
        #: node -> anchor id of the nodes the shaft grips now
        self.gripped: dict[int, int] = {}
        self.punctured = False
        #: withdrawn, the tip waits to be clear of the tissue before it collides again
        self._clearing = False
        self._clear_distance = capture_radius + tip_radius
        #: node positions (m) after the last update
        self.positions = body.mesh.nodes.copy()
        self._pose: tuple[np.ndarray, tuple[float, ...]] | None = None
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
        self._move(tip, d, quat)
        body = self.body
        x = self.positions = body.node_positions()
        force = self._base_at_rest - body.base_force(x)
        if self._clearing and self._clear_of_tissue(x, tip):
            self._clearing = False
            p.setCollisionFilterPair(self._tip, body.body, -1, -1, 1, physicsClientId=body.client)
        if not self.punctured and inside > 0.0 and self._pushed_through(d, x):
            self._puncture()
        if self.punctured and inside <= 0.0:
            self._release_all()
        elif self.punctured:
            self._slip_and_grip(x, tip, d, inside, quat)
        self.force = (float(force[0]), float(force[1]), float(force[2]))
        return self.force

    def _move(self, tip: np.ndarray, direction: np.ndarray, quat: tuple[float, ...]) -> None:
        """Carry the tool from its last pose to this one in the engine's sub-steps (teleported
        kinematic bodies: the first pose of an episode is taken without stepping), checking for
        puncture ``PUNCTURE_CHECKS`` times a control period (a stiff tissue would otherwise be
        pressed far past its puncture force within one period)."""
        cid = self.body.client
        if self._pose is None:
            for b in (self._tip, self._carrier):
                p.resetBasePositionAndOrientation(b, tip.tolist(), quat, physicsClientId=cid)
            self._pose = (tip, quat)
            return
        start, start_quat = self._pose
        n = self.body.substeps
        checks = {round(n * q / PUNCTURE_CHECKS) for q in range(1, PUNCTURE_CHECKS)}
        for k in range(1, n + 1):
            s = k / n
            pos = (start + s * (tip - start)).tolist()
            orn = p.getQuaternionSlerp(start_quat, quat, s)
            p.resetBasePositionAndOrientation(self._tip, pos, orn, physicsClientId=cid)
            p.resetBasePositionAndOrientation(self._carrier, pos, orn, physicsClientId=cid)
            p.stepSimulation(physicsClientId=cid)
            if k in checks and not self.punctured and self._pushed_through(direction):
                self._puncture()
        self._pose = (tip, quat)

    def _pushed_through(self, direction: np.ndarray, x: np.ndarray | None = None) -> bool:
        """Whether the tissue pushes back along the shaft by more than the puncture force."""
        force = self._base_at_rest - self.body.base_force(x)
        return -float(force @ direction) > self.puncture_force

    def _puncture(self) -> None:
        """The tip is through: the sphere stops colliding (the shaft grips the tissue instead)."""
        self.punctured = True
        self._clearing = False
        p.setCollisionFilterPair(self._tip, self.body.body, -1, -1, 0, physicsClientId=self.body.client)

    def _slip_and_grip(self, x: np.ndarray, tip: np.ndarray, d: np.ndarray, inside: float,
                       quat: tuple[float, ...]) -> None:
        """Let go of the gripped nodes pulled harder than their share of the grip, then grip the
        nodes within the capture radius of the inserted length that are free."""
        cid, soft = self.body.client, self.body.body
        slipped = set()
        if self.gripped:
            forces = self.body.elastic_forces(x)
            share = self.grip_per_length * inside / len(self.gripped)
            for node, anchor in list(self.gripped.items()):
                f = forces[node]
                if math.sqrt(float(f @ f)) > share:
                    p.removeConstraint(anchor, physicsClientId=cid)
                    del self.gripped[node]
                    slipped.add(node)
        # distance of each node from the inserted segment [tip - inside d, tip]
        rel = x - tip
        along = np.clip(rel @ d, -max(inside, 0.0), 0.0)
        gap = rel - along[:, None] * d
        near = np.einsum("ij,ij->i", gap, gap) <= self.capture_radius**2
        rotation = np.asarray(p.getMatrixFromQuaternion(quat)).reshape(3, 3)
        for node in np.flatnonzero(near & ~self._held).tolist():
            if node in self.gripped or node in slipped:
                continue
            local = (rotation.T @ rel[node]).tolist()
            self.gripped[node] = p.createSoftBodyAnchor(soft, node, self._carrier, -1, local,
                                                        physicsClientId=cid)

    def _release_all(self) -> None:
        """The shaft is out: let go of every node; the tip collides again once it is clear of
        the tissue (:meth:`_clear_of_tissue`), not while the tissue it pulled still wraps it."""
        cid = self.body.client
        for anchor in self.gripped.values():
            p.removeConstraint(anchor, physicsClientId=cid)
        self.gripped.clear()
        self.punctured = False
        self._clearing = True

    def _clear_of_tissue(self, x: np.ndarray, tip: np.ndarray) -> bool:
        """No node within the capture radius plus the tip's radius of the tip."""
        gap = x - tip
        return bool(np.einsum("ij,ij->i", gap, gap).min() > self._clear_distance**2)
