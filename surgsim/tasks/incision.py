"""Incision: cut along a planned curve on a tissue surface, keeping the blade depth in a band.

Too deep reaches the critical structure below (failure); straying from the line while
cutting fails; cutting outside the band or off the line damages tissue (cost).
"""

from __future__ import annotations

import math
from bisect import bisect_left

import numpy as np

from surgsim.polyline import fast_clip, fast_einsum
from surgsim.scene import Part, Point, Scene, Tube, slab, vec3
from surgsim.sim import anatomy, tissue
from surgsim.sim.instruments import FreeTool
from surgsim.tasks import experts
from surgsim.tasks.base import CONTROL_RATE_HZ, MM, Measurement, ObsEntry, Task, potential
from surgsim.tasks.spec import IncisionSpec

CLEARANCE_RANGE = 0.02
_CURVE_POINTS = 81
_OBS_AHEAD = 0.01
#: the quadratic Bezier's weights (1 - u)^2, 2 u (1 - u), u^2 of its start, control and end
#: point at the curve's samples u, computed once (the same arrays build() computed each time)
_U = np.linspace(0.0, 1.0, _CURVE_POINTS)[:, None]
_BEZIER = ((1 - _U) ** 2, 2 * _U * (1 - _U), _U**2)
#: project_on_line's shortcut: used within this distance (m) of its last full search, with this
#: slack (m) on its distance bounds, far above their rounding
_WINDOW_REACH = 0.008
_WINDOW_SLACK = 1e-7
LAYER_THICKNESS = 0.003
_LINE_RGBA = (0.1, 0.3, 0.9, 1.0)
#: the line drawn on the skin: its height above the surface and its radius (m)
_LINE_HEIGHT = 0.0003
_LINE_RADIUS = 0.0004
#: a quadratic Bezier's midpoint lies halfway from its chord to its control point, so the control
#: point sits this many times the drawn bow off the chord (the line bows up to curvature_mm)
_CONTROL_PER_BOW = 2
#: rendered elastic tissue: the skin is drawn as a grid of this many cells a side, carved where
#: cut; the groove's floor is drawn in this colour; drawn strips sit this far (m) above what they lie on
_SKIN_CELLS = 40
#: the carved band runs through every this many samples of the line (81 samples: 41 rows)
_BAND_EVERY = 2
_GROOVE_RGBA = (0.35, 0.02, 0.02, 1.0)
_DRAWN_LIFT = 0.0002
#: the blade points down into the skin; the critical layer pushes back up
_DOWN = (0.0, 0.0, -1.0)
_UP = (0.0, 0.0, 1.0)


#: observation scales (m): lengths near the blade (offsets to the line, height above the skin), a depth
_NEAR_SCALE = 0.01
_DEPTH_SCALE = 0.005
_PROGRESS = "progress_scale_mm (spec)"
_NEAR = f"{_NEAR_SCALE * 1000:g} mm"
_DEPTH = f"{_DEPTH_SCALE * 1000:g} mm"


class IncisionTask(Task):
    action_dim = 3
    OBSERVATION = (
        ObsEntry("tip_x", "blade tip x from the start of the line", "m", _PROGRESS),
        ObsEntry("tip_y", "blade tip y from the start of the line", "m", _PROGRESS),
        ObsEntry("tip_z", "blade tip height above the skin (negative inside)", "m", _NEAR),
        ObsEntry("to_line_x", "nearest point of the line minus tip, x", "m", _NEAR),
        ObsEntry("to_line_y", "nearest point of the line minus tip, y", "m", _NEAR),
        ObsEntry("tangent_x", "line direction at the nearest point, x", "1", "1"),
        ObsEntry("tangent_y", "line direction at the nearest point, y", "1", "1"),
        ObsEntry("ahead_x", f"point {_OBS_AHEAD * 1000:g} mm further along the line minus tip, x", "m", _NEAR),
        ObsEntry("ahead_y", f"point {_OBS_AHEAD * 1000:g} mm further along the line minus tip, y", "m", _NEAR),
        ObsEntry("to_end_x", "end of the line minus tip, x", "m", _PROGRESS),
        ObsEntry("to_end_y", "end of the line minus tip, y", "m", _PROGRESS),
        ObsEntry("depth", "blade depth below the skin", "m", _DEPTH),
        ObsEntry("depth_to_band", "depth minus the middle of the depth band", "m", _DEPTH),
        ObsEntry("coverage", "fraction of the line cut so far", "1", "1"),
        ObsEntry("progress", "arc length of the nearest point over the line's length", "1", "1"),
        ObsEntry("clearance", "blade's distance to the critical layer (capped)", "m",
                 f"CLEARANCE_RANGE ({CLEARANCE_RANGE * 1000:g} mm)"),
    )
    position_goal = False
    instrument_body = "scalpel"
    expert = staticmethod(experts.follow_line)
    #: the expert aims, and the reference's next waypoint lies, this far (m) ahead along the line
    reference_lookahead = 0.003
    damage_to_reward_units = 1e3  # length of bad cut: m -> mm
    clearance_range = CLEARANCE_RANGE

    def __init__(self, spec: IncisionSpec) -> None:
        super().__init__(spec)
        p = spec.params
        self.half_xy = np.array(p.tissue_size_mm) * MM / 2
        self._half_xy_floats = self.half_xy.tolist()
        self.max_step = p.max_step_mm * MM
        self.depth_step = p.max_depth_step_mm * MM
        self.band = (p.depth_band_mm[0] * MM, p.depth_band_mm[1] * MM)
        self.band_mid = sum(self.band) / 2
        self.critical_depth = p.critical_depth_mm[0] * MM
        self.lateral_tolerance = p.lateral_tolerance_mm * MM
        self.max_deviation = p.max_deviation_mm * MM
        self.curve = np.zeros((_CURVE_POINTS, 2))
        self._curve_list = self.curve.tolist()
        self.cut = np.zeros(_CURVE_POINTS, dtype=bool)
        self.length = 1.0
        self._arc_list = [0.0]
        self._window: list[tuple[float, int]] = []  # (distance, segment), nearest first
        self._window_centre = (math.inf, math.inf)
        self.coverage = 0.0
        #: the last step's (or reset's) blade depth and projection on the line (distance, arc
        #: length, nearest point, tangent, as :meth:`_project` gives them), for the expert
        self.last_depth = 0.0
        self.last_projection: tuple[float, float, tuple[float, float], tuple[float, float]] = (
            math.inf, 0.0, (0.0, 0.0), (1.0, 0.0))
        if self.material is not None:
            #: the blade pressed into the skin (puncture, then friction; a blade cuts sideways
            #: instead of meeting lateral springs)
            self._contact = tissue.ShaftContact(self.material, lateral=False)
        #: the groove: the deepest cut (m) at each sample of the line (elastic tissue), kept for
        #: the episode: a cut stays cut
        self.cut_depth = np.zeros(_CURVE_POINTS)
        #: rendered worlds: the groove depths last drawn (None: nothing drawn for this patient)
        self._drawn_cut: np.ndarray | None = None

    def attach(self, world) -> None:
        super().attach(world)
        self.tool = FreeTool(world, self.instrument_body, "instruments/scalpel.urdf", (0.0, 0.0, 0.01),
                             (self.max_step, self.max_step, self.depth_step))

    def build(self, rng: np.random.Generator, difficulty: str) -> None:
        p = self.params
        scale = self.spec.difficulty_scale[difficulty]
        critical_depth = rng.uniform(*p.critical_depth_mm) * MM
        self.critical_depth = critical_depth
        length = rng.uniform(*p.incision_length_mm) * MM
        heading = rng.uniform(-math.pi, math.pi)
        along = np.array([math.cos(heading), math.sin(heading)])
        normal = np.array([-along[1], along[0]])
        centre_offset = p.line_centre_offset_mm * MM
        middle = rng.uniform(-centre_offset, centre_offset, 2) * scale
        start, end = middle - along * length / 2, middle + along * length / 2
        control = middle + normal * _CONTROL_PER_BOW * rng.uniform(-1, 1) * p.curvature_mm * MM * scale
        self.curve = _BEZIER[0] * start + _BEZIER[1] * control + _BEZIER[2] * end
        self._curve_list = self.curve.tolist()
        self._segments = np.diff(self.curve, axis=0)
        self._segment_norm2 = np.einsum("ij,ij->i", self._segments, self._segments)
        self._arc_list = [0.0, *np.cumsum(np.sqrt(self._segment_norm2)).tolist()]
        # the segments as plain floats (ax, ay, abx, aby, |ab|^2) for project_on_line's window
        self._segment_floats = list(zip(*self.curve[:-1].T.tolist(), *self._segments.T.tolist(),
                                        self._segment_norm2.tolist()))
        self._window: list[tuple[float, int]] = []  # (distance, segment), nearest first
        self._window_centre = (math.inf, math.inf)
        self.length = self._arc_list[-1]
        self.cut = np.zeros(_CURVE_POINTS, dtype=bool)
        self.cut_depth = np.zeros(_CURVE_POINTS)
        if self.material is not None:
            if not self.uses_fem:  # fem: a new body for the new patient, below
                self._contact.reset()
            self._drawn_cut = None
        self.coverage = 0.0
        height = rng.uniform(*p.start_height_mm) * MM
        start_offset = p.start_offset_mm * MM
        offset = rng.uniform(-start_offset, start_offset, 2) * scale
        tip = np.array([start[0] + offset[0], start[1] + offset[1], height])
        self.show(self._scene(tip))
        self.tool.set_tip(tip)
        self.start_tip = tip.copy()
        if self.uses_fem:  # the blade grips what it is in: the skin's friction and its cutting resistance
            self._contact = self.make_fem("tissue", self.material.friction + self.material.blade_force)

    def _scene(self, start_tip: np.ndarray) -> Scene:
        """The patient: skin, critical layer, the line drawn on the skin, the band to cut along it
        (in the volume only) and the start point."""
        p = self.params
        # every 8th curve point for the line (from the curve's plain floats), every 4th of the
        # reference path (at mid-band) for the band
        line = tuple((x, y, _LINE_HEIGHT) for x, y in self._curve_list[::8])
        band = tuple(map(vec3, self.reference_path()[::4]))
        return Scene((
            Part("tissue", "tissue", slab(0.0, self.half_xy, p.tissue_thickness_mm * MM),
                 anatomy.TISSUE_RGBA),
            Part("critical_layer", "critical", slab(-self.critical_depth, self.half_xy, LAYER_THICKNESS),
                 anatomy.NERVE_RGBA),
            Part("incision_line", "marker", Tube(line, _LINE_RADIUS), _LINE_RGBA),
            Part("incision", "target", Tube(band, (self.band[1] - self.band[0]) / 2),
                 channel="incision"),
            Part("start", "marker", Point(vec3(start_tip)), channel="start"),
        ), p)

    def reference_path(self) -> np.ndarray:
        """The incision line at the middle of the depth band."""
        return np.column_stack([self.curve, np.full(len(self.curve), -self.band_mid)])

    # ------------------------------------------------ planning interface
    def route(self) -> np.ndarray:
        """Sink the blade to mid-band where it starts (a sideways move above the band would cut
        badly), then follow the line."""
        sink = np.array([self.start_tip[0], self.start_tip[1], -self.band_mid])
        return np.vstack([self.start_tip, sink, self.reference_path()])

    def path_end(self) -> np.ndarray:
        return np.array([self.curve[-1, 0], self.curve[-1, 1], -self.band_mid])

    def check_poses(self, tips: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        tips = np.asarray(tips, dtype=float).reshape(-1, 3)
        saved = self.tool.tip.copy()
        clearance, reasons = np.empty(len(tips)), []
        try:
            for i, tip in enumerate(tips):
                self.tool.set_tip(tip)
                depth = max(0.0, self.signed_depth(tip))
                deviation = self._project(tip[:2])[0]
                clearance[i] = self.world.distance(self.tool.body, "critical_layer", CLEARANCE_RANGE)
                reasons.append(self._failure(tip, depth, deviation, clearance[i]))
        finally:
            self.tool.set_tip(saved)
        return clearance, reasons

    # --------------------------------------------------------------- motion
    def step(self, action: np.ndarray | None) -> Measurement:
        previous = self.tool.tip  # no copy needed: a move replaces the tip array, never writes into it
        if action is not None:
            self.tool.move(action)
        m, self.cut, self.coverage, self.last_projection = self._measure(previous)
        if self.material is not None and self.world.visuals:
            self._carve()
        self.last_depth = m.depth
        self.damage_total = m.damage_total
        return m

    def project_on_line(self, xy: np.ndarray) -> tuple[float, float, np.ndarray, np.ndarray]:
        """Distance from ``xy`` to the planned curve, arc length there, nearest point, tangent."""
        distance, s, nearest, tangent = self._project(xy)
        return distance, s, np.array(nearest), np.array(tangent)

    def _project(self, xy) -> tuple[float, float, tuple[float, float], tuple[float, float]]:
        """:meth:`project_on_line` with the nearest point and the tangent as plain floats.

        Always exactly the nearest segment (the first on ties) and the floats of a NumPy search
        over all 80 segments (:meth:`_full_projection`). Near the point of the last full search
        (less than ``_WINDOW_REACH`` away) a shortcut on plain floats gives the same answer: a
        segment's distance changes by at most the distance D moved, so segments are tried in
        order of their distance d at that search, and once d - D exceeds the best distance found
        (plus a slack far above the ~1e-17 m rounding) every segment left is strictly farther.
        """
        x, y = float(xy[0]), float(xy[1])
        cx, cy = self._window_centre
        moved = math.hypot(x - cx, y - cy)
        if not moved < _WINDOW_REACH:  # also NaN
            return self._full_projection(xy, x, y)
        segments = self._segment_floats
        best = best_d = math.inf
        i = len(segments)
        for d_then, j in self._window:
            if d_then - moved > best_d + _WINDOW_SLACK:
                break
            ax, ay, abx, aby, norm2 = segments[j]
            # the same operations, in the same order, as the NumPy search (a 2-term einsum
            # sums x0 y0 + x1 y1; ndarray.clip keeps t in [0, 1] the same way)
            t = ((x - ax) * abx + (y - ay) * aby) / norm2
            t = 0.0 if t < 0.0 else 1.0 if t > 1.0 else t
            nx, ny = ax + t * abx, ay + t * aby
            ox, oy = nx - x, ny - y
            dist2 = ox * ox + oy * oy
            if dist2 < best or (dist2 == best and j < i):  # argmin: the first of equal ones
                best, best_d, i, best_t, nearest = dist2, math.sqrt(dist2), j, t, (nx, ny)
        ax, ay, abx, aby, norm2 = segments[i]
        arc = self._arc_list
        s = arc[i] + best_t * (arc[i + 1] - arc[i])
        root = math.sqrt(norm2)
        return best_d, s, nearest, (abx / root, aby / root)

    def _full_projection(self, xy, x: float, y: float) -> tuple[float, float, tuple[float, float], tuple[float, float]]:
        """The projection over every segment (NumPy); it re-centres the shortcut's window on
        ``xy``: every segment's distance there, nearest first."""
        xy = np.asarray(xy, dtype=float)
        a = self.curve[:-1]
        ab = self._segments
        # fast_einsum / fast_clip: np.einsum and ndarray.clip without their dispatch (same bits)
        t = fast_einsum("ij,ij->i", xy - a, ab) / self._segment_norm2
        fast_clip(t, 0.0, 1.0, out=t)
        nearest = a + t[:, None] * ab
        offsets = nearest - xy
        dist2 = fast_einsum("ij,ij->i", offsets, offsets)
        i = int(dist2.argmin())
        distance = math.sqrt(dist2[i])
        if math.isfinite(distance):
            order = dist2.argsort(kind="stable")
            self._window = list(zip(np.sqrt(dist2[order]).tolist(), order.tolist()))
            self._window_centre = (x, y)
        s = self._arc_list[i] + float(t[i]) * (self._arc_list[i + 1] - self._arc_list[i])
        return distance, s, tuple(nearest[i].tolist()), tuple((ab[i] / math.sqrt(self._segment_norm2[i])).tolist())

    def signed_depth(self, tip: np.ndarray) -> float:
        """Depth of the blade point below the tissue surface (negative above it), by a ray test."""
        # beside the blade, so the ray meets the tissue, not the blade (plain floats: PyBullet
        # reads them faster than NumPy scalars)
        x, y = float(tip[0]), float(tip[1]) + 0.002
        hit = self.world.ray((x, y, 0.1), (x, y, -0.1))
        surface = hit.position[2] if hit is not None and hit.body == "tissue" else -math.inf
        return surface - float(tip[2])

    def _failure(self, tip: np.ndarray, depth: float, deviation: float, clearance: float) -> str | None:
        if clearance <= 0.0:
            return "critical_structure"
        if depth > 0.0 and deviation > self.max_deviation:
            return "off_path"
        half_x, half_y = self._half_xy_floats
        if abs(tip[0]) > half_x or abs(tip[1]) > half_y or tip[2] > 0.05:
            return "workspace"
        return None

    def measure(self) -> Measurement:
        """The measurement of the pose now, as if the blade had not moved (the tissue's state is
        put back afterwards)."""
        if self.material is None:
            return self._measure(self.tool.tip)[0]
        cut_depth = self.cut_depth.copy()
        try:
            with self.tissue_kept():
                return self._measure(self.tool.tip)[0]
        finally:
            self.cut_depth = cut_depth

    def _measure(self, previous: np.ndarray) -> tuple[
            Measurement, np.ndarray, float, tuple[float, float, tuple[float, float], tuple[float, float]]]:
        """The measurement after a move from the tip ``previous``, the line's cut samples and
        coverage after it, and the blade's projection on the line (as :meth:`_project`)."""
        tip_array = self.tool.tip
        # plain floats: the same arithmetic as on the arrays, without NumPy's per-call cost
        tip = tip_array.tolist()
        xy = tip[:2]
        signed_depth = self.signed_depth(tip)
        depth = max(0.0, signed_depth)
        projection = deviation, s, nearest, tangent = self._project(xy)
        in_band = self.band[0] <= depth <= self.band[1]
        cut = self.cut
        if in_band and deviation <= self.lateral_tolerance:
            offsets = self.curve - xy
            cut = cut | (fast_einsum("ij,ij->i", offsets, offsets) <= self.lateral_tolerance**2)
        # the same count as at the step that last changed the cut samples
        coverage = self.coverage if cut is self.cut else int(np.count_nonzero(cut)) / _CURVE_POINTS
        damage = 0.0
        if depth > 0.0 and (not in_band or deviation > self.lateral_tolerance):
            damage = math.hypot(xy[0] - previous[0], xy[1] - previous[1])
        clearance = self.world.distance(self.tool.body, "critical_layer", CLEARANCE_RANGE)
        force, critical = None, 0.0
        if self.material is not None:
            force, critical = self._load(tip, previous, depth, deviation, clearance)
        # "distance" to the goal: the part of the line still to cut, plus how far the blade is
        # from cutting it (off the line, or off mid-band); tracing above the surface earns nothing
        # (off the tissue the ray finds no surface: measure from its plane, z = 0, so the
        # distance and the reward stay finite on that failing step)
        level = signed_depth if math.isfinite(signed_depth) else -tip[2]
        distance = self.length * (1.0 - coverage) + deviation + abs(level - self.band_mid)
        end_x, end_y = self._curve_list[-1]
        end_error = math.hypot(tip[0] - end_x, tip[1] - end_y)

        failure = self._failure(tip, depth, deviation, clearance)
        if force is not None:
            if failure == "critical_structure":  # the blade cut into the vessels below
                failure = "bleeding"
            elif failure is None and tissue.norm(force) > self.max_force:
                failure = "excessive_force"
        success = (
            failure is None
            and coverage >= self.params.coverage_required
            and end_error <= self.tolerance
        )
        m = Measurement(
            tip=tip_array,
            tip_orientation=self._orientation(),
            state=self._state(tip, s, nearest, tangent, depth, coverage, clearance, force),
            goal=None,
            distance=distance,
            potential=potential(distance, self.progress_scale),
            clearance=clearance,
            depth=depth,
            damage_increment=damage,
            damage_total=self.damage_total + damage,
            success=success,
            failure_reason=failure,
            force=force,
            critical_force=critical,
            critical_contact=clearance <= 0.0,
        )
        return m, cut, coverage, projection

    def _carve(self) -> None:
        """Rendered worlds: draw the skin with the groove cut into it (its depth profile), the cut
        part of the line as the groove's dark floor and the rest of the line on the skin. The skin
        is a static grid with a hole along the line, filled by a band that is redrawn as the
        groove deepens; the scene's own slab and line stay for the queries, hidden from the camera."""
        world = self.world
        if self._drawn_cut is None:  # a new patient
            world.hide("tissue")
            world.hide("incision_line")
            n = _SKIN_CELLS + 1
            spacing = 2 * float(self.half_xy.max()) / _SKIN_CELLS
            xs, ys = np.meshgrid(*(np.linspace(-h, h, n) for h in self.half_xy), indexing="ij")
            grid = np.column_stack([xs.ravel(), ys.ravel()])
            distances = np.linalg.norm(grid[:, None, :] - self.curve[None], axis=2)
            nearest = distances.argmin(axis=1)
            # the band spans the line between its ends: no hole where a grid cell could reach past them
            margin = math.ceil(1.5 * spacing / (self.length / (_CURVE_POINTS - 1)))
            hole = (distances.min(axis=1) <= self.lateral_tolerance + spacing / 2) \
                & (nearest >= margin) & (nearest <= _CURVE_POINTS - 1 - margin)
            world.add_visual_mesh("skin", *anatomy.slab_mesh(self.half_xy, 0.0, self.params.tissue_thickness_mm * MM,
                                                             _SKIN_CELLS, hole), anatomy.TISSUE_RGBA)
            reach = self.lateral_tolerance + 2 * spacing  # the band covers the hole's ragged edge
            wall = self.lateral_tolerance  # the groove is cut this far either side of the line
            self._band_offsets = np.array([-reach, -wall, -0.99 * wall, 0.0, 0.99 * wall, wall, reach])
            self._band_inside = np.abs(self._band_offsets) < wall
        elif np.array_equal(self._drawn_cut, self.cut_depth):
            return
        # the band runs through every other sample of the line, each as deep as its neighbours' cut
        depth = self.cut_depth
        rows = depth[::_BAND_EVERY].copy()
        between = depth[1::_BAND_EVERY]
        rows[:-1] = np.maximum(rows[:-1], between)
        rows[1:] = np.maximum(rows[1:], between)
        heights = np.where(self._band_inside[None, :], -rows[:, None], 0.0)
        heights[[0, -1]] = 0.0  # the groove's end walls
        world.add_visual_mesh("skin_band", *anatomy.band_mesh(self.curve[::_BAND_EVERY], self._band_offsets, heights),
                              anatomy.TISSUE_RGBA)
        cut = self.cut_depth > 0
        line = (-_LINE_RADIUS, _LINE_RADIUS)
        for name, keep, lift, rgba in (("line", ~cut, 0.0, _LINE_RGBA), ("groove", cut, -self.cut_depth, _GROOVE_RGBA)):
            if world.has(name):
                world.remove(name)
            if np.count_nonzero(keep[:-1] & keep[1:]):  # some segment to draw
                surface = np.broadcast_to(np.asarray(lift)[..., None] + _DRAWN_LIFT, (_CURVE_POINTS, 2))
                world.add_visual_mesh(name, *anatomy.band_mesh(self.curve, line, surface, keep), rgba)
        self._drawn_cut = self.cut_depth.copy()

    def _load(self, tip: list[float], previous: np.ndarray, depth: float, deviation: float,
              clearance: float) -> tuple[tuple[float, float, float], float]:
        """Elastic or fem tissue: the force on the blade (pressing in, cutting along) and on the
        critical layer; deepens the groove where the blade cuts. With fem tissue the engine
        gives it all (the blade grips the skin it is in and drags it until it cuts free); the
        critical layer is not meshed apart, so no force of its own (reaching it is bleeding)."""
        m = self.material
        x, y, z = tip
        px, py, pz = previous.tolist()
        rate = CONTROL_RATE_HZ
        pressed = self._contact.update(tip, _DOWN, depth, pz - z)
        if self.fem is not None:
            cutting = below = tissue.ZERO
        else:
            cutting = tissue.blade_force(m, depth, ((x - px) * rate, (y - py) * rate, 0.0)) \
                if self._contact.punctured else tissue.ZERO
            below = tissue.critical_force(m, -clearance, _UP)
        if self._contact.punctured and deviation <= self.lateral_tolerance:
            offsets = self.curve - (x, y)
            near = fast_einsum("ij,ij->i", offsets, offsets) <= self.lateral_tolerance**2
            np.maximum(self.cut_depth, np.where(near, depth, 0.0), out=self.cut_depth)
        force = (pressed[0] + cutting[0] + below[0], pressed[1] + cutting[1] + below[1],
                 pressed[2] + cutting[2] + below[2])
        return force, tissue.norm(below)

    def _state(self, tip: list[float], s: float, nearest: tuple[float, float], tangent: tuple[float, float],
               depth: float, coverage: float, clearance: float,
               force: tuple[float, float, float] | None = None) -> np.ndarray:
        curve = self._curve_list  # the curve's points as plain floats
        # the first curve sample at or beyond _OBS_AHEAD further along
        ahead = curve[min(bisect_left(self._arc_list, s + _OBS_AHEAD), _CURVE_POINTS - 1)]
        start, end = curve[0], curve[-1]
        scale = self.progress_scale
        return np.array(
            [
                (tip[0] - start[0]) / scale, (tip[1] - start[1]) / scale, tip[2] / _NEAR_SCALE,
                (nearest[0] - tip[0]) / _NEAR_SCALE, (nearest[1] - tip[1]) / _NEAR_SCALE,
                tangent[0], tangent[1],
                (ahead[0] - tip[0]) / _NEAR_SCALE, (ahead[1] - tip[1]) / _NEAR_SCALE,
                (end[0] - tip[0]) / scale, (end[1] - tip[1]) / scale,
                depth / _DEPTH_SCALE, (depth - self.band_mid) / _DEPTH_SCALE,
                coverage, s / self.length, clearance / CLEARANCE_RANGE,
                *self.force_state(force),
            ],
            dtype=np.float32,
        )
