"""SurgicalPath: a trocar-constrained tool must reach a lesion inside an organ past vessels and nerves.

Good technique pays: the shaft pivots about the port, so re-aiming while deep sweeps it
sideways through tissue (damage cost) and possibly into a vessel (failure). The expert
retracts, re-aims outside the organ, then advances along the safe straight line.
"""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from surgsim.scene import Box, Ellipsoid, Part, Point, Scene, Sphere, Tube, vec3
from surgsim.sim import anatomy
from surgsim.sim import tissue
from surgsim.sim.instruments import TrocarTool, trocar_angles
from surgsim.tasks import experts
from surgsim.tasks.base import MM, Measurement, ObsEntry, Task, potential
from surgsim.tasks.spec import SurgicalPathSpec

#: clearance queries look this far (m); anything farther reads as this value
CLEARANCE_RANGE = 0.03
#: rendered elastic tissue draws the organ as the icosphere subdivided this many more times
_SURFACE_SUBDIVISIONS = 1
#: and redraws it once a point of it has moved this far (mm) from where it was drawn, or when it
#: is back at rest: PyBullet's createVisualShape leaks its vertex lists (about 100 KB a drawing)
_REDRAW_MM = 0.3
#: patients drawn before a difficulty is declared infeasible, and start poses tried per patient
_MAX_DRAWS = 200
_START_DRAWS = 50


#: observation scales (m): the lesion's offset from the port, an insertion error, a length in tissue
_PORT_OFFSET_SCALE = 0.1
_INSERTION_SCALE = 0.1
_TISSUE_LENGTH_SCALE = 0.05
_PROGRESS = "progress_scale_mm (spec)"
_ANGLE = "angle_limit_deg (spec)"
_CLEARANCE = f"CLEARANCE_RANGE ({CLEARANCE_RANGE * 1000:g} mm)"


class SurgicalPathTask(Task):
    action_dim = 3
    OBSERVATION = (
        *(ObsEntry(f"tip_to_lesion_{a}", f"tip minus lesion centre, {a}", "m", _PROGRESS) for a in "xyz"),
        *(ObsEntry(f"lesion_from_port_{a}", f"lesion centre minus port, {a}", "m",
                   f"{_PORT_OFFSET_SCALE * 1000:g} mm") for a in "xyz"),
        ObsEntry("yaw", "tool yaw about the port", "rad", _ANGLE),
        ObsEntry("pitch", "tool pitch about the port", "rad", _ANGLE),
        ObsEntry("insertion", "shaft length past the port", "m", "insertion_range_mm high end (spec)"),
        ObsEntry("yaw_to_aim", "yaw that aims at the lesion minus yaw", "rad", _ANGLE),
        ObsEntry("pitch_to_aim", "pitch that aims at the lesion minus pitch", "rad", _ANGLE),
        ObsEntry("insertion_to_go", "insertion that reaches the lesion minus insertion", "m",
                 f"{_INSERTION_SCALE * 1000:g} mm"),
        ObsEntry("clearance", "shaft's distance to the nearest vessel or nerve (capped)", "m", _CLEARANCE),
        *(ObsEntry(f"escape_{a}", f"from the shaft to the nearest vessel or nerve, {a} (0 beyond the cap)",
                   "m", _CLEARANCE) for a in "xyz"),
        ObsEntry("tissue_length", "length of shaft inside the organ", "m", f"{_TISSUE_LENGTH_SCALE * 1000:g} mm"),
    )
    instrument_body = TrocarTool.body
    expert = staticmethod(experts.aim_then_advance)
    damage_to_reward_units = 1e6  # swept area: m^2 -> mm^2
    start_fields = ("yaw", "pitch", "insertion", "tip_x", "tip_y", "tip_z")
    clearance_range = CLEARANCE_RANGE

    def __init__(self, spec: SurgicalPathSpec) -> None:
        super().__init__(spec)
        p = spec.params
        self.port = np.array(p.port, dtype=float)
        self._port_floats = self.port.tolist()
        self.angle_limit = math.radians(p.angle_limit_deg)
        self.angle_step = math.radians(p.max_angle_step_deg)
        self.insertion_step = p.max_insertion_step_mm * MM
        self.insertion_min, self.insertion_max = (v * MM for v in p.insertion_range_mm)
        self.start_insertion = p.start_insertion_mm * MM
        self.required_clearance = p.required_clearance_mm * MM
        self.reference_lookahead = self.insertion_step
        self.start_config = (0.0, 0.0, self.start_insertion)
        self.target = self.port.copy()
        #: where the pre-operative anatomy puts the lesion (``target`` is where it is now)
        self.lesion_preop = self.target
        self.target_angles = (0.0, 0.0)
        self.target_insertion = 0.0
        if self.material is not None:
            self._contact = tissue.ShaftContact(self.material)
            #: points the tissue's displacement carries: the lesion, then every tube's points
            self._carried = np.zeros((1, 3))
            self._tubes: list[tuple[str, slice, np.ndarray]] = []  # (body, rows, body centre)
            #: the carried points' displacement now (m), and whether any is moved
            self._displacement = np.zeros((1, 3))
            self._displaced = False
            #: rendered worlds: the rows of the organ's drawn surface among the carried points,
            #: and its triangles
            self._surface: tuple[slice, tuple[int, ...], np.ndarray] | None = None

    def attach(self, world) -> None:
        super().attach(world)
        self.tool = TrocarTool(world, self.port, angle_limit=self.angle_limit, angle_step=self.angle_step,
                               insertion_step=self.insertion_step,
                               insertion_range=(self.insertion_min, self.insertion_max))

    def reference_path(self) -> np.ndarray:
        """Port to target along the safe straight line (the planner gives the full path)."""
        return np.vstack([self.port, self.target])

    # ------------------------------------------------------------- scenario
    def build(self, rng: np.random.Generator, difficulty: str) -> None:
        scale = self.spec.difficulty_scale[difficulty]
        rejected: Counter = Counter()
        if self.material is not None:
            self._relax()
        for _ in range(_MAX_DRAWS):
            rejection = self._try_build(rng, scale, difficulty)
            if rejection is None:
                if self.material is not None:
                    self._embed()
                return
            rejected[rejection] += 1
        raise self.infeasible(difficulty, _MAX_DRAWS, rejected)

    def _try_build(self, rng: np.random.Generator, scale: float, difficulty: str) -> str | None:
        """Draw and build one patient; None if it is feasible, else the rule it breaks."""
        p = self.params
        depth = rng.uniform(*p.target_depth_mm) * MM
        lateral = rng.uniform(0.0, p.target_lateral_mm * MM * scale)
        heading = rng.uniform(-math.pi, math.pi)
        target = self.port + np.array([lateral * math.cos(heading), lateral * math.sin(heading), -depth])
        direction = (target - self.port) / np.linalg.norm(target - self.port)
        yaw_t, pitch_t = trocar_angles(direction)
        if max(abs(yaw_t), abs(pitch_t)) > p.lesion_angle_limit_frac * self.angle_limit:
            return "lesion beyond lesion_angle_limit_frac of angle_limit_deg from the port"

        jitter, centre_offset = p.organ_radius_jitter_frac, p.organ_centre_offset_frac
        radii = np.array(p.organ_radii_mm) * MM * (1.0 + rng.uniform(-jitter, jitter, 3) * scale)
        centre = target + rng.uniform(-centre_offset, centre_offset, 3) * radii * scale
        top_limit = self.port[2] - self.start_insertion - p.organ_gap_mm * MM
        centre[2] = min(centre[2], top_limit - radii[2])
        if np.sum(((target - centre) / radii) ** 2) > p.lesion_inside_organ_frac**2:
            return "lesion not well inside the organ (kept organ_gap_mm below the start tip)"

        n_vessels = p.vessels[difficulty]
        tubes = []
        for k in range(n_vessels + p.nerves):
            nerve = k >= n_vessels
            radius = p.nerve_radius_mm * MM if nerve else rng.uniform(*p.vessel_radius_mm) * MM
            name = f"nerve_{k - n_vessels}" if nerve else f"vessel_{k}"
            points = self._tube_points(rng, scale, target, direction, radius)
            tubes.append(Part(name, "critical", Tube(tuple(map(vec3, points)), radius),
                              anatomy.NERVE_RGBA if nerve else anatomy.VESSEL_RGBA))
        self.show(self._scene(target, Ellipsoid(vec3(centre), vec3(radii)), tubes))

        self.target = self.lesion_preop = target
        self.target_angles = (yaw_t, pitch_t)
        self.target_insertion = float(np.linalg.norm(target - self.port))
        self.tool.set_config(yaw_t, pitch_t, self.target_insertion)
        if self._clearance()[0] < self.required_clearance:
            return "straight path to the lesion within required_clearance_mm of a vessel or nerve"

        limit = p.start_angle_limit_frac * self.angle_limit
        misalignment = math.radians(p.min_start_misalignment_deg)
        for _ in range(_START_DRAWS):
            yaw, pitch = rng.uniform(-limit, limit, 2)
            if math.hypot(yaw - yaw_t, pitch - pitch_t) < misalignment:
                continue
            self.tool.set_config(float(yaw), float(pitch), self.start_insertion)
            if self._clearance()[0] >= self.safety_margin:
                self.start_config = (float(yaw), float(pitch), self.start_insertion)
                self.start_tip = self.tool.tip.copy()
                return None
        return (f"no start pose min_start_misalignment_deg off the lesion and safety_margin_mm clear "
                f"in {_START_DRAWS} tries")

    def _scene(self, target: np.ndarray, organ: Ellipsoid, tubes: list[Part]) -> Scene:
        """The patient: body wall under the port, lesion, organ, vessels and nerves, and the port."""
        p = self.params
        wall = p.wall_thickness_mm * MM
        half_size = p.wall_half_size_mm * MM
        port = self.port
        return Scene((
            Part("body_wall", "marker", Box(vec3((port[0], port[1], port[2] - wall / 2)),
                                            (half_size, half_size, wall / 2)), anatomy.WALL_RGBA),
            Part("lesion", "target", Sphere(vec3(target), p.lesion_radius_mm * MM), anatomy.LESION_RGBA,
                 channel="target"),
            Part("organ", "tissue", organ, anatomy.ORGAN_RGBA),
            *tubes,
            Part("port", "port", Point(vec3(port)), channel="port"),
        ), p)

    def _tube_points(self, rng: np.random.Generator, scale: float, target: np.ndarray,
                     direction: np.ndarray, radius: float) -> np.ndarray:
        """A tube crossing near the straight path: its axis passes ``offset`` from the path."""
        p = self.params
        u = rng.uniform(*p.vessel_crossing_frac)
        near = self.port + u * (target - self.port)
        heading = rng.uniform(-math.pi, math.pi)
        along = np.array([math.cos(heading), math.sin(heading), 0.0])
        side = np.cross(direction, along)
        side /= np.linalg.norm(side)
        if rng.random() < 0.5:
            side = -side
        low, high = p.vessel_offset_mm
        offset = self.required_clearance + radius + rng.uniform(low, low + (high - low) / scale) * MM
        bend = rng.uniform(-1.0, 1.0) * p.vessel_bend_mm * MM * scale
        return anatomy.bent_tube(near + offset * side, along, side, p.vessel_length_mm * MM, bend)

    # ------------------------------------------------ planning interface
    def start_vector(self) -> np.ndarray:
        return np.array([*self.start_config, *self.start_tip])

    def path_end(self) -> np.ndarray:
        return self.target.copy()

    def check_poses(self, tips: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """The whole shaft's clearance and the env's failure rule at each tip position."""
        configs = self.tool.tip_to_config(tips)
        inside = self.tool.within_limits(configs)
        t = self.tool
        saved = (t.yaw, t.pitch, t.insertion)
        clearance, reasons = np.empty(len(configs)), []
        try:
            # rows as plain floats: the same values as float() of each array element, read at once
            for i, (yaw, pitch, insertion) in enumerate(configs.tolist()):
                t.set_config(yaw, pitch, insertion)
                clearance[i] = self._clearance()[0]
                failure = self._failure(clearance[i] <= 0.0, insertion)
                reasons.append(failure or (None if inside[i] else self.UNREACHABLE))
        finally:
            t.set_config(*saved)
        return clearance, reasons

    # --------------------------------------------------------------- motion
    def step(self, action: np.ndarray | None) -> Measurement:
        if action is None:
            m = self._measure(0.0)
        else:
            before = self.tool.insertion
            swept = self.tool.move(action)
            m = self._measure(swept, self.tool.insertion - before)
        self.damage_total = m.damage_total
        return m

    # ------------------------------------------------------ elastic tissue
    def _embed(self) -> None:
        """Start the episode's tissue state: nothing inserted, the anatomy where it was imaged
        (fem: the organ meshed, with the carried points embedded in it)."""
        if self.uses_fem:
            self._contact = self.make_fem("organ", self.material.friction)
        else:
            self._contact.reset()
        tubes = [part for part in self.scene.parts if part.name in self.scene.critical]
        rows, start = [], 1
        self._tubes = []
        for part in tubes:
            points = part.shape.array
            self._tubes.append((part.name, slice(start, start + len(points)), points.mean(axis=0)))
            rows.append(points)
            start += len(points)
        self._surface = None
        if self.world.visuals:  # rendered: the organ is drawn as a surface that dimples
            organ = self.scene.part("organ").shape
            unit, indices = anatomy.unit_sphere_mesh(_SURFACE_SUBDIVISIONS)
            radii = np.asarray(organ.radii)
            rows.append(np.asarray(organ.centre) + unit * radii)
            normals = unit / radii  # the ellipsoid's normals (of the undeformed surface)
            normals /= np.linalg.norm(normals, axis=1, keepdims=True)
            self._surface = (slice(start, start + len(unit)), indices, normals)
            self._drawn_surface = None
            self.world.hide("organ")
        self._carried = np.vstack([self.lesion_preop[None, :], *rows])
        if self.uses_fem:
            self._embedding = self.fem.body.embed(self._carried, outside="nearest")
            # a point outside the mesh sits at rest where its nearest mesh point is not: it moves
            # by that point's displacement, from where the scene has it
            self._embedded_rest = self.fem.body.embedded_positions(self._embedding, self.fem.body.mesh.nodes)
        self._displace(np.zeros_like(self._carried))

    def _relax(self) -> None:
        """Put displaced bodies back where the scene has them (before a new patient is drawn,
        which may be the same one)."""
        if self._displaced:
            self._displace(np.zeros_like(self._carried))

    def _displace(self, u: np.ndarray) -> None:
        """Move the lesion and the vessels and nerves by the displacement ``u`` of the carried points."""
        self._displacement = u
        move = self.world.move
        self.target = self.lesion_preop + u[0]
        if self.world.has("lesion"):
            move("lesion", self.target.tolist())
        for name, rows, centre in self._tubes:
            if self.world.has(name):  # gone if the world was cleared since (Task.reset)
                move(name, (centre + u[rows].mean(axis=0)).tolist())
        if self._surface is not None:
            rows, indices, normals = self._surface
            drawn, now = self._drawn_surface, u[rows]
            at_rest_again = not np.any(now) and np.any(drawn)
            if drawn is None or at_rest_again or np.abs(now - drawn).max() > _REDRAW_MM * MM:
                self.world.add_visual_mesh("organ_surface", self._carried[rows] + now, indices, normals,
                                           anatomy.ORGAN_RGBA)
                self._drawn_surface = now.copy()
        self._displaced = bool(np.any(u))
        direction = self.target - self.port
        self.target_insertion = float(np.linalg.norm(direction))
        yaw, pitch = trocar_angles(direction / self.target_insertion)
        self.target_angles = (float(yaw), float(pitch))

    @property
    def target_shift(self) -> np.ndarray:
        return self.target - self.lesion_preop

    # ----------------------------------------------------------- measuring
    def _clearance(self) -> tuple[float, tuple[float, float, float], tuple[float, float, float]]:
        """Clearance of the whole shaft to the nearest critical structure, the escape vector, and
        the contact normal there (from the structure towards the shaft)."""
        best, vector, normal = CLEARANCE_RANGE, (0.0, 0.0, 0.0), (0.0, 0.0, 1.0)
        closest, body = self.world.closest, self.tool.body
        for name in self.scene.critical:
            cp = closest(body, name, CLEARANCE_RANGE)
            if cp is not None and cp.distance < best:
                best = cp.distance
                a, b = cp.point_a, cp.point_b
                vector = (b[0] - a[0], b[1] - a[1], b[2] - a[2])
                normal = cp.normal
        return best, vector, normal

    def _failure(self, critical_hit: bool, insertion: float) -> str | None:
        """The failure rule; ``critical_hit``: a critical structure is damaged (rigid tissue: any
        touch; elastic: a rupture)."""
        if critical_hit:
            return "critical_structure"
        if insertion > self.target_insertion + self.params.overshoot_mm * MM:
            return "depth_limit"
        return None

    @property
    def tissue_length(self) -> float:
        """Length of shaft inside the organ: from where the shaft enters it (ray test) to the tip."""
        hit = self.world.ray(self._port_floats, self.tool.tip.tolist())
        if hit is None or hit.body != "organ":
            return 0.0
        return (1.0 - hit.fraction) * self.tool.insertion

    def measure(self) -> Measurement:
        """The measurement of the pose now; with elastic tissue, as if the tool had arrived here
        with no axial move (the tissue's state is put back afterwards)."""
        if self.material is None:
            return self._measure(0.0)
        displacement = self._displacement
        try:
            with self.tissue_kept():
                return self._measure(0.0)
        finally:
            if self._displacement is not displacement:
                self._displace(displacement)

    def _measure(self, swept_angle: float, advance: float = 0.0) -> Measurement:
        """The measurement after a move that swept the shaft by ``swept_angle`` (rad) and inserted
        it by ``advance`` (m)."""
        t = self.tool
        tip = t.tip
        # plain floats: the same arithmetic as on the arrays, without NumPy's per-call cost
        x, y, z = tip_floats = tip.tolist()
        clearance, escape, normal = self._clearance()
        inside = self.tissue_length
        # lateral sweep of the part of the shaft inside tissue: area = dtheta * (r_tip^2 - r_in^2) / 2
        r_tip = t.insertion
        r_in = r_tip - inside
        damage = swept_angle * (r_tip * r_tip - r_in * r_in) / 2 if inside > 0 else 0.0
        force = None
        critical = 0.0
        if self.material is None:
            failure = self._failure(clearance <= 0.0, t.insertion)
        else:
            force, critical, failure = self._load(tip_floats, inside, advance, clearance, normal)
        tx, ty, tz = self.target.tolist()
        distance = math.sqrt((x - tx) * (x - tx) + (y - ty) * (y - ty) + (z - tz) * (z - tz))
        return Measurement(
            tip=tip,
            tip_orientation=self._orientation(),
            state=self._state(tip_floats, clearance, escape, inside, force),
            goal=self.target,
            distance=distance,
            potential=potential(distance, self.progress_scale),
            clearance=clearance,
            depth=t.insertion,
            damage_increment=damage,
            damage_total=self.damage_total + damage,
            success=failure is None and distance <= self.tolerance,
            failure_reason=failure,
            force=force,
            critical_force=critical,
            critical_contact=clearance <= 0.0,
        )

    def _load(self, tip: list[float], inside: float, advance: float, clearance: float,
              normal: tuple[float, float, float]) -> tuple[tuple[float, float, float], float, str | None]:
        """Elastic or fem tissue: the force on the tool, the force on critical structures, the
        failure; moves the anatomy with the tissue (elastic: under the tissue's share of the
        load; fem: with the finite-element nodes). The fem tier does not mesh the vessels and
        nerves apart from the organ: any touch ruptures one, as with rigid tissue."""
        m = self.material
        d = self.tool.direction
        fx, fy, fz = self._contact.update(tip, d, inside, advance)
        if self.fem is not None:
            nodes = self.fem.body.embedded_positions(self._embedding, self.fem.positions)
            self._displace(nodes - self._embedded_rest)
            force, critical, damaged = (fx, fy, fz), 0.0, clearance <= 0.0
        else:
            if fx or fy or fz or self._displaced:
                # the load on the tissue acts at the tip before puncture, then along the inserted length
                back = inside / 2 if self._contact.punctured else 0.0
                load_point = (tip[0] - back * d[0], tip[1] - back * d[1], tip[2] - back * d[2])
                self._displace(tissue.kelvinlet(m, self._carried, load_point, (-fx, -fy, -fz)))
            cx, cy, cz = tissue.critical_force(m, -clearance, normal)
            critical = tissue.norm((cx, cy, cz))
            force = (fx + cx, fy + cy, fz + cz)
            damaged = critical > m.rupture_force
        if not damaged and tissue.norm(force) > self.max_force:
            failure = "excessive_force"
        else:
            failure = self._failure(damaged, self.tool.insertion)
        return force, critical, failure

    def _state(self, tip: list[float], clearance: float, esc: tuple[float, float, float],
               inside: float, force: tuple[float, float, float] | None = None) -> np.ndarray:
        t = self.tool
        s = self.progress_scale
        lim = self.angle_limit
        yaw_t, pitch_t = self.target_angles
        target, port = self.target.tolist(), self._port_floats
        return np.array(
            [
                (tip[0] - target[0]) / s, (tip[1] - target[1]) / s, (tip[2] - target[2]) / s,
                (target[0] - port[0]) / _PORT_OFFSET_SCALE, (target[1] - port[1]) / _PORT_OFFSET_SCALE,
                (target[2] - port[2]) / _PORT_OFFSET_SCALE,
                t.yaw / lim, t.pitch / lim, t.insertion / self.insertion_max,
                (yaw_t - t.yaw) / lim, (pitch_t - t.pitch) / lim,
                (self.target_insertion - t.insertion) / _INSERTION_SCALE,
                clearance / CLEARANCE_RANGE,
                esc[0] / CLEARANCE_RANGE, esc[1] / CLEARANCE_RANGE, esc[2] / CLEARANCE_RANGE,
                inside / _TISSUE_LENGTH_SCALE,
                *self.force_state(force),
            ],
            dtype=np.float32,
        )
