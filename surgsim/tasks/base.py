"""The interface every task implements; the env joins a Task to a World."""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import numpy as np

from surgsim.sim import Camera, World
from surgsim.tasks.spec import TaskSpec

MM = 1e-3


@dataclass
class Measurement:
    """What the task reads off the world after a move (SI units)."""

    tip: np.ndarray
    distance: float
    potential: float
    clearance: float
    depth: float
    damage_increment: float
    success: bool
    failure_reason: str | None


class Task(ABC):
    """Scenario sampling, instrument motion, measurement, observation and a scripted expert.

    Tasks never call PyBullet themselves: they go through the World, instruments and camera.
    """

    #: number of action degrees of freedom
    action_dim: int
    #: length of the flat state observation
    obs_dim: int
    #: True when the goal is a position (HER's achieved / desired goal)
    position_goal: bool = True
    #: factor from the SI damage increment to the unit the damage weight is given in
    damage_to_reward_units: float = 1.0
    #: body name of the instrument, for its pose in ``info``
    instrument_body: str

    def __init__(self, spec: TaskSpec) -> None:
        self.spec = spec
        self.params = spec.params
        self.tolerance = spec.tolerance_mm * MM
        self.progress_scale = spec.progress_scale_mm * MM
        self.safety_margin = spec.safety_margin_mm * MM
        c = spec.camera
        self.camera = Camera(c.eye, c.target, c.up, c.fov_deg, c.near, c.far)
        self.world: World | None = None
        self.damage_total = 0.0

    def attach(self, world: World) -> None:
        """Create the bodies that live for the whole episode series (the instrument)."""
        self.world = world

    @abstractmethod
    def build(self, rng: np.random.Generator, difficulty: str) -> None:
        """Draw a new patient from ``rng`` and build it; harder difficulties widen the ranges."""

    @abstractmethod
    def apply(self, action: np.ndarray) -> None:
        """Move the instrument by a clipped continuous action in [-1, 1]^action_dim."""

    @abstractmethod
    def measure(self) -> Measurement:
        """Read distances, clearance, depth and damage off the world after the move."""

    @abstractmethod
    def observation(self, m: Measurement) -> np.ndarray:
        """Flat float32 state vector, roughly in [-1, 1]."""

    def goal(self) -> np.ndarray:
        """Desired goal position (m) of a position-goal task; the achieved goal is the tip."""
        raise NotImplementedError(f"{type(self).__name__} has no position goal")

    @abstractmethod
    def reference_path(self) -> np.ndarray:
        """The safe reference path of the tool tip for this patient, (N, 3) in metres.

        Recorded into sessions so that the scorer can measure deviation from it.
        """

    @abstractmethod
    def expert_action(self) -> np.ndarray:
        """A scripted expert's continuous action in [-1, 1] that uses good technique."""


def potential(distance: float, scale: float) -> float:
    return -distance / scale
