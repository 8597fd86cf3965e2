"""Anatomy builders: organs (ellipsoids), vessels and nerves (bent tubes), lesions, body wall.

The shapes are drawn by the tasks (pure numbers); these functions turn them into named
PyBullet bodies so that every distance, contact and ray query is answered by PyBullet.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from surgsim._data import asset_path
from surgsim.sim.world import World

TISSUE_RGBA = (0.80, 0.45, 0.42, 1.0)
ORGAN_RGBA = (0.55, 0.22, 0.20, 1.0)
VESSEL_RGBA = (0.75, 0.05, 0.05, 1.0)
NERVE_RGBA = (0.95, 0.85, 0.30, 1.0)
LESION_RGBA = (0.20, 0.80, 0.25, 1.0)
WALL_RGBA = (0.90, 0.75, 0.65, 1.0)


def add_organ(world: World, name: str, centre: Sequence[float], radii: Sequence[float]) -> int:
    """An ellipsoidal organ: the project's unit-sphere mesh scaled per axis (convex)."""
    return world.add_shape(
        name, "mesh", centre, rgba=ORGAN_RGBA, mesh=asset_path("meshes/unit_sphere.obj"), scale=radii
    )


def add_vessel(world: World, name: str, points: np.ndarray, radius: float, nerve: bool = False) -> int:
    """A vessel (or nerve) as a tube along ``points``; it may bend."""
    return world.add_capsule_chain(name, points, radius, NERVE_RGBA if nerve else VESSEL_RGBA)


def add_lesion(world: World, centre: Sequence[float], radius: float) -> int:
    """The target lesion; visual only, so rays and clearance queries see through it."""
    return world.add_shape("lesion", "sphere", centre, rgba=LESION_RGBA, radius=radius, collide=False)


def add_body_wall(world: World, port: Sequence[float], thickness: float, half_size: float) -> int:
    """The abdominal wall under the port (visual only: the shaft always passes the port)."""
    centre = (port[0], port[1], port[2] - thickness / 2)
    return world.add_shape(
        "body_wall", "box", centre, rgba=WALL_RGBA,
        half_extents=(half_size, half_size, thickness / 2), collide=False,
    )


def add_tissue_slab(world: World, name: str, top_z: float, half_xy: Sequence[float], thickness: float,
                    rgba: Sequence[float] = TISSUE_RGBA) -> int:
    """A flat tissue layer whose upper surface is at ``top_z``."""
    return world.add_shape(
        name, "box", (0.0, 0.0, top_z - thickness / 2), rgba=rgba,
        half_extents=(half_xy[0], half_xy[1], thickness / 2),
    )


def bent_tube(centre: np.ndarray, along: np.ndarray, bend_towards: np.ndarray, length: float,
              bend: float, n_points: int = 7) -> np.ndarray:
    """Points of a tube through ``centre`` along ``along`` whose ends bow by ``bend`` (parabola)."""
    s = np.linspace(-0.5, 0.5, n_points)[:, None]
    return centre + s * length * along + bend * (2 * s) ** 2 * bend_towards
