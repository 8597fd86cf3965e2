"""NeedleReach: bring the free tool tip to a target point in the workspace."""

from __future__ import annotations

import math
from collections import Counter

import numpy as np

from surgsim.scene import Part, Point, Scene, Sphere, slab, vec3
from surgsim.sim import anatomy, tissue
from surgsim.sim.instruments import FreeTool
from surgsim.tasks import experts
from surgsim.tasks.base import MM, Measurement, ObsEntry, Task, potential
from surgsim.tasks.spec import NeedleReachSpec

_TARGET_RGBA = (0.1, 0.8, 0.2, 0.9)
_MAX_DRAWS = 1000
#: thickness (m) of the tissue slab under the workspace
SLAB_THICKNESS = 0.01


_AXES = "xyz"
#: the needle's shaft direction: it points down, into the tissue pad
_DOWN = (0.0, 0.0, -1.0)
_HALF = "workspace half-size on that axis"


class NeedleReachTask(Task):
    action_dim = 3
    OBSERVATION = (
        *(ObsEntry(f"tip_{a}", f"tip {a} from the workspace centre", "m", _HALF) for a in _AXES),
        *(ObsEntry(f"target_{a}", f"target {a} from the workspace centre", "m", _HALF) for a in _AXES),
        *(ObsEntry(f"to_target_{a}", f"target minus tip, {a}", "m", _HALF) for a in _AXES),
    )
    instrument_body = "tool"
    expert = staticmethod(experts.reach)

    def __init__(self, spec: NeedleReachSpec) -> None:
        super().__init__(spec)
        p = spec.params
        self.low = np.array(p.workspace_low)
        self.high = np.array(p.workspace_high)
        self.centre = (self.low + self.high) / 2
        self.half = (self.high - self.low) / 2
        self._low_floats, self._high_floats = self.low.tolist(), self.high.tolist()
        self._centre_floats, self._half_floats = self.centre.tolist(), self.half.tolist()
        self.max_step = p.max_step_mm * MM
        # one step moves up to a full step on every axis: pursue a point that far ahead
        self.reference_lookahead = self.max_step * math.sqrt(3.0)
        self.target = np.array(p.start)
        self.start_tip = np.array(p.start)
        self._reference = np.vstack([self.start_tip, self.target])  # until the first patient
        if self.material is not None:
            self._contact = tissue.ShaftContact(self.material)

    def attach(self, world) -> None:
        super().attach(world)
        self.tool = FreeTool(world, self.instrument_body, "instruments/free_tool.urdf", self.params.start,
                             np.full(3, self.max_step))

    def build(self, rng: np.random.Generator, difficulty: str) -> None:
        p = self.params
        scale = self.spec.difficulty_scale[difficulty]
        start = np.array(p.start)
        half = np.array(p.target_half_range_mm) * MM * scale
        rejected: Counter = Counter()
        for _ in range(_MAX_DRAWS):
            target = start + rng.uniform(-half, half)
            if not (np.all(target > self.low + self.tolerance) and np.all(target < self.high - self.tolerance)):
                rejected["target not tolerance_mm inside the workspace"] += 1
            elif np.linalg.norm(target - start) <= p.target_min_distance_tolerances * self.tolerance:
                rejected["target within target_min_distance_tolerances x tolerance_mm of the start"] += 1
            else:
                break
        else:
            raise self.infeasible(difficulty, _MAX_DRAWS, rejected)
        self.target = target
        self.show(Scene((
            Part("tissue", "tissue", slab(float(self.low[2]), self.half[:2], SLAB_THICKNESS),
                 anatomy.TISSUE_RGBA),
            Part("target", "target", Sphere(vec3(target), self.tolerance), _TARGET_RGBA, channel="target"),
            Part("start", "marker", Point(vec3(start)), channel="start"),
        ), p))
        self.tool.set_tip(start.copy())
        if self.uses_fem:
            self._contact = self.make_fem("tissue", self.material.friction)
        elif self.material is not None:
            self._contact.reset()
        self.start_tip = start
        self._reference = np.vstack([start, target])

    def reference_path(self) -> np.ndarray:
        """The straight line from the start to the target."""
        return self._reference

    # ------------------------------------------------ planning interface
    def path_end(self) -> np.ndarray:
        return self.target.copy()

    def check_poses(self, tips: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """No critical structures here (clearance is infinite); leaving the workspace fails."""
        tips = np.asarray(tips, dtype=float).reshape(-1, 3)
        outside = self.goal_failure(tips)
        return np.full(len(tips), math.inf), ["workspace" if o else None for o in outside]

    # --------------------------------------------------------------- motion
    def step(self, action: np.ndarray | None) -> Measurement:
        if action is None:
            return self.measure()
        before = self.tool.tip[2]
        self.tool.move(action)
        return self._measure(before - self.tool.tip[2])

    def measure(self) -> Measurement:
        """The measurement now (with elastic tissue: as if the needle had arrived here with no
        vertical move; the tissue's state is put back afterwards)."""
        if self.material is None:
            return self._measure(0.0)
        with self.tissue_kept():
            return self._measure(0.0)

    def _measure(self, advance: float) -> Measurement:
        """The measurement after the needle went ``advance`` (m) down; a needle damages nothing."""
        # on plain floats: the same arithmetic as on the arrays, without NumPy's per-call cost
        tip = self.tool.tip
        x, y, z = tip.tolist()
        tx, ty, tz = self.target.tolist()
        (cx, cy, cz), (hx, hy, hz) = self._centre_floats, self._half_floats
        (lx, ly, lz), (ux, uy, uz) = self._low_floats, self._high_floats
        dx, dy, dz = x - tx, y - ty, z - tz
        distance = math.sqrt(dx * dx + dy * dy + dz * dz)
        outside = x < lx or y < ly or z < lz or x > ux or y > uy or z > uz  # as goal_failure
        sx, sy, sz = (x - cx) / hx, (y - cy) / hy, (z - cz) / hz
        gx, gy, gz = (tx - cx) / hx, (ty - cy) / hy, (tz - cz) / hz
        force, failure = None, "workspace" if outside else None
        if self.material is not None:  # the needle points down into the pad below the workspace
            force = self._contact.update((x, y, z), _DOWN, lz - z, advance)
            if failure is None and tissue.norm(force) > self.max_force:
                failure = "excessive_force"
        return Measurement(
            tip=tip,
            tip_orientation=self._orientation(),
            state=np.array([sx, sy, sz, gx, gy, gz, gx - sx, gy - sy, gz - sz, *self.force_state(force)],
                           dtype=np.float32),
            goal=self.target,
            distance=distance,
            potential=potential(distance, self.progress_scale),
            clearance=math.inf,
            depth=0.0,
            damage_increment=0.0,
            damage_total=0.0,
            success=distance <= self.tolerance and failure is None,
            failure_reason=failure,
            force=force,
        )

    def goal_failure(self, achieved_goal: np.ndarray) -> np.ndarray:
        """Leaving the workspace, this task's only failure."""
        tips = np.asarray(achieved_goal)
        return np.any((tips < self.low) | (tips > self.high), axis=-1)
