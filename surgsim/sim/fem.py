"""Finite-element tissue in PyBullet's deformable world: the groundwork of the ``fem`` tier
(issue 14). A prototype on one shape, a tissue slab pressed by a rigid probe; nothing in the
tasks uses it yet.

Pieces:

- **Mesher**: :func:`box_mesh` fills an axis-aligned box with a regular grid of nodes and splits
  every hexahedral cell into 6 tetrahedra around the cell's main diagonal (the Kuhn split: every
  cell is split the same way, so neighbouring cells share their face diagonals and the mesh is
  conforming). Every tetrahedron is positively oriented (signed volume > 0);
  :func:`check_orientation` refuses a mesh that is not, naming the first inverted tetrahedron
  (PyBullet takes a mixed-orientation mesh without a word and then diverges). :func:`write_vtk`
  writes the legacy ASCII VTK unstructured grid (cell type 10) that ``loadSoftBody`` reads,
  whole or not at all.
- **Material**: PyBullet's Neo-Hookean force is the "stable Neo-Hookean" energy of Smith, de Goes
  and Kim 2018 ("Stable Neo-Hookean flesh simulation", ACM TOG 37(2)), with
  ``psi = mu/2 (I_C - 3) + lambda/2 (J - 1 - 3 mu / (4 lambda))^2 - mu/2 log(I_C + 1)``
  (bullet3 ``btDeformableNeoHookeanForce.h``). Linearised at rest it is linear elasticity with
  shear modulus ``3/4 mu`` and first Lame parameter ``lambda - 5/8 mu``, not ``mu`` and
  ``lambda``: the Lame parameters of (E, nu) given as they are make the tissue 25 % softer in
  shear. :func:`neo_hookean_parameters` applies the paper's correction (``mu' = 4/3 mu``,
  ``lambda' = lambda + 5/6 mu``) so that the small-strain response is the one of (E, nu);
  ``FemConfig.match_small_strain=False`` passes the plain Lame parameters instead.
- **Slab**: :class:`FemSlab` owns one PyBullet DIRECT client with a deformable world, the slab
  (bottom nodes anchored to the world) and a kinematic probe (a sphere of mass 0 moved by
  teleporting it between physics steps). Forces come from the engine, read two ways:
  :meth:`FemSlab.contact_force`, the normal forces PyBullet reports for the probe-slab contact
  points (right direction, but the magnitude is not the load: under a free ball resting on the
  slab it is 12-65 % of the ball's weight, changing with the sub-step count), and
  :meth:`FemSlab.static_load`, the change of the elastic forces on the anchored nodes, by the
  engine's own law from the node positions it reports (at rest it balances the slab's weight to
  0.1 %). Points embedded in the tissue follow it through barycentric coordinates in the
  tetrahedron that holds them.

What the engine needs (found by experiment, see ``benchmarks/fem_probe.py``): sleeping must be
disabled on the soft body (else PyBullet freezes it once it settles, and a probe pushed later goes
through a frozen body with no contact at all); the tetrahedra must all be positive (with every
other one inverted the slab blows up under its own weight); the elastic forces are integrated
explicitly (bullet3's ``btDeformableMultiBodyDynamicsWorld``; only the damping is implicit), so
the physics step is cut into sub-steps short enough for the mesh and material
(:func:`stable_substeps`), or PyBullet diverges once the probe presses in.
"""

from __future__ import annotations

import contextlib
import math
import os
import sys
import tempfile
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import pybullet as p

from surgsim._files import atomic_write_text

#: VTK cell type of a linear tetrahedron
VTK_TETRA = 10
#: kg/m^3: soft tissue is about as dense as water (1050-1060 kg/m^3 for liver, ICRU Report 44,
#: 1989; 1000 is the round figure the brief asks for)
TISSUE_DENSITY = 1000.0


class InvertedTetrahedronError(ValueError):
    """A tetrahedron of a mesh has a signed volume <= 0 (inverted or flat)."""


# --------------------------------------------------------------------------------------- mesh


@dataclass(frozen=True)
class TetMesh:
    """A tetrahedral mesh: node positions (m, shape ``(N, 3)``) and tetrahedra (node indices,
    shape ``(M, 4)``, each positively oriented)."""

    nodes: np.ndarray
    tets: np.ndarray

    def volumes(self) -> np.ndarray:
        """Signed volume of each tetrahedron (m^3)."""
        return signed_volumes(self.nodes, self.tets)


def signed_volumes(nodes: np.ndarray, tets: np.ndarray) -> np.ndarray:
    """Signed volume of each tetrahedron ``(a, b, c, d)``: ``((b - a) x (c - a)) . (d - a) / 6``,
    positive when ``d`` lies on the side of ``abc`` that the right-hand rule points to."""
    nodes = np.asarray(nodes, dtype=float)
    tets = np.asarray(tets, dtype=np.int64)
    a, b, c, d = (nodes[tets[:, k]] for k in range(4))
    return np.einsum("ij,ij->i", np.cross(b - a, c - a), d - a) / 6.0


def check_orientation(nodes: np.ndarray, tets: np.ndarray, min_volume: float = 0.0) -> None:
    """Raise :class:`InvertedTetrahedronError` naming the first tetrahedron whose signed volume
    is ``<= min_volume``: PyBullet loads such a mesh silently and its elastic forces then push
    the wrong way (a mesh that would invert must be refused before it reaches the engine)."""
    vols = signed_volumes(nodes, tets)
    bad = np.flatnonzero(~(vols > min_volume))  # also catches NaN
    if bad.size:
        i = int(bad[0])
        raise InvertedTetrahedronError(
            f"tetrahedron {i} (nodes {[int(n) for n in np.asarray(tets)[i]]}) has signed volume "
            f"{vols[i]:.3g} m^3 (must be > {min_volume:g}): inverted or flat; {bad.size} of "
            f"{len(vols)} tetrahedra are; swap two of its nodes to turn it the right way"
        )


#: the 6 paths from a cell's corner (0, 0, 0) to (1, 1, 1) along the axes: one tetrahedron each
_KUHN_PATHS = ((0, 1, 2), (0, 2, 1), (1, 0, 2), (1, 2, 0), (2, 0, 1), (2, 1, 0))


def _parity(perm: Sequence[int]) -> int:
    """+1 for an even permutation of (0, 1, 2), -1 for an odd one."""
    a, b, c = perm
    return 1 if (a, b, c) in ((0, 1, 2), (1, 2, 0), (2, 0, 1)) else -1


def box_mesh(
    size: Sequence[float], cells: Sequence[int], origin: Sequence[float] = (0.0, 0.0, 0.0)
) -> TetMesh:
    """Tetrahedral mesh of the box ``[origin, origin + size]`` (m) with ``cells = (nx, ny, nz)``
    hexahedral cells, 6 tetrahedra each (``6 nx ny nz`` tetrahedra, ``(nx+1)(ny+1)(nz+1)``
    nodes; node ``(i, j, k)`` has index ``(i (ny+1) + j) (nz+1) + k``).

    Each tetrahedron follows one path from the cell's corner ``v0`` to the opposite corner along
    the three axes, ``v0, v0+e_a, v0+e_a+e_b, v0+e_a+e_b+e_c``; its signed volume is
    ``det(e_a, e_b, e_c) / 6``, the parity of the path, so odd paths swap their 2nd and 3rd
    nodes. The result is checked with :func:`check_orientation`.
    """
    return grid_mesh(size, cells, origin)


def grid_mesh(
    size: Sequence[float],
    cells: Sequence[int],
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    keep: np.ndarray | None = None,
) -> TetMesh:
    """:func:`box_mesh` of the cells marked in ``keep`` (a boolean ``(nx, ny, nz)`` array; None:
    all), with the nodes no kept cell uses dropped (node order: as in the full box)."""
    size = [float(s) for s in size]
    cells = [int(n) for n in cells]
    if len(size) != 3 or len(cells) != 3 or len(origin) != 3:
        raise ValueError(
            f"box_mesh wants 3 sizes, 3 cell counts and a 3-D origin, got {size}, {cells}, {origin}"
        )
    if min(size) <= 0 or not all(math.isfinite(s) for s in size):
        raise ValueError(f"box sizes must be finite and > 0, got {size}")
    if min(cells) < 1:
        raise ValueError(f"cell counts must be >= 1, got {cells}")
    nx, ny, nz = cells
    axes = [origin[k] + np.linspace(0.0, size[k], cells[k] + 1) for k in range(3)]
    grid = np.meshgrid(*axes, indexing="ij")
    nodes = np.stack([g.ravel() for g in grid], axis=1)

    i, j, k = np.meshgrid(np.arange(nx), np.arange(ny), np.arange(nz), indexing="ij")
    i, j, k = i.ravel(), j.ravel(), k.ravel()
    if keep is not None:
        kept = np.asarray(keep, dtype=bool).ravel()
        if kept.size != nx * ny * nz or not kept.any():
            raise ValueError(f"keep must mark at least one of the {nx}x{ny}x{nz} cells")
        i, j, k = i[kept], j[kept], k[kept]

    def index(di: int, dj: int, dk: int) -> np.ndarray:
        return ((i + di) * (ny + 1) + (j + dj)) * (nz + 1) + (k + dk)

    tets = []
    for path in _KUHN_PATHS:
        step = [0, 0, 0]
        corners = [index(0, 0, 0)]
        for axis in path:
            step[axis] += 1
            corners.append(index(*step))
        if _parity(path) < 0:
            corners[1], corners[2] = corners[2], corners[1]
        tets.append(np.stack(corners, axis=1))
    # cell-major order: the 6 tetrahedra of one cell are consecutive
    tets_arr = np.stack(tets, axis=1).reshape(-1, 4).astype(np.int64)
    if keep is not None:
        used = np.unique(tets_arr)
        renumber = np.full(len(nodes), -1, dtype=np.int64)
        renumber[used] = np.arange(used.size)
        nodes, tets_arr = nodes[used], renumber[tets_arr]
    check_orientation(nodes, tets_arr)
    return TetMesh(nodes=nodes, tets=tets_arr)


def boundary_nodes(mesh: TetMesh) -> np.ndarray:
    """Indices of the nodes on the mesh's surface: those of the faces that belong to one
    tetrahedron only."""
    faces = np.concatenate([mesh.tets[:, [1, 2, 3]], mesh.tets[:, [0, 2, 3]],
                            mesh.tets[:, [0, 1, 3]], mesh.tets[:, [0, 1, 2]]])
    faces = np.sort(faces, axis=1)
    unique, counts = np.unique(faces, axis=0, return_counts=True)
    return np.unique(unique[counts == 1])


#: a snapped surface tetrahedron keeps at least this share of the smallest grid tetrahedron's
#: volume, and every edge this share of the grid's cell: a sliver or a short edge would set a
#: short stable time step (the sub-steps grow as 1 / shortest edge)
_MIN_VOLUME_SHARE = 0.2
_MIN_EDGE_SHARE = 0.75


def ellipsoid_mesh(centre: Sequence[float], radii: Sequence[float], cell: float) -> TetMesh:
    """Tetrahedral mesh of the ellipsoid ``sum(((x - centre) / radii)^2) <= 1`` (m): the cells of
    a grid of about ``cell`` (m) whose centres lie inside, then the surface nodes moved along the
    ray from the centre onto the ellipsoid, as far as every tetrahedron stays positive and at
    least ``_MIN_VOLUME_SHARE`` of a grid tetrahedron's volume and no edge gets shorter than
    ``_MIN_EDGE_SHARE`` of the grid's cell (the whole way, then half, a quarter, ..., else the
    stair-stepped grid surface is kept)."""
    centre = np.asarray(centre, dtype=float)
    radii = np.asarray(radii, dtype=float)
    if not cell > 0 or np.any(~(radii > 0)):
        raise ValueError(f"need a cell size > 0 and radii > 0, got {cell}, {radii.tolist()}")
    cells = np.maximum(1, np.ceil(2 * radii / cell).astype(int))
    size = 2 * radii
    origin = centre - radii
    steps = size / cells
    axes = [origin[k] + steps[k] * (np.arange(cells[k]) + 0.5) for k in range(3)]
    cx, cy, cz = np.meshgrid(*axes, indexing="ij")
    inside = ((cx - centre[0]) / radii[0]) ** 2 + ((cy - centre[1]) / radii[1]) ** 2 \
        + ((cz - centre[2]) / radii[2]) ** 2 <= 1.0
    if not inside.any():  # an ellipsoid thinner than a cell: keep the middle cell
        inside[tuple(cells // 2)] = True
    grid = grid_mesh(size, cells, origin, keep=inside)
    surface = boundary_nodes(grid)
    offset = grid.nodes[surface] - centre
    on_surface = offset / np.sqrt(np.sum((offset / radii) ** 2, axis=1))[:, None]
    min_volume = _MIN_VOLUME_SHARE * float(np.prod(steps)) / 6.0
    for share in (1.0, 0.5, 0.25, 0.125):
        nodes = grid.nodes.copy()
        nodes[surface] = centre + offset + share * (on_surface - offset)
        snapped = TetMesh(nodes=nodes, tets=grid.tets)
        if np.all(signed_volumes(nodes, grid.tets) > min_volume) \
                and min_edge(snapped) >= _MIN_EDGE_SHARE * float(steps.min()):
            return snapped
    return grid


def min_edge(mesh: TetMesh) -> float:
    """Length (m) of the mesh's shortest tetrahedron edge (what limits the stable time step)."""
    pairs = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
    x = mesh.nodes[mesh.tets]
    return float(min(np.linalg.norm(x[:, a] - x[:, b], axis=1).min() for a, b in pairs))


def vtk_text(mesh: TetMesh) -> str:
    """The mesh as a legacy ASCII VTK unstructured grid: one point per line (PyBullet's reader,
    bullet3 ``btSoftBodyHelpers::CreateFromVtkFile``, reads 3 numbers a line), then ``CELLS``
    of ``4 a b c d`` and ``CELL_TYPES`` (10). Coordinates are written with ``repr`` so that they
    read back bit for bit."""
    check_orientation(mesh.nodes, mesh.tets)
    lines = [
        "# vtk DataFile Version 2.0",
        "surgsim tetrahedral mesh",
        "ASCII",
        "DATASET UNSTRUCTURED_GRID",
    ]
    lines.append(f"POINTS {len(mesh.nodes)} double")
    lines += [f"{x!r} {y!r} {z!r}" for x, y, z in mesh.nodes.tolist()]
    lines.append(f"CELLS {len(mesh.tets)} {5 * len(mesh.tets)}")
    lines += [f"4 {a} {b} {c} {d}" for a, b, c, d in mesh.tets.tolist()]
    lines.append(f"CELL_TYPES {len(mesh.tets)}")
    lines += [str(VTK_TETRA)] * len(mesh.tets)
    return "\n".join(lines) + "\n"


def write_vtk(mesh: TetMesh, path: str | Path) -> Path:
    """Write ``mesh`` to ``path`` (.vtk) atomically (a crash never leaves half a mesh there)."""
    return atomic_write_text(path, vtk_text(mesh))


# ----------------------------------------------------------------------------------- material


def lame_parameters(young_modulus: float, poisson_ratio: float) -> tuple[float, float]:
    """Lame parameters ``(mu, lambda)`` (Pa) of linear elasticity for Young's modulus E (Pa) and
    Poisson's ratio nu: ``mu = E / (2 (1 + nu))``, ``lambda = E nu / ((1 + nu)(1 - 2 nu))``."""
    if not young_modulus > 0 or not 0 < poisson_ratio < 0.5:
        raise ValueError(f"need E > 0 and 0 < nu < 0.5, got E={young_modulus}, nu={poisson_ratio}")
    mu = young_modulus / (2.0 * (1.0 + poisson_ratio))
    lam = young_modulus * poisson_ratio / ((1.0 + poisson_ratio) * (1.0 - 2.0 * poisson_ratio))
    return mu, lam


def neo_hookean_parameters(
    young_modulus: float, poisson_ratio: float, match_small_strain: bool = True
) -> tuple[float, float]:
    """``(NeoHookeanMu, NeoHookeanLambda)`` for PyBullet.

    With ``match_small_strain`` the stable Neo-Hookean energy PyBullet uses reduces to linear
    elasticity with Young's modulus E and Poisson's ratio nu at small strain (the
    reparametrisation of Smith et al. 2018: ``mu' = 4/3 mu``, ``lambda' = lambda + 5/6 mu``,
    checked by linearising the stress of ``btDeformableNeoHookeanForce::firstPiola``); without
    it, the plain Lame parameters, which PyBullet's energy turns into a shear modulus of
    ``3/4 mu``.
    """
    mu, lam = lame_parameters(young_modulus, poisson_ratio)
    if not match_small_strain:
        return mu, lam
    return 4.0 / 3.0 * mu, lam + 5.0 / 6.0 * mu


def effective_small_strain(neo_mu: float, neo_lambda: float) -> tuple[float, float]:
    """Young's modulus and Poisson's ratio that PyBullet's Neo-Hookean force with parameters
    ``(neo_mu, neo_lambda)`` has at small strain (shear modulus ``3/4 mu``, first Lame parameter
    ``lambda - 5/8 mu``): the inverse of :func:`neo_hookean_parameters`."""
    mu = 0.75 * neo_mu
    lam = neo_lambda - 0.625 * neo_mu
    return mu * (3 * lam + 2 * mu) / (lam + mu), lam / (2 * (lam + mu))


def neo_hookean_nodal_forces(
    mesh: TetMesh, positions: np.ndarray, neo_mu: float, neo_lambda: float
) -> np.ndarray:
    """Elastic force on each node ``(N, 3)`` (N) for nodes at ``positions``: PyBullet's
    stable Neo-Hookean first Piola stress ``P = mu (1 - 1/(I_C + 1)) F + (lambda (J - 1) -
    3/4 mu) cof(F)`` (bullet3 ``btDeformableNeoHookeanForce::firstPiola``) integrated over each
    rest tetrahedron, ``f_{1,2,3} = -V P Dm^-T``, ``f_0 = -(f_1 + f_2 + f_3)``.

    The same law the engine integrates, evaluated here from the node positions it reports, so
    that a quasi-static load can be read from the state: at rest the elastic forces on the
    anchored nodes are what holds the slab, and their change is the load put on it.
    """
    x0 = mesh.nodes[mesh.tets]  # (M, 4, 3)
    x = np.asarray(positions, dtype=float)[mesh.tets]
    dm = np.transpose(x0[:, 1:] - x0[:, :1], (0, 2, 1))  # columns are edges
    ds = np.transpose(x[:, 1:] - x[:, :1], (0, 2, 1))
    dm_inv = np.linalg.inv(dm)
    volume = np.linalg.det(dm) / 6.0
    F = ds @ dm_inv
    trace = np.einsum("kij,kij->k", F, F)
    J = np.linalg.det(F)
    cof = J[:, None, None] * np.transpose(np.linalg.inv(F), (0, 2, 1))
    c1 = neo_mu * (1.0 - 1.0 / (trace + 1.0))
    c2 = neo_lambda * (J - 1.0) - 0.75 * neo_mu
    P = c1[:, None, None] * F + c2[:, None, None] * cof
    h = -volume[:, None, None] * (P @ np.transpose(dm_inv, (0, 2, 1)))  # columns: f1, f2, f3
    per_node = np.concatenate([-h.sum(axis=2)[:, None, :], np.transpose(h, (0, 2, 1))], axis=1)
    forces = np.zeros_like(mesh.nodes)
    np.add.at(forces, mesh.tets.ravel(), per_node.reshape(-1, 3))
    return forces


# ------------------------------------------------------------------------ embedded points


def barycentric(corners: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Barycentric coordinates ``(K, 4)`` of ``points`` ``(K, 3)`` in the tetrahedra
    ``corners`` ``(K, 4, 3)`` (or one tetrahedron ``(4, 3)`` for all points): the weights ``w``
    with ``sum(w) = 1`` and ``sum(w_i corner_i) = point``."""
    corners = np.asarray(corners, dtype=float)
    points = np.atleast_2d(np.asarray(points, dtype=float))
    if corners.ndim == 2:
        corners = np.broadcast_to(corners, (len(points), 4, 3))
    edges = np.transpose(corners[:, 1:] - corners[:, :1], (0, 2, 1))  # (K, 3, 3): columns = edges
    rest = np.linalg.solve(edges, (points - corners[:, 0])[..., None])[..., 0]
    return np.concatenate([1.0 - rest.sum(axis=1, keepdims=True), rest], axis=1)


@dataclass(frozen=True)
class Embedding:
    """Points fixed in the tissue: the tetrahedron holding each and its barycentric weights in
    the rest mesh. Their position at any time is the same weights applied to the tetrahedron's
    current nodes (the linear interpolation of the finite-element displacement field)."""

    tets: np.ndarray  #: (K,) tetrahedron index of each point
    weights: np.ndarray  #: (K, 4) barycentric weights, each row >= -tol and summing to 1

    def positions(self, mesh_tets: np.ndarray, node_positions: np.ndarray) -> np.ndarray:
        """Current positions ``(K, 3)`` of the points for the nodes at ``node_positions``."""
        corners = np.asarray(node_positions)[np.asarray(mesh_tets)[self.tets]]  # (K, 4, 3)
        return np.einsum("kn,knd->kd", self.weights, corners)


def embed(mesh: TetMesh, points: np.ndarray, tol: float = 1e-9, outside: str = "error") -> Embedding:
    """Embed ``points`` ``(K, 3)`` (m, rest configuration) in ``mesh``: for each, the first
    tetrahedron whose barycentric weights are all ``>= -tol`` (a point on a shared face or edge
    may belong to several; any gives the same position).

    A point outside the mesh raises ``ValueError`` (``outside="error"``) or, with
    ``outside="nearest"``, follows the nearest point of the tetrahedron least outside it (its
    weights clipped at 0 and renormalised): a vessel that leaves the organ moves with the organ's
    surface next to it."""
    if outside not in ("error", "nearest"):
        raise ValueError(f"outside must be 'error' or 'nearest', got {outside!r}")
    points = np.atleast_2d(np.asarray(points, dtype=float))
    corners = mesh.nodes[mesh.tets]  # (M, 4, 3)
    lo, hi = corners.min(axis=1), corners.max(axis=1)
    centroids = corners.mean(axis=1)
    tets = np.empty(len(points), dtype=np.int64)
    weights = np.empty((len(points), 4))
    for n, point in enumerate(points):
        near = np.flatnonzero(np.all((lo - tol <= point) & (point <= hi + tol), axis=1))
        if near.size:
            w = barycentric(corners[near], np.repeat(point[None], near.size, axis=0))
            inside = np.flatnonzero(np.all(w >= -tol, axis=1))
            if inside.size:
                tets[n], weights[n] = near[inside[0]], w[inside[0]]
                continue
        if outside == "error":
            raise ValueError(f"point {n} at {point.tolist()} m is outside the tissue mesh")
        near = np.argsort(np.sum((centroids - point) ** 2, axis=1))[:16]
        w = barycentric(corners[near], np.repeat(point[None], near.size, axis=0))
        best = int(np.argmax(w.min(axis=1)))
        clipped = np.clip(w[best], 0.0, None)
        tets[n], weights[n] = near[best], clipped / clipped.sum()
    return Embedding(tets=tets, weights=weights)


# -------------------------------------------------------------------------------- the slab


@dataclass(frozen=True)
class SoftMaterial:
    """What PyBullet's soft body needs to know of the tissue (SI units)."""

    young_modulus: float = 5500.0  #: Pa: healthy liver (Sandrin et al. 2003, as in TissueSpec)
    poisson_ratio: float = 0.45  #: nearly incompressible (0.45-0.49, Fung 1993)
    density: float = TISSUE_DENSITY  #: kg/m^3
    #: NeoHookeanDamping: PyBullet's damping stress is this times the Lame parameters times the
    #: strain rate (s). It is solved implicitly, by conjugate gradients, and costs: 0 runs fastest
    #: but leaves oscillations undamped (model parameter, chosen by benchmarks/fem_probe.py)
    damping: float = 0.001
    collision_margin: float = 0.0005  #: m: contact is taken this far from the surface
    friction: float = 0.5  #: tool-tissue Coulomb friction in PyBullet's contact (model parameter)
    face_contact: bool = True  #: PyBullet's useFaceContact: rigid bodies also collide with faces
    match_small_strain: bool = True  #: see :func:`neo_hookean_parameters`


@dataclass(frozen=True)
class FemConfig(SoftMaterial):
    """A tissue slab on a rigid base, pressed by a spherical probe (SI units): its material and
    the slab's geometry, mesh and stepping."""

    size: tuple[float, float, float] = (0.1, 0.1, 0.03)  #: m: the slab of the issue's probe
    cells: tuple[int, int, int] = (10, 10, 3)  #: hexahedral cells along x, y, z (6 tets each)
    time_step: float = 1.0 / 240.0  #: s: one :meth:`FemSlab.step` (PyBullet's default step)
    #: sub-steps per step; None: :func:`stable_substeps` (the elastic forces are explicit, so
    #: the sub-step must stay under the mesh's stability limit). That suits the kinematic probe;
    #: a free (dynamic) rigid body needs more: a 20-50 g ball fell through the default slab at 3
    #: sub-steps and rested on it at 4, a 200 g ball only at 8
    substeps: int | None = None
    gravity: float = 9.81  #: m/s^2, along -z
    probe_radius: float = 0.005  #: m: a sphere (the tip of a 10 mm instrument)
    origin: tuple[float, float, float] = (-0.05, -0.05, 0.0)  #: m: the slab's min corner

    def mass(self) -> float:
        """kg: density x volume."""
        return self.density * self.size[0] * self.size[1] * self.size[2]

    def cell_size(self) -> float:
        """m: the shortest edge of a grid cell."""
        return min(s / n for s, n in zip(self.size, self.cells))

    def resolved_substeps(self) -> int:
        """``substeps``, or :func:`stable_substeps` when it is None."""
        if self.substeps is not None:
            return int(self.substeps)
        mu, lam = neo_hookean_parameters(
            self.young_modulus, self.poisson_ratio, self.match_small_strain
        )
        return stable_substeps(self.time_step, self.cell_size(), mu, lam, self.density)


#: fraction of the explicit stability limit a sub-step may use. Calibrated on the 100 x 100 x
#: 30 mm slab, 10 mm cells, damping 0.001, 5 mm probe pressed 10 mm: E = 5.5 kPa held at 2
#: sub-steps (0.95 of the limit) and diverged at 1 (1.9); E = 20 kPa held at 4 (0.91) and
#: diverged at 2 (1.81). 0.75 leaves a margin (benchmarks/fem_probe.py)
STABILITY_FRACTION = 0.75


def stable_substeps(
    time_step: float, cell_size: float, neo_mu: float, neo_lambda: float, density: float
) -> int:
    """Sub-steps per ``time_step`` that keep each under ``STABILITY_FRACTION`` of the explicit
    stability limit ``cell_size / c``, with ``c = sqrt((lambda + 2 mu) / rho)`` the pressure-wave
    speed of the material's small-strain moduli (PyBullet integrates the elastic forces
    explicitly; its implicit damping does not lift the limit much)."""
    E, nu = effective_small_strain(neo_mu, neo_lambda)
    mu, lam = lame_parameters(E, nu)
    wave_speed = math.sqrt((lam + 2 * mu) / density)
    return max(1, math.ceil(time_step / (STABILITY_FRACTION * cell_size / wave_speed)))


@contextlib.contextmanager
def _quiet_stdout() -> Iterator[None]:
    """Silence C-level stdout (``loadSoftBody`` prints node and tetrahedron counts)."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # stdout replaced by an object without a file
        yield
        return
    sys.stdout.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), fd)
        yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def _release(client: int, tmpdir: tempfile.TemporaryDirectory) -> None:
    """Disconnect the client and remove the mesh folder (the finalizer of a :class:`FemSlab`)."""
    with contextlib.suppress(Exception):
        p.disconnect(physicsClientId=client)
    tmpdir.cleanup()


class FemBody:
    """A tetrahedral mesh as a PyBullet soft body in its own DIRECT client with a deformable
    world, held at its ``anchored`` nodes (anchors to the world: the rest of the patient).

    Every PyBullet call passes ``physicsClientId`` (never the default client). The mesh file
    lives in a temporary folder the object owns; :meth:`close` (or leaving a ``with`` block, or
    garbage collection) disconnects and removes it.
    """

    def __init__(
        self,
        mesh: TetMesh,
        anchored: np.ndarray,
        material: SoftMaterial,
        time_step: float,
        substeps: int | None = None,
        gravity: float = 9.81,
    ) -> None:
        self.mesh = mesh
        self.material = m = material
        self.time_step = time_step
        self.neo_mu, self.neo_lambda = neo_hookean_parameters(
            m.young_modulus, m.poisson_ratio, m.match_small_strain
        )
        if substeps is None:
            substeps = stable_substeps(time_step, min_edge(mesh), self.neo_mu, self.neo_lambda,
                                       m.density)
        self.substeps = int(substeps)
        if self.substeps < 1 or not time_step > 0:
            raise ValueError(f"need substeps >= 1 and time_step > 0, got {substeps}, {time_step}")
        self._tmpdir = tempfile.TemporaryDirectory(prefix="surgsim-fem-")
        self.mesh_path = write_vtk(mesh, Path(self._tmpdir.name) / "tissue.vtk")
        self.client = p.connect(p.DIRECT)
        self._finalizer = weakref.finalize(self, _release, self.client, self._tmpdir)
        cid = self.client
        p.resetSimulation(p.RESET_USE_DEFORMABLE_WORLD, physicsClientId=cid)
        p.setGravity(0, 0, -gravity, physicsClientId=cid)
        p.setPhysicsEngineParameter(fixedTimeStep=time_step / self.substeps, physicsClientId=cid)
        with _quiet_stdout():
            self.body = p.loadSoftBody(
                str(self.mesh_path),
                mass=m.density * float(mesh.volumes().sum()),
                useNeoHookean=1,
                NeoHookeanMu=self.neo_mu,
                NeoHookeanLambda=self.neo_lambda,
                NeoHookeanDamping=m.damping,
                collisionMargin=m.collision_margin,
                frictionCoeff=m.friction,
                useFaceContact=int(m.face_contact),
                physicsClientId=cid,
            )
        # without this PyBullet puts the settled body to sleep and stops simulating it
        p.changeDynamics(
            self.body, -1, activationState=p.ACTIVATION_STATE_DISABLE_SLEEPING, physicsClientId=cid
        )
        loaded = self.node_positions()
        if loaded.shape != mesh.nodes.shape or not np.allclose(loaded, mesh.nodes, atol=1e-12):
            raise RuntimeError(
                "PyBullet's simulation mesh does not match the mesh written (node order or count)"
            )
        self.anchored = np.asarray(anchored, dtype=np.int64)
        for node in self.anchored:
            p.createSoftBodyAnchor(self.body, int(node), -1, -1, physicsClientId=cid)
        # the tetrahedra of the anchored nodes: all that the base force needs
        self._base_tets = np.flatnonzero(np.isin(mesh.tets, self.anchored).any(axis=1))
        self._base_mesh = TetMesh(nodes=mesh.nodes, tets=mesh.tets[self._base_tets])

    # ---------------------------------------------------------------- lifecycle
    def close(self) -> None:
        """Disconnect the PyBullet client and remove the mesh folder (idempotent)."""
        self._finalizer()

    def __enter__(self) -> "FemBody":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ physics
    def step(self, n: int = 1) -> None:
        """Advance ``n`` steps of ``time_step``, each ``self.substeps`` calls of
        ``stepSimulation`` (PyBullet's own ``numSubSteps`` accumulates time in floating point and
        may take 3 sub-steps one call and 5 the next)."""
        for _ in range(n * self.substeps):
            p.stepSimulation(physicsClientId=self.client)

    def node_positions(self) -> np.ndarray:
        """Current node positions ``(N, 3)`` (m), in the order of ``mesh.nodes``."""
        _, vertices = p.getMeshData(
            self.body, -1, flags=p.MESH_DATA_SIMULATION_MESH, physicsClientId=self.client
        )
        return np.asarray(vertices, dtype=float)

    def elastic_forces(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Elastic force on each node (N) at ``positions`` (default: now), by the engine's law
        (see :func:`neo_hookean_nodal_forces`)."""
        x = self.node_positions() if positions is None else positions
        return neo_hookean_nodal_forces(self.mesh, x, self.neo_mu, self.neo_lambda)

    def base_force(self, positions: np.ndarray | None = None) -> np.ndarray:
        """Sum of the elastic forces on the anchored nodes (N): how hard the tissue pushes on
        what holds it, less the weight of the anchored nodes themselves."""
        x = self.node_positions() if positions is None else positions
        forces = neo_hookean_nodal_forces(self._base_mesh, x, self.neo_mu, self.neo_lambda)
        return forces[self.anchored].sum(axis=0)

    def static_load(self, reference: np.ndarray, positions: np.ndarray | None = None) -> np.ndarray:
        """Force of the tissue on what presses it (N, world frame), read where the tissue is
        held: the base force at ``reference`` (node positions at rest under gravity alone) minus
        the base force now (or at ``positions``). Valid at rest (inertia and damping forces
        neglected); it does not depend on PyBullet's contact report, so it checks it."""
        return self.base_force(reference) - self.base_force(positions)

    # ---------------------------------------------------------- embedded points
    def embed(self, points: np.ndarray, outside: str = "error") -> Embedding:
        """Embed ``points`` (rest configuration, m) in the mesh (see :func:`embed`)."""
        return embed(self.mesh, points, outside=outside)

    def embedded_positions(self, embedding: Embedding, positions: np.ndarray | None = None) -> np.ndarray:
        """Where the embedded points are now (or with the nodes at ``positions``) (m)."""
        x = self.node_positions() if positions is None else positions
        return embedding.positions(self.mesh.tets, x)


class FemSlab(FemBody):
    """A finite-element tissue slab (:class:`FemConfig`), anchored at the bottom, with a
    kinematic spherical probe above the middle of its top face."""

    def __init__(self, config: FemConfig | None = None) -> None:
        self.config = cfg = config or FemConfig()
        mesh = box_mesh(cfg.size, cfg.cells, cfg.origin)
        self.top_z = cfg.origin[2] + cfg.size[2]
        super().__init__(
            mesh,
            np.flatnonzero(mesh.nodes[:, 2] <= cfg.origin[2] + 1e-12),
            cfg,
            cfg.time_step,
            cfg.resolved_substeps(),
            cfg.gravity,
        )
        cid = self.client
        shape = p.createCollisionShape(p.GEOM_SPHERE, radius=cfg.probe_radius, physicsClientId=cid)
        self.probe = p.createMultiBody(
            baseMass=0,
            baseCollisionShapeIndex=shape,
            basePosition=self.probe_rest_position(),
            physicsClientId=cid,
        )

    def __enter__(self) -> "FemSlab":
        return self

    # -------------------------------------------------------------------- probe
    def probe_rest_position(self) -> tuple[float, float, float]:
        """Where the probe starts: centred over the top face, 2 margins above it."""
        cfg = self.config
        cx = cfg.origin[0] + cfg.size[0] / 2
        cy = cfg.origin[1] + cfg.size[1] / 2
        return (cx, cy, self.top_z + cfg.probe_radius + 4 * cfg.collision_margin)

    def probe_position(self) -> np.ndarray:
        """The probe's centre (m)."""
        pos, _ = p.getBasePositionAndOrientation(self.probe, physicsClientId=self.client)
        return np.asarray(pos, dtype=float)

    def move_probe(self, position: Sequence[float]) -> None:
        """Teleport the probe's centre to ``position`` (m); takes effect at the next step. Move
        it in small steps (a fraction of a millimetre a step): PyBullet sees a teleported body
        as still, so a jump deep into the tissue is not pushed out smoothly."""
        p.resetBasePositionAndOrientation(
            self.probe, [float(x) for x in position], [0, 0, 0, 1], physicsClientId=self.client
        )

    def contacts(self) -> list[tuple]:
        """PyBullet's contact points between the probe (body A) and the slab (body B) after the
        last sub-step."""
        return list(p.getContactPoints(self.probe, self.body, physicsClientId=self.client))

    def contact_force(self) -> np.ndarray:
        """Force of the tissue on the probe as PyBullet reports it (N, world frame): the sum over
        contact points of the normal force (entry 9, >= 0) along the contact normal on B (entry
        7, pointing from the slab towards the probe). The direction is right; the magnitude is
        not the load (it misses the part of the contact PyBullet resolves by moving nodes rather
        than by impulses, and depends on the sub-step count): use :meth:`static_load` at rest.
        Friction is not in it (PyBullet reports 0 for deformable contacts)."""
        force = np.zeros(3)
        for cp in self.contacts():
            force += cp[9] * np.asarray(cp[7], dtype=float)
        return force
