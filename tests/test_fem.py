"""The finite-element tissue prototype (issue 14 groundwork) on cases with known answers.

Mesher and material arithmetic first (no PyBullet), then a coarse slab in PyBullet's deformable
world: equilibrium under its own weight, a probe pressing it, points embedded in it, determinism.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pybullet as p
import pytest

from surgsim.sim import fem
from surgsim.sim.fem import FemConfig, FemSlab, InvertedTetrahedronError

SIZE = (0.1, 0.08, 0.03)
CELLS = (5, 4, 3)
#: a slab small enough for a test (4 x 4 x 2 cells of 25 x 25 x 15 mm, 192 tetrahedra)
COARSE = FemConfig(cells=(4, 4, 2), substeps=4, damping=0.01, probe_radius=0.012)


def rotation(axis: np.ndarray, angle: float) -> np.ndarray:
    """Rotation matrix about ``axis`` (Rodrigues)."""
    k = np.asarray(axis, dtype=float) / np.linalg.norm(axis)
    K = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * K + (1 - np.cos(angle)) * K @ K


# ------------------------------------------------------------------------------- mesher


def test_box_mesh_counts_orientation_and_volume():
    mesh = fem.box_mesh(SIZE, CELLS, origin=(1.0, -2.0, 0.5))
    nx, ny, nz = CELLS
    assert mesh.nodes.shape == ((nx + 1) * (ny + 1) * (nz + 1), 3)
    assert mesh.tets.shape == (6 * nx * ny * nz, 4)
    vols = mesh.volumes()
    cell = SIZE[0] / nx * SIZE[1] / ny * SIZE[2] / nz
    # every tetrahedron positive, each a sixth of its cell, together exactly the box
    np.testing.assert_allclose(vols, cell / 6, rtol=1e-9)
    assert vols.sum() == pytest.approx(SIZE[0] * SIZE[1] * SIZE[2], rel=1e-12)
    np.testing.assert_allclose(mesh.nodes.min(axis=0), [1.0, -2.0, 0.5])
    np.testing.assert_allclose(mesh.nodes.max(axis=0), [1.1, -1.92, 0.53])


def test_box_mesh_is_conforming():
    """Each triangle is shared by two tetrahedra inside and belongs to one on the boundary, and
    the boundary has two triangles per cell face on the box's surface."""
    mesh = fem.box_mesh(SIZE, CELLS)
    faces = Counter()
    for t in mesh.tets.tolist():
        for drop in range(4):
            faces[tuple(sorted(t[:drop] + t[drop + 1 :]))] += 1
    assert set(faces.values()) == {1, 2}
    nx, ny, nz = CELLS
    boundary = sum(1 for n in faces.values() if n == 1)
    assert boundary == 2 * 2 * (nx * ny + ny * nz + nz * nx)


def test_inverted_tetrahedron_is_refused_by_name():
    mesh = fem.box_mesh(SIZE, CELLS)
    tets = mesh.tets.copy()
    tets[[7, 11]] = tets[[7, 11]][:, [0, 2, 1, 3]]
    with pytest.raises(InvertedTetrahedronError, match=r"tetrahedron 7 \(nodes .*\) has signed volume -.*2 of 360"):
        fem.check_orientation(mesh.nodes, tets)
    flat = tets.copy()
    flat[3] = [0, 1, 2, 3]  # nodes 0-3 lie on one vertical grid line
    with pytest.raises(InvertedTetrahedronError, match="tetrahedron 3 .* inverted or flat"):
        fem.check_orientation(mesh.nodes, flat)
    with pytest.raises(InvertedTetrahedronError):
        fem.vtk_text(fem.TetMesh(mesh.nodes, tets))
    fem.check_orientation(mesh.nodes, mesh.tets)  # the mesher's own is fine


def test_vtk_file_reads_back_exactly(tmp_path: Path):
    mesh = fem.box_mesh((0.1, 0.1, 0.03), (3, 2, 1), origin=(-0.05, -0.05, 0.0))
    path = fem.write_vtk(mesh, tmp_path / "slab.vtk")
    assert sorted(f.name for f in tmp_path.iterdir()) == ["slab.vtk"]  # no temporary left
    lines = path.read_text().splitlines()
    assert lines[3] == "DATASET UNSTRUCTURED_GRID"
    start = lines.index(f"POINTS {len(mesh.nodes)} double") + 1
    points = np.array([[float(v) for v in line.split()] for line in lines[start : start + len(mesh.nodes)]])
    assert np.array_equal(points, mesh.nodes)  # bit for bit
    cells_at = lines.index(f"CELLS {len(mesh.tets)} {5 * len(mesh.tets)}") + 1
    cells = np.array([[int(v) for v in line.split()] for line in lines[cells_at : cells_at + len(mesh.tets)]])
    assert np.array_equal(cells[:, 0], np.full(len(mesh.tets), 4))
    assert np.array_equal(cells[:, 1:], mesh.tets)
    types_at = lines.index(f"CELL_TYPES {len(mesh.tets)}") + 1
    assert lines[types_at:] == ["10"] * len(mesh.tets)


def test_box_mesh_refuses_bad_boxes():
    with pytest.raises(ValueError, match="sizes"):
        fem.box_mesh((0.1, 0.0, 0.1), (1, 1, 1))
    with pytest.raises(ValueError, match="cell counts"):
        fem.box_mesh((0.1, 0.1, 0.1), (1, 0, 1))


# ----------------------------------------------------------------------------- material


def test_lame_parameters_known_values():
    assert fem.lame_parameters(3.0, 0.25) == pytest.approx((1.2, 1.2))
    mu, lam = fem.lame_parameters(5500.0, 0.45)
    assert mu == pytest.approx(5500 / 2.9)
    assert lam == pytest.approx(5500 * 0.45 / (1.45 * 0.1))
    with pytest.raises(ValueError):
        fem.lame_parameters(1.0, 0.5)


@pytest.mark.parametrize("match", [True, False])
def test_neo_hookean_parameters_small_strain(match):
    """PyBullet's energy at small strain has shear modulus 3/4 mu: with the correction it is
    the (E, nu) asked for, without it E comes out lower."""
    mu_b, lam_b = fem.neo_hookean_parameters(5500.0, 0.45, match_small_strain=match)
    E, nu = fem.effective_small_strain(mu_b, lam_b)
    if match:
        assert (E, nu) == pytest.approx((5500.0, 0.45), rel=1e-12)
    else:
        assert E < 0.8 * 5500


def test_stable_substeps_follow_the_wave_speed():
    """E 5.5 kPa, nu 0.45: lambda + 2 mu = 20862 Pa, c = 4.567 m/s; 10 mm cells give a limit of
    2.19 ms, 0.75 of it 1.64 ms, so 1/240 s takes 3 sub-steps; 4 E doubles c: 6."""
    mu, lam = fem.neo_hookean_parameters(5500.0, 0.45)
    assert fem.stable_substeps(1 / 240, 0.01, mu, lam, 1000.0) == 3
    mu4, lam4 = fem.neo_hookean_parameters(4 * 5500.0, 0.45)
    assert fem.stable_substeps(1 / 240, 0.01, mu4, lam4, 1000.0) == 6
    assert FemConfig().resolved_substeps() == 3
    assert FemConfig(substeps=7).resolved_substeps() == 7


def test_nodal_forces_vanish_at_rest_and_under_rigid_motion():
    mesh = fem.box_mesh(SIZE, CELLS)
    mu, lam = fem.neo_hookean_parameters(5500.0, 0.45)
    assert np.abs(fem.neo_hookean_nodal_forces(mesh, mesh.nodes, mu, lam)).max() < 1e-12
    moved = mesh.nodes @ rotation([1, 2, 3], 0.7).T + [0.3, -0.1, 2.0]
    assert np.abs(fem.neo_hookean_nodal_forces(mesh, moved, mu, lam)).max() < 1e-9


def test_nodal_forces_match_linear_elasticity_at_small_strain():
    """A uniform strain eps along z with the sides held: the top face carries the stress
    (lambda + 2 mu) eps of linear elasticity (uniaxial strain) times its area."""
    E, nu, eps = 5500.0, 0.45, 1e-5
    mesh = fem.box_mesh(SIZE, CELLS)
    stretched = mesh.nodes * [1.0, 1.0, 1.0 + eps]
    mu_b, lam_b = fem.neo_hookean_parameters(E, nu)
    forces = fem.neo_hookean_nodal_forces(mesh, stretched, mu_b, lam_b)
    top = mesh.nodes[:, 2] == mesh.nodes[:, 2].max()
    mu, lam = fem.lame_parameters(E, nu)
    expected = -(lam + 2 * mu) * eps * SIZE[0] * SIZE[1]  # pulls the top face back down
    assert forces[top, 2].sum() == pytest.approx(expected, rel=1e-3)
    assert np.abs(forces.sum(axis=0)).max() < 1e-12  # internal forces balance


# ------------------------------------------------------------------------ embedded points


def test_barycentric_weights():
    corners = np.array([[0, 0, 0], [1, 0, 0], [0, 1, 0], [0, 0, 1]], dtype=float)
    np.testing.assert_allclose(fem.barycentric(corners, corners.mean(axis=0)), [[0.25] * 4])
    np.testing.assert_allclose(fem.barycentric(corners, [[0.2, 0.3, 0.1]]), [[0.4, 0.2, 0.3, 0.1]])


def test_embedded_points_follow_an_affine_motion_exactly():
    """Linear interpolation is exact for any affine map, a rigid motion included."""
    mesh = fem.box_mesh(SIZE, CELLS, origin=(-0.05, -0.04, 0.0))
    rng = np.random.default_rng(0)
    points = rng.uniform([-0.05, -0.04, 0.0], [0.05, 0.04, 0.03], size=(20, 3))
    points = np.vstack([points, mesh.nodes[5], [0.0, 0.0, 0.03]])  # a node, a point on a face
    emb = fem.embed(mesh, points)
    assert np.all(emb.weights >= -1e-9)
    np.testing.assert_allclose(emb.weights.sum(axis=1), 1.0)
    shift = np.array([0.01, -0.02, 0.003])
    np.testing.assert_allclose(emb.positions(mesh.tets, mesh.nodes + shift), points + shift, atol=1e-15)
    A = rotation([0, 1, 1], 0.4) @ np.diag([1.1, 0.9, 1.0])
    np.testing.assert_allclose(emb.positions(mesh.tets, mesh.nodes @ A.T + shift), points @ A.T + shift, atol=1e-15)


def test_embedding_a_point_outside_is_refused():
    mesh = fem.box_mesh(SIZE, CELLS)
    with pytest.raises(ValueError, match="point 1 .* outside the tissue mesh"):
        fem.embed(mesh, [[0.05, 0.04, 0.01], [0.05, 0.04, 0.031]])


# --------------------------------------------------------------------- the slab in PyBullet


@pytest.fixture(scope="module")
def settled():
    """A coarse slab settled under its own weight (1 s), and its node positions then."""
    slab = FemSlab(COARSE)
    slab.step(240)
    yield slab, slab.node_positions()
    slab.close()


def test_slab_sags_under_its_own_weight_and_the_base_holds_it(settled):
    slab, rest = settled
    disp = rest - slab.mesh.nodes
    assert np.isfinite(rest).all()
    free = np.setdiff1d(np.arange(len(rest)), slab.anchored)
    assert np.abs(disp[slab.anchored]).max() == 0.0  # anchors hold
    assert disp[free, 2].max() < 1e-6 and disp[free, 2].min() < -1e-4  # down, visibly
    assert np.abs(disp).max() < 0.01  # bounded
    # at rest the elastic forces on the anchored nodes carry the weight of the free nodes
    # (PyBullet spreads the mass evenly over the nodes): the engine's law and ours agree
    weight_free = slab.config.mass() * slab.config.gravity * len(free) / len(rest)
    np.testing.assert_allclose(slab.base_force(rest), [0.0, 0.0, -weight_free], atol=1e-3 * weight_free)


def _press(slab: FemSlab, depth: float, steps: int = 120) -> None:
    """Lower the probe until its bottom is ``depth`` below the rest surface, 0.1 mm a step."""
    x, y, _ = slab.probe_rest_position()
    target = slab.top_z + slab.config.probe_radius - depth
    start = slab.probe_position()[2]
    n = max(1, int(abs(start - target) / 1e-4))
    for k in range(1, n + 1):
        slab.move_probe([x, y, start + (target - start) * k / n])
        slab.step()
    slab.step(steps)


def test_probe_pushes_the_tissue_down_and_gets_pushed_back(settled):
    slab, rest = settled
    under = slab.embed([[0.0, 0.0, 0.02]])  # 10 mm under the probe
    _press(slab, 0.004)
    now = slab.node_positions()
    assert np.isfinite(now).all()
    assert np.abs(now - slab.mesh.nodes).max() < 0.02
    centre = np.argmin(np.linalg.norm(slab.mesh.nodes - [0.0, 0.0, slab.top_z], axis=1))
    assert now[centre, 2] - rest[centre, 2] < -0.002  # the surface under the probe went down
    load = slab.static_load(rest)
    reported = slab.contact_force()
    # both push the probe up; PyBullet's reported force is not the load (see fem_probe.py)
    assert load[2] > 0.05 and reported[2] > 0
    assert abs(load[0]) < 0.2 * load[2] and abs(load[1]) < 0.2 * load[2]
    cps = slab.contacts()
    assert all(cp[9] >= 0 and cp[7][2] > 0 for cp in cps)  # normal on B: from slab to probe
    # the point 10 mm down is carried down, less than the surface under the probe
    before = under.positions(slab.mesh.tets, rest)[0, 2]
    after = slab.embedded_positions(under)[0, 2]
    assert now[centre, 2] - rest[centre, 2] < after - before < -1e-3
    _press(slab, -0.004)  # lift the probe off again


def test_slab_is_deterministic():
    """Same configuration, same probe path: the same nodes, bit for bit."""
    runs = []
    for _ in range(2):
        with FemSlab(COARSE) as slab:
            slab.step(60)
            _press(slab, 0.003, steps=20)
            runs.append(slab.node_positions())
    assert np.array_equal(runs[0], runs[1])


def test_slab_owns_and_releases_its_client_and_mesh_file():
    slab = FemSlab(COARSE)
    path, client = slab.mesh_path, slab.client
    assert path.is_file() and p.isConnected(physicsClientId=client)
    slab.close()
    assert not path.parent.exists()
    assert not p.isConnected(physicsClientId=client)
    slab.close()  # idempotent
