"""The pre-operative volume: a segmented-CT-like voxel grid of the patient.

World-aligned and metric: voxel ``[c, ix, iy, iz]`` has its centre at
``origin + voxel_size * (ix, iy, iz)``. Each channel holds a partial-volume value in 0..255,
``255 * clip(0.5 - d / voxel_size, 0, 1)`` where ``d`` is the signed distance (m, negative
inside) from the voxel centre to that channel's structures: 255 well inside, 0 well outside,
graded across the one voxel that the surface crosses. The grading keeps sub-voxel detail
(a 1.2 mm nerve still shows in 4 mm voxels, and the target's centroid is exact to a fraction of
a voxel), as partial-volume effects do in a real scan.

The values come from the task's own anatomy parameters through vectorised closed forms
(:mod:`surgsim.planning.geometry`); tests check sampled voxels against PyBullet's queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from surgsim.planning import geometry as geo
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
    channels = _channel_sdfs(task, voxel)
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


def _channel_sdfs(task: Task, voxel: float) -> dict[str, Sdf]:
    """Channel name -> signed-distance function, from the task's anatomy parameters.

    Point markers (the port, a start position) are spheres one voxel in radius.
    """
    from surgsim.tasks.incision import LAYER_THICKNESS, IncisionTask
    from surgsim.tasks.needle_reach import NeedleReachTask
    from surgsim.tasks.surgical_path import SurgicalPathTask

    def sphere(centre: np.ndarray, radius: float) -> Sdf:
        return lambda p: geo.sphere_sdf(p, np.asarray(centre, dtype=float), radius)

    def box(top_z: float, half_xy, thickness: float) -> Sdf:
        centre = np.array([0.0, 0.0, top_z - thickness / 2])
        half = np.array([half_xy[0], half_xy[1], thickness / 2])
        return lambda p: geo.box_sdf(p, centre, half)

    def tube(points: np.ndarray, radius: float) -> Sdf:
        # beyond half a voxel outside a structure its partial-volume value is 0: skip those points
        return lambda p: geo.capsule_chain_sdf(p, points, radius, cutoff=voxel)

    if isinstance(task, SurgicalPathTask):
        centre, radii = task.organ_centre.copy(), task.organ_radii.copy()
        return {
            "tissue": lambda p: geo.ellipsoid_sdf(p, centre, radii),
            "critical": _union(*(tube(pts, rad) for pts, rad in task.tubes.values())),
            "target": sphere(task.target.copy(), task.params.lesion_radius_mm * MM),
            "port": sphere(task.port.copy(), voxel),
        }
    if isinstance(task, NeedleReachTask):
        return {
            "tissue": box(float(task.low[2]), task.half[:2], 0.01),
            "critical": lambda p: np.full(len(p), np.inf),
            "target": sphere(task.target.copy(), task.tolerance),
            "start": sphere(task.start_tip.copy(), voxel),
        }
    if isinstance(task, IncisionTask):
        p = task.params
        line = np.column_stack([task.curve, np.full(len(task.curve), -task.band_mid)])[::4]
        return {
            "tissue": box(0.0, task.half_xy, p.tissue_thickness_mm * MM),
            "critical": box(-task.critical_depth, task.half_xy, LAYER_THICKNESS),
            "incision": tube(line, (task.band[1] - task.band[0]) / 2),
            "start": sphere(task.start_tip.copy(), voxel),
        }
    raise TypeError(f"no pre-operative volume for task {type(task).__name__}")
