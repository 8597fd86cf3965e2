"""The interface every task implements; the env joins a Task to a World."""

from __future__ import annotations

import contextlib
import copy
import math
from abc import ABC, abstractmethod
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Iterator

import numpy as np

from surgsim.errors import SurgsimError
from surgsim.scene import Scene
from surgsim.tasks.spec import TaskSpec, TissueSpec

if TYPE_CHECKING:  # PyBullet is imported when a task is built, not by `import surgsim`
    from surgsim.sim import World
    from surgsim.sim.tissue import Material
    from surgsim.sim.anatomy import SceneBodies
    from surgsim.sim.instruments import Instrument
    from surgsim.sim.fem_contact import FemToolContact

MM = 1e-3
#: steps per second of simulated time (the env's ``render_fps``): a move per step is a speed
CONTROL_RATE_HZ = 20
#: the world is cleared and rebuilt once this many bodies have been removed from it (PyBullet
#: keeps about 12 KB of each removed body: without this, memory grows at every reset)
_CLEAR_AFTER_REMOVALS = 256


class InfeasibleScenario(SurgsimError):
    """The spec's ranges leave (almost) no patient that meets the task's rules: the sampler gave
    up after its bounded number of draws instead of looping for ever."""


@dataclass(frozen=True)
class ObsEntry:
    """One entry of a task's flat state observation, documented as Gymnasium's own envs do."""

    name: str
    meaning: str
    #: unit of the quantity before it is divided by ``scale``
    unit: str
    #: what it is divided by, in words (a spec field, a named constant, or 1)
    scale: str


@dataclass(frozen=True)
class Measurement:
    """One state of a task, read off the world (SI units): everything the env's observation,
    reward and ``info`` need, so that nothing else crosses the env / task seam."""

    tip: np.ndarray
    #: the instrument's orientation (quaternion x, y, z, w)
    tip_orientation: np.ndarray
    #: the flat state observation (float32), entry by entry as the task's ``OBSERVATION``
    state: np.ndarray
    #: the desired goal position of a position-goal task, else None
    goal: np.ndarray | None
    #: distance to the goal, and the progress potential ``-distance / progress scale``
    distance: float
    potential: float
    clearance: float
    depth: float
    #: tissue damage of this step, and of the episode so far
    damage_increment: float
    damage_total: float
    success: bool
    failure_reason: str | None
    #: force of the tissue (and of any critical structure touched) on the tool (N, world frame);
    #: None with rigid tissue
    force: tuple[float, float, float] | None = None
    #: magnitude (N) of the contact force between the tool and critical structures, and whether
    #: the tool touches one (elastic tissue: a touch below the rupture force is not a failure)
    critical_force: float = 0.0
    critical_contact: bool = False


class Task(ABC):
    """Scenario sampling (the patient as a frozen :class:`~surgsim.scene.Scene`, :attr:`scene`),
    measurement, observation, success and failure rules; the instrument (:attr:`tool`) owns its
    motion and kinematics, an expert function (:attr:`expert`) the technique.

    The env drives a task through :meth:`reset` and :meth:`step`, which return a frozen
    :class:`Measurement`; the task keeps its episode's state (damage so far, what was cut) to
    itself. Tasks never call PyBullet themselves: they go through the World, instruments and camera.
    """

    #: number of action degrees of freedom
    action_dim: int
    #: the flat state observation, entry by entry (its length is the observation's)
    OBSERVATION: tuple[ObsEntry, ...]
    #: True when the goal is a position (HER's achieved / desired goal)
    position_goal: bool = True
    #: factor from the SI damage increment to the unit the damage weight is given in
    damage_to_reward_units: float = 1.0
    #: body name of the instrument, for its pose in ``info``
    instrument_body: str
    #: the scripted expert that uses good technique (:mod:`surgsim.tasks.experts`): task -> unit action
    expert: Callable[[Task], np.ndarray]
    #: names of the entries of :meth:`start_vector` (the predictor's start input)
    start_fields: tuple[str, ...] = ("tip_x", "tip_y", "tip_z")
    #: how far ahead (m) along a reference path the next reference waypoint lies
    reference_lookahead: float = 0.005
    #: failure reason :meth:`check_poses` gives a pose outside the instrument's joint limits
    UNREACHABLE = "unreachable"
    #: clearance queries look this far (m); anything farther reads as this value
    clearance_range: float = math.inf

    @classmethod
    def observation_entries(cls, spec: TaskSpec) -> tuple[ObsEntry, ...]:
        """The state observation's entries with ``spec``'s tissue: tissue with mechanics (elastic
        or fem) adds the tool force at the end."""
        if spec.tissue.model != "rigid":
            return cls.OBSERVATION + FORCE_OBSERVATION
        return cls.OBSERVATION

    @property
    def obs_dim(self) -> int:
        """Length of the flat state observation."""
        return len(self.OBSERVATION)

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.params = spec.params
        self.tolerance = spec.tolerance_mm * MM
        self.progress_scale = spec.progress_scale_mm * MM
        self.safety_margin = spec.safety_margin_mm * MM
        c = spec.camera
        from surgsim.sim import Camera

        self.camera = Camera(c.eye, c.target, c.up, c.fov_deg, c.near, c.far)
        self.world: World | None = None
        #: the instrument, created by :meth:`attach`
        self.tool: Instrument | None = None
        #: the current patient, drawn by :meth:`build`
        self.scene = Scene(())
        self._bodies: SceneBodies | None = None
        self.damage_total = 0.0
        #: the tip position (m) the current episode started from; set by :meth:`build`
        self.start_tip = np.zeros(3)
        #: the tissue's mechanical parameters (None: rigid tissue, geometry only)
        self.material: Material | None = None
        #: fem tissue: the tool in the patient's finite-element tissue (made with each patient)
        self.fem: FemToolContact | None = None
        if spec.tissue.model != "rigid":
            self.material = tissue_material(spec.tissue)
            self.OBSERVATION = self.observation_entries(spec)
            self.safe_force = spec.tissue.safe_force_n
            self.max_force = spec.tissue.max_force_n

    @property
    def uses_fem(self) -> bool:
        """Whether the tissue is the finite-element tier."""
        return self.spec.tissue.model == "fem"

    def make_fem(self, part: str, grip_per_length: float) -> FemToolContact:
        """fem tissue: mesh the current patient's tissue part ``part`` into a new finite-element
        body with the tool in it (the last patient's is closed); ``grip_per_length`` (N/m): how
        hard the tissue holds what is inside it per length (see :mod:`surgsim.sim.fem_contact`)."""
        from surgsim.sim.fem import SoftMaterial
        from surgsim.sim.fem_contact import CAPTURE_FRACTION, FemToolContact, tissue_body

        self.close()
        t = self.spec.tissue
        cell = t.fem_cell_mm * MM
        material = SoftMaterial(young_modulus=t.young_modulus_kpa * 1e3, poisson_ratio=t.fem_poisson_ratio)
        body = tissue_body(self.scene.part(part).shape, cell, material, 1.0 / CONTROL_RATE_HZ)
        self.fem = FemToolContact(body, t.puncture_force_n, grip_per_length, CAPTURE_FRACTION * cell)
        return self.fem

    @contextlib.contextmanager
    def tissue_kept(self) -> Iterator[None]:
        """While :meth:`measure` reads the state, the tissue does not change: the elastic
        contact's state is put back afterwards; the fem contact stands still meanwhile (it
        returns its last force without stepping)."""
        if self.fem is None:
            saved = copy.copy(self._contact)
            try:
                yield
            finally:
                self._contact = saved
            return
        self.fem.frozen = True
        try:
            yield
        finally:
            self.fem.frozen = False

    def close(self) -> None:
        """Release what the task holds outside the world (the finite-element tissue's client)."""
        if self.fem is not None:
            self.fem.body.close()
            self.fem = None

    def attach(self, world: World) -> None:
        """Create the bodies that live for the whole episode series (the instrument); called
        again whenever :meth:`reset` clears the world to free what removed bodies left behind."""
        from surgsim.sim.anatomy import SceneBodies

        self.world = world
        self._bodies = SceneBodies(world)

    def show(self, scene: Scene) -> None:
        """Make ``scene`` the current patient and build its bodies in the world."""
        self.scene = scene
        self._bodies.show(scene)

    @property
    def critical(self) -> tuple[str, ...]:
        """Body names of the patient's critical structures."""
        return self.scene.critical

    @abstractmethod
    def build(self, rng: np.random.Generator, difficulty: str) -> None:
        """Draw a new patient from ``rng`` and build it; harder difficulties widen the ranges."""

    def reset(self, rng: np.random.Generator, difficulty: str) -> Measurement:
        """Draw and build a new patient; the episode's first measurement.

        Once enough bodies have been removed from the world, it is cleared first and this task's
        bodies attached again (see ``_CLEAR_AFTER_REMOVALS``)."""
        if self.world.removed >= _CLEAR_AFTER_REMOVALS:
            self.world.clear()
            self.attach(self.world)
        self.build(rng, difficulty)
        self.damage_total = 0.0
        return self.step(None)

    def _orientation(self) -> np.ndarray:
        """The instrument's orientation now, for :attr:`Measurement.tip_orientation`."""
        return np.asarray(self.world.pose(self.instrument_body)[1])

    def infeasible(self, difficulty: str, draws: int, rejected: Counter) -> InfeasibleScenario:
        """The error for a sampler whose ``draws`` draws were all rejected, counting why."""
        why = "; ".join(f"{reason} ({n} draws)" for reason, n in rejected.most_common())
        return InfeasibleScenario(
            f"no feasible {self.spec.name} scenario in {draws} draws at difficulty {difficulty!r} "
            f"({self.spec.source}): {why}"
        )

    @abstractmethod
    def step(self, action: np.ndarray | None) -> Measurement:
        """Move the instrument by a clipped continuous action in [-1, 1]^action_dim (None: stay),
        add what the move did to the episode's state (damage, cut), and measure."""

    @abstractmethod
    def measure(self) -> Measurement:
        """The measurement of the instrument's pose now, as if it had not moved: no damage
        increment, and nothing stored (a query for tests and checks)."""

    @property
    def target_shift(self) -> np.ndarray:
        """How far (m) the target has moved from where the pre-operative anatomy puts it (the
        tissue's deformation carries it); the path-following expert corrects by it."""
        return np.zeros(3)

    def force_state(self, force: tuple[float, float, float] | None) -> list[float]:
        """The force entries of the state observation (none with rigid tissue)."""
        if force is None:
            return []
        s = self.safe_force
        return [force[0] / s, force[1] / s, force[2] / s]

    def goal_failure(self, achieved_goal: np.ndarray) -> np.ndarray:
        """Which achieved goals (..., 3) fail an episode whatever the patient, so that HER can
        recompute the failure penalty from the goals alone; none by default."""
        return np.zeros(np.shape(achieved_goal)[:-1], dtype=bool)

    @abstractmethod
    def reference_path(self) -> np.ndarray:
        """The task's simple ("straight") reference path of the tool tip, (N, 3) in metres.

        The env's ``reference="straight"``; the planner (``surgsim.planning``) gives a
        collision-checked one (SurgicalPath's spec asks for it by default).
        """

    # ------------------------------------------------ planning interface
    # The planner searches the instrument's configurations (``tool.tip_to_config`` and the
    # like) and the path checks replay them through the env's own queries.
    def start_vector(self) -> np.ndarray:
        """The episode's start pose as the path predictor reads it (see :attr:`start_fields`)."""
        return self.start_tip.copy()

    def route(self) -> np.ndarray:
        """Corner points (N, 3) of a free tool's planned path: the start tip, then the straight
        reference (the trocar tool's route is searched by the planner instead)."""
        reference = np.asarray(self.reference_path(), dtype=float)
        if np.linalg.norm(reference[0] - self.start_tip) <= 1e-9:
            return reference
        return np.vstack([self.start_tip, reference])

    @abstractmethod
    def path_end(self) -> np.ndarray:
        """Where a reference path of the tip ends (m): the target, or the end of the incision."""

    @abstractmethod
    def check_poses(self, tips: np.ndarray) -> tuple[np.ndarray, list[str | None]]:
        """Pose the instrument with its tip at each of ``tips`` (N, 3) in turn and read the env's
        own clearance (N,) and failure rule (a failure reason or None per pose).

        Poses outside the joint limits give :attr:`UNREACHABLE`. The instrument is put back
        where it was afterwards, so an episode in progress is not disturbed.
        """


#: the state observation's entries added by elastic tissue
FORCE_OBSERVATION = tuple(
    ObsEntry(f"tool_force_{a}", f"force of the tissue on the tool, {a}", "N", "tissue.safe_force_n (spec)")
    for a in "xyz"
)


def tissue_material(t: TissueSpec) -> Material:
    """The elastic model's parameters in SI units from the spec's ``tissue`` block."""
    from surgsim.sim.tissue import Material

    return Material(
        young_modulus=t.young_modulus_kpa * 1e3,
        poisson_ratio=t.poisson_ratio,
        stiffness_linear=t.stiffness_n_per_mm / MM,
        stiffness_quadratic=t.stiffness_n_per_mm2 / MM**2,
        puncture_force=t.puncture_force_n,
        friction=t.friction_n_per_mm / MM,
        cutting_force=t.cutting_force_n,
        drag_stiffness=t.drag_stiffness_n_per_mm / MM,
        lateral_stiffness=t.lateral_stiffness_n_per_mm2 / MM**2,
        lateral_yield=t.lateral_yield_mm * MM,
        blade_force=t.blade_force_n_per_mm / MM,
        blade_speed_factor=t.blade_speed_factor_s_per_m,
        critical_stiffness=t.critical_stiffness_n_per_mm / MM,
        rupture_force=t.rupture_force_n,
        load_radius=t.load_radius_mm * MM,
    )


def potential(distance: float, scale: float) -> float:
    return -distance / scale
