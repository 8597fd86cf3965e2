#!/usr/bin/env python
"""Finite-element tissue probe (issue 14 groundwork): what PyBullet's deformable world does with
a tissue slab meshed by ``surgsim.sim.fem`` and a rigid spherical probe pressed into it.

Measures, in one run, on a 100 x 100 x 30 mm slab anchored at its base (nu = 0.45, density
1000 kg/m^3) and a probe of radius 5 mm (the tip of a 10 mm instrument):

1. the mesh, and what PyBullet does with a mesh whose tetrahedra are not all positive;
2. the slab at rest under its own weight: the base force against the weight it carries, and the
   sag with and without the small-strain parameter correction (``neo_hookean_parameters``);
3. force against indentation, quasi-static, to 10 mm, for E = 5.5 kPa and 20 kPa: PyBullet's
   reported contact force, the load read at the base (elastic forces on the anchored nodes),
   and the analytic small-strain answers: Hertz for a rigid sphere on an elastic half-space,
   ``F = 4/3 E* sqrt(R) d^1.5``, ``E* = E / (1 - nu^2)``, and the same with the correction of
   Dimitriadis et al. 2002 (Biophys J 82(5)) for a layer of thickness h bonded to a rigid base;
4. physics step time (ms per 1/240 s step, sub-steps included) at a coarser, the default and
   a finer mesh, with the slab free and with the probe pressed in;
5. steps to settle after gravity is switched on and after a 2 mm press;
6. stability: thousands of steps with the probe wandering at random (seeded), NaN and
   displacement bounds;
7. determinism: two runs with the same seed, node positions compared bit for bit.

A measurement: the exit code is 0 whatever it finds. Times depend on the machine and its load
(the report prints both).

    python benchmarks/fem_probe.py             # about 3-6 minutes on 2 shared cores
    python benchmarks/fem_probe.py --quick     # smoke run, under a minute
    python benchmarks/fem_probe.py --fine      # also the force curve on the finer mesh (slow)
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pybullet as p

from surgsim.sim import fem
from surgsim.sim.fem import FemConfig, FemSlab

MM = 1e-3
DEFAULT = FemConfig()
MESHES = {"coarser": (5, 5, 2), "default": DEFAULT.cells, "finer": (20, 20, 6)}
#: probe speed while pressing: 0.02 mm a step (4.8 mm/s), slow enough to be quasi-static
PRESS_STEP = 0.02 * MM
#: steps held at each depth before reading the forces (0.5 s)
HOLD = 120
#: a node moving slower than this is at rest (m/s)
REST_SPEED = 1e-3


# ------------------------------------------------------------------------------- helpers


def hertz(E: float, nu: float, R: float, d: float) -> float:
    """Hertz: rigid sphere of radius R pressed d into an elastic half-space (N)."""
    return 4.0 / 3.0 * E / (1.0 - nu**2) * math.sqrt(R) * max(d, 0.0) ** 1.5


def bonded_layer_factor(nu: float, R: float, d: float, h: float) -> float:
    """Dimitriadis et al. 2002, layer bonded to a rigid base: F = Hertz x this, with
    chi = sqrt(R d) / h (their series, valid for chi up to about 1)."""
    chi = math.sqrt(R * max(d, 0.0)) / h
    a0 = -(1.2876 - 1.4678 * nu + 1.3442 * nu**2) / (1 - nu)
    b0 = (0.6387 - 1.0277 * nu + 1.5164 * nu**2) / (1 - nu)
    pi = math.pi
    return (
        1
        - 2 * a0 / pi * chi
        + 4 * a0**2 / pi**2 * chi**2
        - 8 / pi**3 * (a0**3 + 4 * pi**2 * b0 / 15) * chi**3
        - 16 * a0 / pi**4 * (a0**3 + 3 * pi**2 * b0 / 5) * chi**4
    )


def centre_node(slab: FemSlab) -> int:
    """The top-surface node under the probe."""
    cx, cy, _ = slab.probe_rest_position()
    return int(np.argmin(np.linalg.norm(slab.mesh.nodes - [cx, cy, slab.top_z], axis=1)))


def press_to(
    slab: FemSlab, depth: float, hold: int = HOLD, speed: float = PRESS_STEP, surface: float | None = None
) -> tuple[int, float]:
    """Move the probe (its bottom ``depth`` below ``surface``, default the undeformed top face)
    at ``speed`` per step, then hold ``hold`` steps. Returns (steps, seconds spent in ``step``)."""
    x, y, _ = slab.probe_rest_position()
    target = (slab.top_z if surface is None else surface) + slab.config.probe_radius - depth
    start = slab.probe_position()[2]
    n = max(1, int(math.ceil(abs(start - target) / speed)))
    t = time.perf_counter()
    for k in range(1, n + 1):
        slab.move_probe([x, y, start + (target - start) * k / n])
        slab.step()
    slab.step(hold)
    return n + hold, time.perf_counter() - t


def steps_to_rest(slab: FemSlab, limit: int) -> int | None:
    """Step until no node moves faster than ``REST_SPEED``; the steps taken, None if still
    moving after ``limit``."""
    prev = slab.node_positions()
    for k in range(1, limit + 1):
        slab.step()
        now = slab.node_positions()
        if np.abs(now - prev).max() / slab.config.time_step < REST_SPEED:
            return k
        prev = now
    return None


def fmt(x: float | None, spec: str = ".3f") -> str:
    return "-" if x is None else format(x, spec)


# ------------------------------------------------------------------------------ sections


def section_mesh(cfg: FemConfig) -> None:
    print("\n== 1. Mesh ==")
    mesh = fem.box_mesh(cfg.size, cfg.cells, cfg.origin)
    vols = mesh.volumes()
    box = cfg.size[0] * cfg.size[1] * cfg.size[2]
    print(
        f"default slab {cfg.size[0] / MM:.0f} x {cfg.size[1] / MM:.0f} x {cfg.size[2] / MM:.0f} mm, "
        f"{cfg.cells} cells -> {len(mesh.nodes)} nodes, {len(mesh.tets)} tetrahedra; "
        f"volumes min {vols.min():.3g} m^3 (all > 0: {bool((vols > 0).all())}), "
        f"sum / box = {vols.sum() / box:.15f}"
    )
    # the same mesh with every other tetrahedron turned inside out, written past the check
    bad = mesh.tets.copy()
    bad[::2] = bad[::2][:, [0, 2, 1, 3]]
    try:
        fem.check_orientation(mesh.nodes, bad)
    except fem.InvertedTetrahedronError as exc:
        print(f"check_orientation on it: {exc}")
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for name, tets in (("positive", mesh.tets), ("mixed", bad)):
            path = Path(tmp) / f"{name}.vtk"
            text = fem.vtk_text(fem.TetMesh(mesh.nodes, mesh.tets)).splitlines()
            cells_at = text.index(f"CELLS {len(tets)} {5 * len(tets)}") + 1
            text[cells_at : cells_at + len(tets)] = [f"4 {a} {b} {c} {d}" for a, b, c, d in tets.tolist()]
            path.write_text("\n".join(text) + "\n")
            rows.append((name, gravity_settle_raw(path, cfg, mesh)))
            if name == "positive":
                sleeping_experiment(path, cfg, mesh)
    for name, (ok, maxdisp, sag) in rows:
        print(
            f"PyBullet, {name:8s} orientation, 1 s under gravity: loaded {ok}, max |displacement| "
            f"{maxdisp / MM:.4g} mm, centre sag {sag / MM:.4g} mm"
        )


def raw_slab(path: Path, cfg: FemConfig, mesh: fem.TetMesh, disable_sleeping: bool = True) -> tuple[int, int]:
    """Load ``path`` as FemSlab does, without its checks; returns (client, body)."""
    cid = p.connect(p.DIRECT)
    p.resetSimulation(p.RESET_USE_DEFORMABLE_WORLD, physicsClientId=cid)
    p.setGravity(0, 0, -cfg.gravity, physicsClientId=cid)
    p.setPhysicsEngineParameter(fixedTimeStep=cfg.time_step / cfg.resolved_substeps(), physicsClientId=cid)
    mu, lam = fem.neo_hookean_parameters(cfg.young_modulus, cfg.poisson_ratio)
    with fem._quiet_stdout():
        body = p.loadSoftBody(
            str(path), mass=cfg.mass(), useNeoHookean=1, NeoHookeanMu=mu, NeoHookeanLambda=lam,
            NeoHookeanDamping=cfg.damping, collisionMargin=cfg.collision_margin, physicsClientId=cid,
        )  # fmt: skip
    if disable_sleeping:
        p.changeDynamics(body, -1, activationState=p.ACTIVATION_STATE_DISABLE_SLEEPING, physicsClientId=cid)
    for node in np.flatnonzero(mesh.nodes[:, 2] <= cfg.origin[2] + 1e-12):
        p.createSoftBodyAnchor(body, int(node), -1, -1, physicsClientId=cid)
    return cid, body


def raw_nodes(cid: int, body: int) -> np.ndarray:
    return np.asarray(p.getMeshData(body, -1, flags=p.MESH_DATA_SIMULATION_MESH, physicsClientId=cid)[1])


def raw_steps(cid: int, cfg: FemConfig, n: int) -> None:
    for _ in range(n * cfg.resolved_substeps()):
        p.stepSimulation(physicsClientId=cid)


def gravity_settle_raw(path: Path, cfg: FemConfig, mesh: fem.TetMesh) -> tuple[bool, float, float]:
    """Settle the raw slab 1 s under gravity: (loaded, max |displacement|, centre sag)."""
    cid, body = raw_slab(path, cfg, mesh)
    try:
        raw_steps(cid, cfg, 240)
        x = raw_nodes(cid, body)
        top = int(np.argmin(np.linalg.norm(mesh.nodes - [0.0, 0.0, cfg.origin[2] + cfg.size[2]], axis=1)))
        return body >= 0, float(np.abs(x - mesh.nodes).max()), float(x[top, 2] - mesh.nodes[top, 2])
    finally:
        p.disconnect(physicsClientId=cid)


def sleeping_experiment(path: Path, cfg: FemConfig, mesh: fem.TetMesh) -> None:
    """Settle 2 s, then press the probe 4 mm at 0.02 mm/step, with PyBullet's default
    activation (sleeping allowed) and with sleeping disabled."""
    top = int(np.argmin(np.linalg.norm(mesh.nodes - [0.0, 0.0, cfg.origin[2] + cfg.size[2]], axis=1)))
    for disable in (False, True):
        cid, body = raw_slab(path, cfg, mesh, disable_sleeping=disable)
        try:
            R = cfg.probe_radius
            shape = p.createCollisionShape(p.GEOM_SPHERE, radius=R, physicsClientId=cid)
            z0 = cfg.origin[2] + cfg.size[2] + R + 0.002
            probe = p.createMultiBody(0, shape, -1, [0, 0, z0], physicsClientId=cid)
            raw_steps(cid, cfg, 480)
            settled = raw_nodes(cid, body)[top, 2]
            n = int(round(0.006 / PRESS_STEP))
            t = time.perf_counter()
            for k in range(1, n + 1):
                p.resetBasePositionAndOrientation(probe, [0, 0, z0 - 0.006 * k / n], [0, 0, 0, 1], physicsClientId=cid)
                raw_steps(cid, cfg, 1)
            spent = (time.perf_counter() - t) / n
            contacts = len(p.getContactPoints(probe, body, physicsClientId=cid))
            dz = raw_nodes(cid, body)[top, 2] - settled
            print(
                f"sleeping {'disabled' if disable else 'allowed (default)'}: probe pressed 4 mm into the settled slab -> "
                f"{contacts} contact points, surface under it moved {dz / MM:.2f} mm, {spent * 1e3:.2f} ms/step"
            )
        finally:
            p.disconnect(physicsClientId=cid)


def section_gravity(cfg: FemConfig) -> None:
    print("\n== 2. At rest under its own weight (1 s) ==")
    for match in (True, False):
        with FemSlab(replace(cfg, match_small_strain=match)) as slab:
            slab.step(240)
            x = slab.node_positions()
            free = len(x) - len(slab.anchored)
            weight_free = cfg.mass() * cfg.gravity * free / len(x)
            base = slab.base_force(x)
            E, nu = fem.effective_small_strain(slab.neo_mu, slab.neo_lambda)
            sag = x[centre_node(slab), 2] - slab.top_z
            print(
                f"match_small_strain={match!s:5}: NeoHookeanMu {slab.neo_mu:.0f} Pa, Lambda "
                f"{slab.neo_lambda:.0f} Pa (small strain: E {E:.0f} Pa, nu {nu:.3f}); base force z "
                f"{base[2]:.4f} N vs weight of the free nodes {weight_free:.4f} N (ratio {-base[2] / weight_free:.5f}); "
                f"centre sag {sag / MM:.3f} mm"
            )
    mu, lam = fem.lame_parameters(cfg.young_modulus, cfg.poisson_ratio)
    uniaxial = cfg.density * cfg.gravity * cfg.size[2] ** 2 / (2 * (lam + 2 * mu))
    print(
        f"(1-D reference, a layer held at its sides: sag rho g h^2 / (2 (lambda + 2 mu)) = {uniaxial / MM:.3f} mm; "
        "the slab's sides are free and PyBullet spreads the mass evenly over the nodes, a quarter of "
        "it on the anchored bottom nodes, so only the order of magnitude compares)"
    )


def section_ball(cfg: FemConfig, masses: list[float], substeps: list[int | None], radius: float = 0.01) -> None:
    print(
        f"\n== 2b. A free rigid ball (radius {radius / MM:g} mm) dropped 1 mm onto the slab, 2 s later: "
        "does PyBullet's contact force balance its weight? =="
    )
    print(
        "sub-steps | ball kg | weight N | reported Fz N (mean of the last 1 s, every step) | base-read Fz N | "
        "ball bottom vs surface mm | ball speed mm/s"
    )
    for sub in substeps:
        for m in masses:
            with FemSlab(replace(cfg, substeps=sub)) as slab:
                slab.move_probe([1.0, 1.0, 1.0])  # the probe out of the way
                slab.step(240)
                rest = slab.node_positions()
                cid = slab.client
                shape = p.createCollisionShape(p.GEOM_SPHERE, radius=radius, physicsClientId=cid)
                ball = p.createMultiBody(m, shape, -1, [0.0, 0.0, slab.top_z + radius + 0.001], physicsClientId=cid)
                slab.step(240)
                reported = []
                for _ in range(240):
                    slab.step()
                    cps = p.getContactPoints(ball, slab.body, physicsClientId=cid)
                    reported.append(sum(cp[9] * cp[7][2] for cp in cps))
                z = p.getBasePositionAndOrientation(ball, physicsClientId=cid)[0][2]
                v = np.linalg.norm(p.getBaseVelocity(ball, physicsClientId=cid)[0])
                load = slab.static_load(rest)[2]
                w = m * cfg.gravity
                fell = " (fell through the slab)" if z < cfg.origin[2] else ""
                print(
                    f"{slab.substeps:9d} | {m:7.3f} | {w:.4f} | {np.mean(reported):.4f} ({np.mean(reported) / w:.2f} of the "
                    f"weight) | {load:.4f} ({load / w:.2f}) | {(z - radius - slab.top_z) / MM:.2f}{fell} | {v / MM:.3g}"
                )


def section_force_curve(
    cfg: FemConfig, depths: list[float], label: str, hold: int = HOLD, speed: float = PRESS_STEP
) -> None:
    R, nu, h = cfg.probe_radius, cfg.poisson_ratio, cfg.size[2]
    with FemSlab(cfg) as slab:
        slab.step(240)
        rest = slab.node_positions()
        top = centre_node(slab)
        print(
            f"\n-- {label}: E {cfg.young_modulus / 1e3:g} kPa, cells {cfg.cells}, {slab.substeps} sub-steps, "
            f"damping {cfg.damping:g}, probe R {R / MM:g} mm, pressed at {speed / MM * 240:.1f} mm/s, "
            f"held {hold} steps at each depth; depth from the surface sagged under gravity "
            f"({(rest[top, 2] - slab.top_z) / MM:.2f} mm) --"
        )
        print(
            "depth mm | reported Fz N (+-std, 2nd half of hold) |Fxy| | base-read Fz N |Fxy| | Hertz N | "
            "bonded-layer N | base/bonded | surface under probe mm | contacts"
        )
        steps = spent = 0
        for d in depths:
            n, t = press_to(slab, d * MM, hold=0, speed=speed, surface=rest[top, 2])
            steps, spent = steps + n, spent + t
            reported = []
            t0 = time.perf_counter()
            for _ in range(hold):
                slab.step()
                reported.append(slab.contact_force())
            steps, spent = steps + hold, spent + time.perf_counter() - t0
            reported = np.asarray(reported)
            load = slab.static_load(rest)
            x = slab.node_positions()
            H = hertz(cfg.young_modulus, nu, R, d * MM)
            B = H * bonded_layer_factor(nu, R, d * MM, h)
            ratio = load[2] / B if B > 0 else None
            print(
                f"{d:8.1f} | {reported[-hold // 2 :, 2].mean():8.3f} +- {reported[-hold // 2 :, 2].std():.3f} "
                f"{np.hypot(*reported[-1, :2]):.3f} | {load[2]:8.3f} {np.hypot(*load[:2]):.3f} | "
                f"{H:.3f} | {B:.3f} | {fmt(ratio, '.2f')} | {(x[top, 2] - rest[top, 2]) / MM:7.2f} | "
                f"{len(slab.contacts())}"
            )
            if not np.isfinite(x).all():
                print("   NaN in the node positions: stopped")
                break
        print(f"   {spent / steps * 1e3:.2f} ms per step over the curve ({steps} steps)")


def section_step_time(cfg: FemConfig, meshes: dict[str, tuple[int, int, int]], measure: int) -> None:
    print("\n== 4. Physics step time (ms per 1/240 s step, all its sub-steps) ==")
    print("mesh | cells | nodes | tets | sub-steps | free: ms/step | probe pressed 4 mm: ms/step")
    for name, cells in meshes.items():
        c = replace(cfg, cells=cells)
        with FemSlab(c) as slab:
            slab.step(120)
            t = time.perf_counter()
            slab.step(measure)
            free = (time.perf_counter() - t) / measure
            press_to(slab, 4 * MM, hold=20, speed=0.1 * MM)
            t = time.perf_counter()
            slab.step(measure)
            contact = (time.perf_counter() - t) / measure
            ok = np.isfinite(slab.node_positions()).all()
            print(
                f"{name:7s} | {cells} | {len(slab.mesh.nodes)} | {len(slab.mesh.tets)} | {slab.substeps} | "
                f"{free * 1e3:.2f} | {contact * 1e3:.2f}{'' if ok else ' (NaN!)'}"
            )


def section_settle(cfg: FemConfig, limit: int) -> None:
    print(f"\n== 5. Steps to settle (every node slower than {REST_SPEED * 1e3:g} mm/s) ==")
    for E in (cfg.young_modulus, 20000.0):
        c = replace(cfg, young_modulus=E)
        with FemSlab(c) as slab:
            g = steps_to_rest(slab, limit)
            press_to(slab, 2 * MM, hold=0, speed=0.1 * MM)  # 20 steps
            pr = steps_to_rest(slab, limit)
            print(
                f"E {E / 1e3:g} kPa: after gravity is switched on {fmt(g, 'd')} steps; after a 2 mm press "
                f"(0.1 mm/step) {fmt(pr, 'd')} steps (limit {limit}; 240 steps = 1 s)"
            )


def wander(cfg: FemConfig, seed: int, steps: int) -> tuple[np.ndarray, dict[str, float]]:
    """The probe, first pressed 2 mm in, wanders at random (seeded): every 48 steps a new target
    within +-15 mm of the centre and from 2 mm above the surface to 8 mm into it; each step it
    moves towards the target by up to 0.2 mm, plus a jitter of up to 0.05 mm on each axis.
    Returns the final node positions and summary figures."""
    rng = np.random.default_rng(seed)
    with FemSlab(cfg) as slab:
        slab.step(120)
        rest = slab.node_positions()
        press_to(slab, 2 * MM, hold=0, speed=0.1 * MM)
        cx, cy, _ = slab.probe_rest_position()
        R = cfg.probe_radius
        lo = np.array([cx - 0.015, cy - 0.015, slab.top_z + R - 0.008])
        hi = np.array([cx + 0.015, cy + 0.015, slab.top_z + R + 0.002])
        pos = slab.probe_position()
        max_disp = max_load = max_reported = 0.0
        finite = True
        t = time.perf_counter()
        for k in range(steps):
            if k % 48 == 0:
                target = rng.uniform(lo, hi)
            move = target - pos
            dist = float(np.linalg.norm(move))
            if dist > 0.2 * MM:
                move *= 0.2 * MM / dist
            pos = np.clip(pos + move + rng.uniform(-0.05 * MM, 0.05 * MM, size=3), lo, hi)
            slab.move_probe(pos)
            slab.step()
            if k % 10 == 9 or k == steps - 1:
                x = slab.node_positions()
                if not np.isfinite(x).all():
                    finite = False
                    break
                max_disp = max(max_disp, float(np.abs(x - slab.mesh.nodes).max()))
                max_load = max(max_load, float(np.linalg.norm(slab.static_load(rest))))
                max_reported = max(max_reported, float(np.linalg.norm(slab.contact_force())))
        spent = time.perf_counter() - t
        return slab.node_positions(), {
            "finite": float(finite),
            "steps": float(k + 1),
            "max_disp": max_disp,
            "max_load": max_load,
            "max_reported": max_reported,
            "ms_per_step": spent / (k + 1) * 1e3,
        }


def section_stability(cfg: FemConfig, steps: int, seeds: list[int]) -> None:
    print(f"\n== 6. Stability: the probe wandering at random for {steps} steps ({steps / 240:.1f} s) ==")
    print("E kPa | seed | finite | max |node displacement| mm | max base-read |F| N | max reported |F| N | ms/step")
    for E in (cfg.young_modulus, 20000.0):
        for seed in seeds:
            _, r = wander(replace(cfg, young_modulus=E), seed, steps)
            print(
                f"{E / 1e3:5g} | {seed} | {bool(r['finite'])} ({int(r['steps'])} steps) | {r['max_disp'] / MM:.2f} | "
                f"{r['max_load']:.3f} | {r['max_reported']:.3f} | {r['ms_per_step']:.2f}"
            )


def section_determinism(cfg: FemConfig, steps: int) -> None:
    print(f"\n== 7. Determinism ({steps} wandering steps) ==")
    a, _ = wander(cfg, 7, steps)
    b, _ = wander(cfg, 7, steps)
    c, _ = wander(cfg, 8, steps)
    print(
        f"seed 7 twice: node positions bit for bit equal: {np.array_equal(a, b)} (max difference "
        f"{np.abs(a - b).max():.3g} m); seed 8 against seed 7: max difference {np.abs(a - c).max() / MM:.3g} mm"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: fewer depths and steps, no finer mesh")
    ap.add_argument("--fine", action="store_true", help="also the force curve on the finer mesh (minutes)")
    args = ap.parse_args()

    cfg = DEFAULT
    print("FEM tissue probe (surgsim.sim.fem, PyBullet deformable world)")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(
        f"machine: {platform.platform()}, {os.cpu_count()} cores (shared with other users: times vary), "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; pybullet API {p.getAPIVersion()}; "
        f"numpy {np.__version__}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}"
    )
    print(
        f"default config: size {cfg.size} m, cells {cfg.cells}, E {cfg.young_modulus:g} Pa, nu {cfg.poisson_ratio}, "
        f"density {cfg.density:g} kg/m^3, damping {cfg.damping}, margin {cfg.collision_margin} m, friction "
        f"{cfg.friction}, step {cfg.time_step:.5f} s, sub-steps {cfg.resolved_substeps()} (auto), probe R "
        f"{cfg.probe_radius} m"
    )
    t0 = time.perf_counter()
    section_mesh(cfg)
    section_gravity(cfg)
    if args.quick:
        section_ball(cfg, [0.05], [4])
    else:
        section_ball(cfg, [0.02, 0.05, 0.2], [None, 4, 8])
    depths = [1, 4, 10] if args.quick else [0, 1, 2, 3, 4, 6, 8, 10]
    print("\n== 3. Force against indentation (quasi-static) ==")
    print(
        "Hertz is the small-strain answer for a half-space: here the layer is 30 mm thick on a rigid "
        "base (the bonded-layer column corrects for that, for sqrt(R d)/h up to ~1) and d/R reaches 2, "
        "far past small strain. PyBullet takes contact within the collision margin (0.5 mm) of the "
        "surface, so there is a force at depth 0. The base-read load is the elastic force on the anchored nodes (by the "
        "engine's law, from the nodes it reports) less its value at rest: at rest it is the load on "
        "the slab, whatever PyBullet reports."
    )
    for E in (cfg.young_modulus, 20000.0):
        section_force_curve(replace(cfg, young_modulus=E), depths, "default mesh")
    if args.fine:  # 5 mm cells: several times slower a step, so fewer depths, faster, shorter holds
        for E in (cfg.young_modulus, 20000.0):
            c = replace(cfg, young_modulus=E, cells=MESHES["finer"])
            section_force_curve(c, [1, 2, 4, 7, 10], "finer mesh", hold=60, speed=0.05 * MM)
    meshes = {k: v for k, v in MESHES.items() if not (args.quick and k == "finer")}
    section_step_time(cfg, meshes, measure=20 if args.quick else 60)
    section_settle(cfg, limit=480 if args.quick else 1200)
    section_stability(cfg, steps=300 if args.quick else 3000, seeds=[0] if args.quick else [0, 1])
    section_determinism(cfg, steps=100 if args.quick else 500)
    print(f"\ntotal {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
