"""The pre-operative volume: a segmented-CT-like voxel grid of the patient.

World-aligned and metric: voxel ``[c, ix, iy, iz]`` has its centre at
``origin + voxel_size * (ix, iy, iz)``. Each channel holds a partial-volume value in 0..255,
``255 * clip(0.5 - d / voxel_size, 0, 1)`` where ``d`` is the signed distance (m, negative
inside) from the voxel centre to that channel's structures: 255 well inside, 0 well outside,
graded across the one voxel that the surface crosses. The grading keeps sub-voxel detail
(a 1.2 mm nerve still shows in 4 mm voxels, and the target's centroid is exact to a fraction of
a voxel), as partial-volume effects do in a real scan.

The values come from the task's scene value (:mod:`surgsim.scene`) through vectorised closed forms
(:mod:`surgsim.planning.geometry`); tests check sampled voxels against PyBullet's queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from surgsim.planning import geometry as geo
from surgsim.scene import Box, Ellipsoid, Point, Scene, Shape, Sphere
from surgsim.tasks.base import MM, Task
from surgsim.tasks.spec import SpecError

Sdf = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Volume:
    """A multi-channel voxel volume: ``data`` uint8 (C, R, R, R) indexed ``[c, ix, iy, iz]``;
    ``origin`` (3,) m is the centre of voxel (0, 0, 0); ``voxel_size`` m; ``channels`` names."""

    data: np.ndarray
    origin: np.ndarray
    voxel_size: float
    channels: tuple[str, ...]

    @property
    def resolution(self) -> int:
        return int(self.data.shape[1])

    def channel(self, name: str) -> np.ndarray:
        """One channel (R, R, R) by name."""
        if name not in self.channels:
            raise KeyError(f"no channel {name!r} in this volume; channels: {list(self.channels)}")
        return self.data[self.channels.index(name)]

    def centres(self) -> np.ndarray:
        """World coordinates (R, R, R, 3) of every voxel centre."""
        axis = np.arange(self.resolution) * self.voxel_size
        grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), axis=-1)
        return grid + self.origin

    def world_to_index(self, points: np.ndarray) -> np.ndarray:
        """Nearest voxel indices (..., 3) of world points (may fall outside 0..R-1)."""
        return np.rint((np.asarray(points) - self.origin) / self.voxel_size).astype(int)


def partial_volume(sdf: np.ndarray, voxel_size: float) -> np.ndarray:
    """uint8 partial-volume values from signed distances (see the module docstring)."""
    return np.rint(255.0 * np.clip(0.5 - sdf / voxel_size, 0.0, 1.0)).astype(np.uint8)


def preop_volume(task: Task, resolution: int | None = None) -> Volume:
    """The current patient's pre-operative volume, over the region of the spec's ``volume:``
    block (``resolution`` overrides the spec's)."""
    region = task.spec.volume
    if region is None:
        raise SpecError(
            f"spec {task.spec.name!r} has no 'volume' block; add e.g. "
            "volume: {resolution: 32, extent_mm: 128, centre: [0, 0, 0]}"
        )
    r = region.resolution if resolution is None else int(resolution)
    if r < 2:
        raise ValueError(f"volume resolution must be >= 2, got {r}")
    voxel = region.extent_mm * MM / r
    origin = np.asarray(region.centre, dtype=float) - voxel * (r - 1) / 2
    grid = Volume(np.zeros((0, r, r, r), np.uint8), origin, voxel, ())
    points = grid.centres().reshape(-1, 3)
    channels = _channel_sdfs(task.scene, voxel)
    data = np.empty((len(channels), r, r, r), dtype=np.uint8)
    for c, sdf in enumerate(channels.values()):
        data[c] = partial_volume(sdf(points), voxel).reshape(r, r, r)
    return Volume(data, origin, voxel, tuple(channels))


def _union(*sdfs: Sdf) -> Sdf:
    def sdf(points: np.ndarray) -> np.ndarray:
        out = np.full(len(points), np.inf)
        for part in sdfs:
            np.minimum(out, part(points), out=out)
        return out

    return sdf


def _channel_sdfs(scene: Scene, voxel: float) -> dict[str, Sdf]:
    """Channel name -> signed-distance function: ``tissue`` and ``critical`` (each the union of
    the parts of that role, empty when there are none), then the channels that target, port and
    marker parts name, in the scene's order."""
    channels: dict[str, list[Sdf]] = {"tissue": [], "critical": []}
    for part in scene.parts:
        channel = part.role if part.collides else part.channel
        if channel is not None:
            channels.setdefault(channel, []).append(_sdf(part.shape, voxel))
    return {name: _union(*sdfs) for name, sdfs in channels.items()}


def _sdf(shape: Shape, voxel: float) -> Sdf:
    """Signed distance to a shape; a point is a sphere one voxel in radius."""
    if isinstance(shape, Point):
        return _sdf(Sphere(shape.centre, voxel), voxel)
    if isinstance(shape, Sphere):
        return lambda p: geo.sphere_sdf(p, np.array(shape.centre), shape.radius)
    if isinstance(shape, Box):
        return lambda p: geo.box_sdf(p, np.array(shape.centre), np.array(shape.half_extents))
    if isinstance(shape, Ellipsoid):
        return lambda p: geo.ellipsoid_sdf(p, np.array(shape.centre), np.array(shape.radii))
    # beyond half a voxel outside a tube its partial-volume value is 0: skip those points
    return lambda p: geo.capsule_chain_sdf(p, shape.array, shape.radius, cutoff=voxel)
