"""A PyBullet world that owns its own physics client and names its bodies.

Every call passes ``physicsClientId`` so that any number of worlds can live in one
process without interfering (the global default client is never used).
"""

from __future__ import annotations

import functools
import math
import operator
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import pybullet as p

Vec3 = Sequence[float]
Quat = Sequence[float]

IDENTITY_QUAT = (0.0, 0.0, 0.0, 1.0)
#: the contact distance of a getClosestPoints entry
_DISTANCE = operator.itemgetter(8)


@dataclass(frozen=True)
class ClosestPoint:
    """Nearest pair of points between two bodies; ``distance`` < 0 means penetration."""

    distance: float
    point_a: tuple[float, float, float]
    point_b: tuple[float, float, float]
    #: unit contact normal pointing from body b towards body a
    normal: tuple[float, float, float] = (0.0, 0.0, 1.0)


@dataclass(frozen=True)
class RayHit:
    body: str
    fraction: float
    position: tuple[float, float, float]


@dataclass(frozen=True)
class Contact:
    """A touching or penetrating point pair; ``distance`` <= 0 is minus the penetration depth."""

    body_a: str
    body_b: str
    position: tuple[float, float, float]
    distance: float


class World:
    """One PyBullet simulation: DIRECT (headless) or GUI, with bodies addressed by name."""

    def __init__(self, gui: bool = False, visuals: bool = True) -> None:
        """``visuals=False`` gives added bodies one shared, invisible placeholder visual shape,
        for worlds that are never rendered. (A body with *no* visual shape is worse: PyBullet
        then tessellates its collision shape for the renderer, about 1.4 ms for a bent vessel.)"""
        self.gui = gui
        self.visuals = visuals or gui
        if gui and sys.platform.startswith("linux") and not os.environ.get("DISPLAY"):
            # PyBullet's GUI would print an X error and exit the interpreter instead of failing
            raise RuntimeError("render_mode='human' needs a display (DISPLAY is not set); "
                               "use render_mode='rgb_array'")
        self.client = p.connect(p.GUI if gui else p.DIRECT)
        if self.client < 0:
            raise RuntimeError(
                "PyBullet could not open a GUI window (no display?); use render_mode='rgb_array'"
                if gui
                else "PyBullet could not start a DIRECT physics client"
            )
        self._bodies: dict[str, int] = {}
        self._names: dict[int, str] = {}
        #: bodies removed since the simulation was last cleared (see :meth:`clear`)
        self.removed = 0
        #: the Python objects given to PyBullet for drawn meshes, kept for reuse (add_visual_mesh)
        self._mesh_lists: dict[tuple[str, str, int], list] = {}
        self._add_placeholder_visual()
        if gui:
            p.configureDebugVisualizer(p.COV_ENABLE_GUI, 0, physicsClientId=self.client)
            # letters drive teleoperation; PyBullet's own shortcuts (w: wireframe, ...) would clash
            p.configureDebugVisualizer(p.COV_ENABLE_KEYBOARD_SHORTCUTS, 0, physicsClientId=self.client)

    def _add_placeholder_visual(self) -> None:
        self._placeholder_visual = -1
        if not self.visuals:
            self._placeholder_visual = p.createVisualShape(
                p.GEOM_BOX, halfExtents=[1e-5] * 3, rgbaColor=[0, 0, 0, 0], physicsClientId=self.client
            )

    def clear(self) -> None:
        """Remove every body and everything PyBullet still keeps of removed ones.

        PyBullet frees little of a removed body (about 12 KB of a bent vessel stays), so a world
        whose anatomy is rebuilt at every reset grows without bound unless it is cleared now and
        then; only resetting the whole simulation gives that memory back.
        """
        p.resetSimulation(physicsClientId=self.client)
        self._bodies.clear()
        self._names.clear()
        self.removed = 0
        self._add_placeholder_visual()

    # ------------------------------------------------------------------ bodies
    def body(self, name: str) -> int:
        try:
            return self._bodies[name]
        except KeyError:
            raise KeyError(f"no body named '{name}' in this world; have {sorted(self._bodies)}") from None

    def has(self, name: str) -> bool:
        return name in self._bodies

    @property
    def names(self) -> list[str]:
        return list(self._bodies)

    def _register(self, name: str, body_id: int) -> int:
        if body_id < 0:
            raise RuntimeError(f"PyBullet failed to create body '{name}'")
        if name in self._bodies:
            self.remove(name)
        self._bodies[name] = body_id
        self._names[body_id] = name
        return body_id

    def add_shape(
        self,
        name: str,
        kind: str,
        position: Vec3,
        orientation: Quat = IDENTITY_QUAT,
        rgba: Sequence[float] = (0.8, 0.8, 0.8, 1.0),
        *,
        half_extents: Vec3 | None = None,
        radius: float | None = None,
        length: float | None = None,
        mesh: Path | None = None,
        scale: Vec3 | None = None,
        collide: bool = True,
    ) -> int:
        """Add a static body of one primitive: ``box``, ``sphere``, ``capsule``, ``cylinder`` or ``mesh``.

        Capsules and cylinders lie along their local z axis; ``length`` is the cylindrical part.
        A ``mesh`` is a convex OBJ scaled by ``scale`` (a unit sphere scaled gives an ellipsoid).
        """
        geom = {
            "box": p.GEOM_BOX,
            "sphere": p.GEOM_SPHERE,
            "capsule": p.GEOM_CAPSULE,
            "cylinder": p.GEOM_CYLINDER,
            "mesh": p.GEOM_MESH,
        }[kind]
        args: dict = {}
        if kind == "box":
            args["halfExtents"] = list(half_extents)
        elif kind == "mesh":
            args["meshScale"] = list(scale)
        else:
            args["radius"] = float(radius)
        vis_args = dict(args)
        if kind == "mesh":
            args["vertices"] = _obj_vertices(str(mesh))  # parsed once, not at every reset
            vis_args["fileName"] = str(mesh)
        if kind in ("capsule", "cylinder"):
            args["height"] = float(length)
            vis_args["length"] = float(length)
        col = p.createCollisionShape(geom, physicsClientId=self.client, **args) if collide else -1
        vis = self._placeholder_visual
        if self.visuals:
            vis = p.createVisualShape(geom, rgbaColor=list(rgba), physicsClientId=self.client, **vis_args)
        body = p.createMultiBody(
            baseMass=0.0,
            baseCollisionShapeIndex=col,
            baseVisualShapeIndex=vis,
            basePosition=list(position),
            baseOrientation=list(orientation),
            physicsClientId=self.client,
        )
        return self._register(name, body)

    def add_capsule_chain(
        self, name: str, points: np.ndarray, radius: float, rgba: Sequence[float], collide: bool = True
    ) -> int:
        """Add a bent tube through ``points`` (N x 3) as one body of N-1 capsules.

        One compound body per tube keeps a clearance query to one ``getClosestPoints`` call.
        """
        points = np.asarray(points, dtype=float)
        starts, ends = points[:-1], points[1:]
        centre = points.mean(axis=0)
        positions, orientations, lengths = [], [], []
        for a, b in zip(starts, ends):
            axis = b - a
            length = float(np.linalg.norm(axis))
            positions.append(((a + b) / 2 - centre).tolist())
            orientations.append(quat_z_to(axis / length))
            lengths.append(length)
        n = len(lengths)
        col = -1
        if collide:
            col = p.createCollisionShapeArray(
                [p.GEOM_CAPSULE] * n,
                radii=[radius] * n,
                lengths=lengths,
                collisionFramePositions=positions,
                collisionFrameOrientations=orientations,
                physicsClientId=self.client,
            )
        vis = self._placeholder_visual
        if self.visuals:
            vis = p.createVisualShapeArray(
                [p.GEOM_CAPSULE] * n,
                radii=[radius] * n,
                lengths=lengths,
                rgbaColors=[list(rgba)] * n,
                visualFramePositions=positions,
                visualFrameOrientations=orientations,
                physicsClientId=self.client,
            )
        body = p.createMultiBody(
            baseMass=0.0,
            baseCollisionShapeIndex=col,
            baseVisualShapeIndex=vis,
            basePosition=centre.tolist(),
            physicsClientId=self.client,
        )
        return self._register(name, body)

    def add_visual_mesh(self, name: str, vertices: np.ndarray, indices: Sequence[int], normals: np.ndarray,
                        rgba: Sequence[float]) -> int:
        """Add a body that is only seen: a triangle mesh (``vertices`` (N, 3) in world coordinates,
        ``indices`` three per triangle, unit vertex ``normals`` (N, 3) for the shading), with no
        collision shape, so queries pass through it.

        PyBullet's parser keeps a reference to the vertex and normal lists, each of their rows and
        the index list it is given, and never frees them (about 360 KB of Python objects per
        drawing of 642 vertices), so a redrawn mesh is given the same lists, overwritten in place
        (:meth:`_kept`): what stays referenced is then only what the next drawing reuses.
        """
        rows = self._kept(name, "vertices", len(vertices), lambda: [0.0, 0.0, 0.0])
        normal_rows = self._kept(name, "normals", len(normals), lambda: [0.0, 0.0, 0.0])
        for kept, values in ((rows, vertices), (normal_rows, normals)):
            for row, value in zip(kept, np.asarray(values, dtype=float).tolist()):
                row[:] = value
        flat = self._kept(name, "indices", len(indices), int)
        flat[:] = np.asarray(indices, dtype=np.int64).tolist()
        colour = self._kept(name, "rgba", 4, float)
        colour[:] = [float(c) for c in rgba]
        vis = p.createVisualShape(p.GEOM_MESH, vertices=rows, indices=flat, normals=normal_rows,
                                  rgbaColor=colour, physicsClientId=self.client)
        body = p.createMultiBody(baseMass=0.0, baseCollisionShapeIndex=-1, baseVisualShapeIndex=vis,
                                 physicsClientId=self.client)
        return self._register(name, body)

    def _kept(self, name: str, kind: str, length: int, make) -> list:
        """The list of ``length`` items (each from ``make()``) kept for ``name``'s ``kind``: the
        same list and items every time that mesh is drawn with that many."""
        key = (name, kind, length)
        if key not in self._mesh_lists:
            self._mesh_lists[key] = [make() for _ in range(length)]
        return self._mesh_lists[key]

    def hide(self, name: str) -> None:
        """Make a body invisible to the camera (it still collides): fully transparent colour."""
        p.changeVisualShape(self._bodies[name], -1, rgbaColor=[0.0, 0.0, 0.0, 0.0], physicsClientId=self.client)

    def load_urdf(self, name: str, path: Path, position: Vec3, orientation: Quat = IDENTITY_QUAT) -> int:
        body = p.loadURDF(
            str(path),
            basePosition=list(position),
            baseOrientation=list(orientation),
            useFixedBase=True,
            physicsClientId=self.client,
        )
        return self._register(name, body)

    def move(self, name: str, position: Vec3, orientation: Quat = IDENTITY_QUAT) -> None:
        """Teleport a body (instruments are position-controlled, like a surgical robot's)."""
        p.resetBasePositionAndOrientation(
            self._bodies[name], position, orientation, physicsClientId=self.client
        )

    def pose(self, name: str) -> tuple[tuple[float, float, float], tuple[float, float, float, float]]:
        return p.getBasePositionAndOrientation(self._bodies[name], physicsClientId=self.client)

    def remove(self, name: str) -> None:
        body = self._bodies.pop(name)
        del self._names[body]
        p.removeBody(body, physicsClientId=self.client)
        self.removed += 1

    # ----------------------------------------------------------------- queries
    def closest(self, a: str, b: str, max_distance: float) -> ClosestPoint | None:
        """Nearest points between bodies ``a`` and ``b`` if closer than ``max_distance``, else None."""
        points = p.getClosestPoints(
            self._bodies[a], self._bodies[b], max_distance, physicsClientId=self.client
        )
        if not points:
            return None
        best = points[0] if len(points) == 1 else min(points, key=_DISTANCE)
        return ClosestPoint(best[8], best[5], best[6], best[7])

    def distance(self, a: str, b: str, max_distance: float) -> float:
        """Signed distance between two bodies, capped at ``max_distance`` (negative = penetration)."""
        points = p.getClosestPoints(
            self._bodies[a], self._bodies[b], max_distance, physicsClientId=self.client
        )
        if not points:
            return max_distance
        return points[0][8] if len(points) == 1 else min(map(_DISTANCE, points))

    def contacts(self, a: str, b: str | None = None) -> list[Contact]:
        """Contact points of body ``a`` (with ``b`` only, if given): closest points at distance <= 0.

        Works for static and kinematic bodies alike (Bullet's own contact pass skips pairs of
        static bodies, and every body here is static or kinematic).
        """
        others = [b] if b is not None else [name for name in self._bodies if name != a]
        found = []
        for other in others:
            points = p.getClosestPoints(
                self._bodies[a], self._bodies[other], 0.0, physicsClientId=self.client
            )
            found += [Contact(a, other, pt[5], pt[8]) for pt in points if pt[8] <= 0.0]
        return found

    def ray(self, start: Vec3, end: Vec3) -> RayHit | None:
        """First body hit by the segment ``start`` -> ``end``."""
        hit = p.rayTest(start, end, physicsClientId=self.client)[0]
        if hit[0] < 0:
            return None
        return RayHit(self._names.get(hit[0], str(hit[0])), hit[2], hit[3])

    def camera_image(
        self, width: int, height: int, view: Sequence[float], projection: Sequence[float]
    ) -> tuple[np.ndarray, np.ndarray]:
        """RGB (H x W x 3 uint8) and the raw depth buffer (H x W float32) from TinyRenderer."""
        _, _, rgba, depth, _ = p.getCameraImage(
            width,
            height,
            viewMatrix=view,
            projectionMatrix=projection,
            renderer=p.ER_TINY_RENDERER,
            flags=p.ER_NO_SEGMENTATION_MASK,
            physicsClientId=self.client,
        )
        rgb = np.asarray(rgba, dtype=np.uint8).reshape(height, width, 4)[:, :, :3]
        return rgb, np.asarray(depth, dtype=np.float32).reshape(height, width)

    # ------------------------------------------------------------------ GUI window
    def keys_down(self) -> set[str]:
        """Printable keys held, or pressed since the last call, in the GUI window (empty when headless).

        Raises ``RuntimeError`` once the window has been closed.
        """
        try:
            events = p.getKeyboardEvents(physicsClientId=self.client)
        except p.error as exc:
            raise RuntimeError(f"the PyBullet window is closed ({exc})") from None
        pressed = p.KEY_IS_DOWN | p.KEY_WAS_TRIGGERED
        return {chr(key) for key, state in events.items() if 32 < key < 127 and state & pressed}

    def view_from(self, distance: float, yaw_deg: float, pitch_deg: float, target: Vec3) -> None:
        """Place the GUI window's camera (PyBullet's yaw / pitch convention); no effect when headless."""
        if self.gui:
            p.resetDebugVisualizerCamera(distance, yaw_deg, pitch_deg, list(target), physicsClientId=self.client)

    def close(self) -> None:
        if self.client >= 0:
            try:
                p.disconnect(physicsClientId=self.client)
            except p.error:
                pass
            self.client = -1
            self._bodies.clear()
            self._names.clear()

    def __del__(self) -> None:  # pragma: no cover - best effort at interpreter exit
        try:
            self.close()
        except Exception:
            pass


@functools.lru_cache(maxsize=8)
def _obj_vertices(path: str) -> list[list[float]]:
    """Vertex list of an OBJ file, for convex collision shapes built from vertices."""
    with open(path) as fh:
        return [[float(v) for v in line.split()[1:4]] for line in fh if line.startswith("v ")]


def quat_z_to(direction: Sequence[float]) -> list[float]:
    """Quaternion rotating the local z axis onto the unit vector ``direction`` (plain floats: fast)."""
    x, y, z = (float(v) for v in direction)
    # axis = z_hat x direction = (-y, x, 0); |axis| = sin(angle); z = cos(angle)
    s = math.hypot(x, y)
    if s < 1e-12:
        return [0.0, 0.0, 0.0, 1.0] if z > 0 else [1.0, 0.0, 0.0, 0.0]
    half = math.atan2(s, z) / 2
    k = math.sin(half) / s
    return [-y * k, x * k, 0.0, math.cos(half)]
