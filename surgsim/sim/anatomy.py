"""Bodies from a scene value: each part of a :class:`surgsim.scene.Scene` becomes a named PyBullet
body, so that every distance, contact and ray query is answered by PyBullet.

Tissue and critical parts collide; the other parts are only seen, so they are built only in
worlds that are rendered. Colours of the anatomy are named here.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np

from surgsim._data import asset_path
from surgsim.scene import Box, Ellipsoid, Part, Scene, Sphere, Tube
from surgsim.sim.world import World

TISSUE_RGBA = (0.80, 0.45, 0.42, 1.0)
ORGAN_RGBA = (0.55, 0.22, 0.20, 1.0)
VESSEL_RGBA = (0.75, 0.05, 0.05, 1.0)
NERVE_RGBA = (0.95, 0.85, 0.30, 1.0)
LESION_RGBA = (0.20, 0.80, 0.25, 1.0)
WALL_RGBA = (0.90, 0.75, 0.65, 1.0)


class SceneBodies:
    """Keeps a world's bodies equal to the parts of the scene last shown.

    A part that only moved is moved, one whose shape changed is rebuilt, and one no longer in the
    scene is removed: bodies that live for the whole episode series are created once (Task.reset
    clears the world now and then for what removed bodies leave behind).
    """

    def __init__(self, world: World) -> None:
        self.world = world
        self._built: dict[str, Part] = {}

    def show(self, scene: Scene) -> None:
        bodied = {part.name for part in scene.parts if self._has_body(part)}
        for name in [name for name in self._built if name not in bodied]:  # gone, or no body now
            self.world.remove(name)
            del self._built[name]
        for part in scene.parts:
            if part.name not in bodied:
                continue
            old = self._built.get(part.name)
            if old == part:
                continue
            if old is not None and _moved_only(old, part):
                self.world.move(part.name, part.shape.centre)
            else:
                _add(self.world, part)
            self._built[part.name] = part

    def _has_body(self, part: Part) -> bool:
        """Seen-only parts get a body only in a world that renders; parts without a colour never."""
        return part.rgba is not None and (part.collides or self.world.visuals)


def _moved_only(old: Part, new: Part) -> bool:
    shape = new.shape
    return (
        hasattr(shape, "centre") and type(old.shape) is type(shape)
        and dataclasses.replace(old, shape=dataclasses.replace(old.shape, centre=shape.centre)) == new
    )


def _add(world: World, part: Part) -> None:
    s, name, rgba, collide = part.shape, part.name, part.rgba, part.collides
    if isinstance(s, Sphere):
        world.add_shape(name, "sphere", s.centre, rgba=rgba, radius=s.radius, collide=collide)
    elif isinstance(s, Box):
        world.add_shape(name, "box", s.centre, rgba=rgba, half_extents=s.half_extents, collide=collide)
    elif isinstance(s, Ellipsoid):  # the project's unit-sphere mesh scaled per axis (convex)
        world.add_shape(name, "mesh", s.centre, rgba=rgba, mesh=asset_path("meshes/unit_sphere.obj"),
                        scale=s.radii, collide=collide)
    elif isinstance(s, Tube):
        world.add_capsule_chain(name, s.array, s.radius, rgba, collide=collide)
    else:
        raise TypeError(f"part {name!r}: a {type(s).__name__} has no body")


@functools.cache
def unit_sphere_mesh(subdivisions: int = 1) -> tuple[np.ndarray, tuple[int, ...]]:
    """Vertices (N, 3) and triangle indices of the project's unit icosphere (the organ's mesh),
    each triangle split into four ``subdivisions`` more times (for a surface that can dimple)."""
    vertices, faces = [], []
    with open(asset_path("meshes/unit_sphere.obj")) as fh:
        for line in fh:
            if line.startswith("v "):
                vertices.append([float(v) for v in line.split()[1:4]])
            elif line.startswith("f "):
                faces.append([int(v.split("/")[0]) - 1 for v in line.split()[1:4]])
    for _ in range(subdivisions):
        middle: dict[tuple[int, int], int] = {}

        def between(a: int, b: int) -> int:
            key = (min(a, b), max(a, b))
            if key not in middle:
                m = (np.asarray(vertices[a]) + np.asarray(vertices[b])) / 2
                vertices.append((m / np.linalg.norm(m)).tolist())
                middle[key] = len(vertices) - 1
            return middle[key]

        split = []
        for a, b, c in faces:
            ab, bc, ca = between(a, b), between(b, c), between(c, a)
            split += [[a, ab, ca], [b, bc, ab], [c, ca, bc], [ab, bc, ca]]
        faces = split
    return np.array(vertices), tuple(i for face in faces for i in face)


def bent_tube(centre: np.ndarray, along: np.ndarray, bend_towards: np.ndarray, length: float,
              bend: float, n_points: int = 7) -> np.ndarray:
    """Points of a tube through ``centre`` along ``along`` whose ends bow by ``bend`` (parabola)."""
    s = np.linspace(-0.5, 0.5, n_points)[:, None]
    return centre + s * length * along + bend * (2 * s) ** 2 * bend_towards


def slab_mesh(half_xy, top: float, thickness: float, cells: int,
              hole: np.ndarray | None = None) -> tuple[np.ndarray, list[int], np.ndarray]:
    """A drawn tissue slab: its top a grid of ``cells`` a side (less the triangles touching a
    vertex marked in ``hole``, a mask over the grid's vertices, row by row over x then y), its
    four sides and its bottom: vertices, triangle indices, vertex normals."""
    hx, hy = float(half_xy[0]), float(half_xy[1])
    n = cells + 1
    xs, ys = np.meshgrid(np.linspace(-hx, hx, n), np.linspace(-hy, hy, n), indexing="ij")
    top_grid = np.column_stack([xs.ravel(), ys.ravel(), np.full(n * n, top)])
    indices = _grid_triangles(n, n, None if hole is None else np.asarray(hole).reshape(n, n))
    bottom = top - thickness
    corners = [(-hx, -hy), (hx, -hy), (hx, hy), (-hx, hy)]
    vertices, normals = [top_grid], [np.tile([0.0, 0.0, 1.0], (n * n, 1))]
    start = n * n
    for k in range(4):  # the sides, counter-clockwise seen from outside
        (x0, y0), (x1, y1) = corners[k], corners[(k + 1) % 4]
        outward = np.array([y1 - y0, x0 - x1, 0.0]) / math.hypot(x1 - x0, y1 - y0)
        vertices.append(np.array([[x0, y0, bottom], [x1, y1, bottom], [x1, y1, top], [x0, y0, top]]))
        normals.append(np.tile(outward, (4, 1)))
        indices += [start, start + 1, start + 2, start, start + 2, start + 3]
        start += 4
    vertices.append(np.array([[x, y, bottom] for x, y in corners]))
    normals.append(np.tile([0.0, 0.0, -1.0], (4, 1)))
    indices += [start, start + 2, start + 1, start, start + 3, start + 2]
    return np.vstack(vertices), indices, np.vstack(normals)


def band_mesh(points_xy: np.ndarray, offsets: np.ndarray, heights: np.ndarray,
              keep: np.ndarray | None = None) -> tuple[np.ndarray, list[int], np.ndarray]:
    """A surface along a polyline (K, 2): at each point, vertices at the sideways ``offsets`` (J,)
    (m, to the left of the direction of travel) and ``heights`` (K, J); drawn over the segments
    whose two ends are both kept (``keep``, (K,) bool; default all): vertices, triangle indices,
    vertex normals (up: the band is nearly flat where it is drawn)."""
    points = np.asarray(points_xy, dtype=float)
    tangent = np.gradient(points, axis=0)
    tangent /= np.maximum(np.linalg.norm(tangent, axis=1, keepdims=True), 1e-12)
    left = np.column_stack([-tangent[:, 1], tangent[:, 0]])
    k, j = len(points), len(offsets)
    xy = points[:, None, :] + left[:, None, :] * np.asarray(offsets)[None, :, None]
    vertices = np.column_stack([xy.reshape(-1, 2), np.asarray(heights, dtype=float).reshape(-1)])
    skip = None
    if keep is not None:
        skip = np.repeat(~np.asarray(keep, dtype=bool)[:, None], j, axis=1)
    return vertices, _grid_triangles(k, j, skip), np.tile([0.0, 0.0, 1.0], (k * j, 1))


def _grid_triangles(rows: int, columns: int, skip: np.ndarray | None) -> list[int]:
    """Two triangles per cell of a rows x columns vertex grid (vertex r * columns + c), counter-
    clockwise seen from above (the side the renderer draws) when rows run along x (or the
    direction of travel) and columns along y (or to the left); cells with a vertex marked in
    ``skip`` are left out."""
    r, c = np.meshgrid(np.arange(rows - 1), np.arange(columns - 1), indexing="ij")
    a = (r * columns + c).ravel()
    b, cc, d = a + columns, a + columns + 1, a + 1
    if skip is not None:
        flat = skip.ravel()
        keep = ~(flat[a] | flat[b] | flat[cc] | flat[d])
        a, b, cc, d = a[keep], b[keep], cc[keep], d[keep]
    return np.column_stack([a, b, cc, a, cc, d]).ravel().tolist()
