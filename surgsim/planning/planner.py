"""The reference path planner: a safe, short tool-tip path from the start pose to the target.

The search runs in the instrument's own configuration space. For the trocar tool
(SurgicalPath: yaw, pitch, insertion) the last stretch is fixed, since a shaft pivoting about
the port reaches the target only along the straight port-target line; the freedom is how the
tool turns onto that line. The planner searches paths

    start -> retract along the start line to depth h_r -> turn (yaw, pitch, insertion linearly)
    onto the target line at depth h_b -> advance along the line to the target

over a grid of (h_r, h_b), scoring each by the tip's path length plus a penalty for every
millimetre of shaft clearance below the task's safety margin while turning; turns whose shaft
would sweep through the organ (tissue damage) or touch a critical structure are excluded.
Clearances come from the analytic geometry (:mod:`surgsim.planning.geometry`, thousands of
shaft poses in a few milliseconds); the chosen path is then re-checked pose by pose with the
env's own PyBullet queries (``task.check_poses``), falling back to the next best candidate.

Free tools (NeedleReach, Incision) move their tip directly and face no obstacle between the
start and their task's route (``task.route()``), so their plan is that route, densified and
checked the same way. Every plan is deterministic for a given scenario.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from surgsim.planning import geometry as geo
from surgsim.planning.paths import cumulative_length, densify
from surgsim.scene import Ellipsoid
from surgsim.tasks.base import MM, Task

#: penalty (m of path length) per metre of turning clearance below the safety margin
CLEARANCE_WEIGHT = 10.0
#: the turn must end this far (m) above where the target line enters the organ
ORGAN_MARGIN = 2.0 * MM
#: candidates re-checked in PyBullet before giving up
MAX_CHECKED = 5
_RETRACT_LEVELS = 4
_VIA_LEVELS = 10
#: candidate turns whose clearance is computed together (shortest first; see _plan_trocar)
_CANDIDATE_CHUNK = 2


class PlanningError(RuntimeError):
    """No safe path exists for this scenario (or none was found); the message says why."""


@dataclass(frozen=True)
class Plan:
    """A planned path: ``configs`` (N, dof) in the task's configuration coordinates, the tip
    positions ``tips`` (N, 3) m, and PyBullet's clearance (N,) m of the instrument at each."""

    configs: np.ndarray
    tips: np.ndarray
    clearance: np.ndarray

    @property
    def min_clearance(self) -> float:
        return float(np.min(self.clearance))

    @property
    def length(self) -> float:
        """Length (m) of the tip's path."""
        return float(cumulative_length(self.tips)[-1])


def plan(task: Task) -> Plan:
    """Plan the current scenario of ``task`` (built by ``env.reset``); raises :class:`PlanningError`."""
    from surgsim.sim.instruments import TrocarTool

    if isinstance(task.tool, TrocarTool):
        return _plan_trocar(task)
    return _plan_free(task)


# ------------------------------------------------------------------ free tools
def _plan_free(task: Task) -> Plan:
    tips = densify(task.route(), float(np.min(task.tool.config_steps)))
    clearance, reasons = task.check_poses(tips)
    _raise_on_failure(tips, reasons, "the route from the start")
    return Plan(task.tool.tip_to_config(tips), tips, clearance)


def _raise_on_failure(tips: np.ndarray, reasons: list[str | None], what: str) -> None:
    bad = next((i for i, r in enumerate(reasons) if r is not None), None)
    if bad is not None:
        raise PlanningError(
            f"{what} fails the env's check: {reasons[bad]} at tip "
            f"{np.round(tips[bad] / MM, 1).tolist()} mm (pose {bad} of {len(tips)})"
        )


# ------------------------------------------------------------------ trocar tool
def _segment(a: np.ndarray, b: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """Configurations from ``a`` (excluded) to ``b`` (included), at most half a step apart."""
    n = max(1, int(math.ceil(2.0 * float(np.max(np.abs(b - a) / steps)))))
    return a + np.linspace(0.0, 1.0, n + 1)[1:, None] * (b - a)


def _entry_depth(port: np.ndarray, organ: Ellipsoid, direction: np.ndarray, limit: float) -> float:
    """Insertion (m) at which the line port + s * direction first enters the organ (``limit`` if never)."""
    radii = np.array(organ.radii)
    p = (port - np.array(organ.centre)) / radii
    d = direction / radii
    a, b, c = d @ d, 2.0 * p @ d, p @ p - 1.0
    if c <= 0.0:  # the port itself is inside the organ
        return 0.0
    disc = b * b - 4 * a * c
    if disc < 0:
        return limit
    s = (-b - math.sqrt(disc)) / (2 * a)
    return min(limit, s) if s > 0 else limit


def _plan_trocar(task: Task) -> Plan:
    """The scene's port, target (its centre), organ (its one tissue part) and critical tubes."""
    tool, scene = task.tool, task.scene
    port, target = np.array(scene.only("port").shape.centre), np.array(scene.only("target").shape.centre)
    organ = scene.only("tissue").shape
    steps = tool.config_steps
    start = np.asarray(task.start_config, dtype=float)
    goal = tool.tip_to_config(target)[0]
    if not tool.within_limits(goal[None])[0]:
        raise PlanningError(
            f"the target {np.round(target / MM, 1).tolist()} mm is out of the tool's reach from "
            f"the port: yaw {math.degrees(goal[0]):.1f} deg, pitch {math.degrees(goal[1]):.1f} deg, "
            f"insertion {goal[2] / MM:.1f} mm (limits +-{math.degrees(tool.angle_limit):.0f} deg, "
            f"{tool.insertion_min / MM:.0f}-{tool.insertion_max / MM:.0f} mm)"
        )
    tubes = geo.Tubes.from_parts(scene.with_role("critical"))
    shaft = geo.Shaft(*tool.shaft)

    def shaft_clearance(tips: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The shaft's clearance (and nearest tube) with its tip at each of ``tips`` (N, 3),
        the shaft running back from there through the port."""
        back = port - tips
        back /= np.linalg.norm(back, axis=1, keepdims=True)
        return shaft.clearance(tips, back, tubes, task.clearance_range)

    # the last stretch is forced: the shaft along the port-target line
    final, owner = shaft_clearance(tool.config_to_tip(goal[None]))
    if final[0] <= 0.0:
        raise PlanningError(
            f"no path: the straight shaft from the port to the target crosses {tubes.names[owner[0]]} "
            f"(clearance {final[0] / MM:.1f} mm); a trocar tool reaches the target only along that line"
        )
    direction = (target - port) / goal[2]
    # a follower cuts the corner onto the line by up to one lookahead: keep that outside the organ too
    margin = ORGAN_MARGIN + task.reference_lookahead
    entry = _entry_depth(port, organ, direction, goal[2])
    via_max = max(tool.insertion_min, min(entry - margin, goal[2]))
    retracts = np.linspace(start[2], tool.insertion_min, _RETRACT_LEVELS)
    vias = np.linspace(via_max, tool.insertion_min, _VIA_LEVELS)
    h_r, h_b = (v.ravel() for v in np.meshgrid(retracts, vias, indexing="ij"))
    # every turn, (yaw, pitch, insertion) linear from (start angles, h_r) to (goal angles, h_b),
    # sampled at the same n points (at most half a step apart)
    a = np.column_stack([np.full_like(h_r, start[0]), np.full_like(h_r, start[1]), h_r])
    b = np.column_stack([np.full_like(h_b, goal[0]), np.full_like(h_b, goal[1]), h_b])
    n = max(2, int(math.ceil(2.0 * float(np.max(np.abs(b - a) / steps)))) + 1)
    u = np.linspace(0.0, 1.0, n)[None, :, None]
    turns = a[:, None] + u * (b - a)[:, None]  # (M, n, 3)
    flat = turns.reshape(-1, 3)
    turn_tips = tool.config_to_tip(flat)
    in_organ = geo.segment_hits_ellipsoid(port, turn_tips, np.array(organ.centre), np.array(organ.radii))
    in_organ = in_organ.reshape(len(a), n).any(axis=1)
    turn_length = np.linalg.norm(np.diff(turn_tips.reshape(len(a), n, 3), axis=1), axis=2).sum(axis=1)
    length = (start[2] - h_r) + turn_length + (goal[2] - h_b)
    worst = np.full(len(a), np.nan)  # each turn's least clearance, computed only when needed

    def score(k: int) -> float:
        return length[k] + CLEARANCE_WEIGHT * max(0.0, task.safety_margin - worst[k])

    def ranked():
        """The usable candidates (no organ, positive clearance) by (score, index), as a stable
        argsort of every score gives them, computing clearances lazily: a score is the length
        plus a penalty >= 0, so a candidate whose length already exceeds the best score found
        can wait (candidates are evaluated shortest first, _CANDIDATE_CHUNK at a time; a
        candidate's clearances do not depend on which others are evaluated with it)."""
        by_length = np.argsort(length, kind="stable")
        done, pending = 0, []  # pending: (score, index) of evaluated usable ones not yet yielded
        while True:
            best = min(pending) if pending else None
            if done < len(by_length):
                k_next = int(by_length[done])
                if best is None or (length[k_next], k_next) <= best:
                    ks = by_length[done : done + _CANDIDATE_CHUNK]
                    rows = (ks[:, None] * n + np.arange(n)).ravel()
                    clear = shaft_clearance(turn_tips[rows])[0]
                    worst[ks] = clear.reshape(len(ks), n).min(axis=1)
                    pending += [(score(k), k) for k in ks.tolist() if worst[k] > 0.0 and not in_organ[k]]
                    done += len(ks)
                    continue
            if best is None:
                return
            pending.remove(best)
            yield best[1]

    failures = []
    for k in ranked():
        corners = [start, a[k], b[k], goal]
        configs = _dedupe(np.vstack([start[None], *(_segment(p, q, steps) for p, q in zip(corners[:-1], corners[1:]))]))
        tips = tool.config_to_tip(configs)
        pb_clearance, reasons = task.check_poses(tips)
        bad = next((i for i, r in enumerate(reasons) if r is not None), None)
        if bad is None:
            return Plan(configs, tips, pb_clearance)
        failures.append(f"{reasons[bad]} at tip {np.round(tips[bad] / MM, 1).tolist()} mm")
        if len(failures) == MAX_CHECKED:
            break
    if not failures:
        raise PlanningError(
            "no collision-free way to turn the tool from its start direction onto the port-target "
            f"line above the organ (searched {len(a)} retract / turn depths): every turn "
            "sweeps the shaft through the organ or a critical structure"
        )
    raise PlanningError(
        f"the {len(failures)} best analytic candidates all fail PyBullet's check: " + "; ".join(failures)
    )


def _dedupe(configs: np.ndarray) -> np.ndarray:
    """Drop consecutive repeated configurations (zero-length retracts)."""
    keep = np.concatenate([[True], np.any(np.abs(np.diff(configs, axis=0)) > 1e-12, axis=1)])
    return configs[keep]
