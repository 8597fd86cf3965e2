"""Reference-path strategies: where the tool tip's reference path comes from (the task's straight
route, the planner or the path predictor), and what follows from that choice (the progress
potential and the scripted expert). The env chooses one when it is built."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from surgsim.errors import EnvError
from surgsim.planning.planner import PlanningError, plan
from surgsim.planning.volume import preop_volume
from surgsim.tasks.base import Measurement, Task, potential
from surgsim.tasks.experts import pursue
from surgsim.tasks.spec import TaskSpec

#: the names of the strategies, as the env's ``reference`` argument and a spec's ``reference``
REFERENCES = ("straight", "planner", "predictor")


class StraightReference:
    """The task's own simple route; progress and the expert are the task's own."""

    name = "straight"

    def make(self, task: Task) -> tuple[np.ndarray, str]:
        """The current patient's reference path (N, 3) m, and the name of what made it."""
        return np.asarray(task.reference_path(), dtype=float), "straight"

    def potential(self, m: Measurement, to_go: float, scale: float) -> float:
        """The progress potential, given the distance ``to_go`` (m) still to go along the path."""
        return m.potential

    def expert_action(self, task: Task, ahead: Callable[[], np.ndarray]) -> np.ndarray:
        """The scripted expert's unit action; ``ahead()`` gives the next reference waypoint
        (called only by strategies that follow the path: the task's own expert does not)."""
        return task.expert(task)


class _PathReference(StraightReference):
    """A path that progress and the expert follow: the potential is minus the distance still to
    go along it, and the expert pursues the waypoint one lookahead ahead of the tip, shifted by
    how far the tissue has carried the target (closed loop on intra-operative imaging)."""

    def potential(self, m: Measurement, to_go: float, scale: float) -> float:
        return potential(to_go, scale)

    def expert_action(self, task: Task, ahead: Callable[[], np.ndarray]) -> np.ndarray:
        return pursue(task, ahead() + task.target_shift)


class PlannedReference(_PathReference):
    """Planned at every reset (:func:`surgsim.planning.plan`), collision-checked; the straight
    route, with a warning, when the planner finds no path for this patient."""

    name = "planner"

    def make(self, task: Task) -> tuple[np.ndarray, str]:
        try:
            return plan(task).tips, self.name
        except PlanningError as exc:
            warnings.warn(f"{task.spec.name}: planner failed, using the straight reference: {exc}",
                          RuntimeWarning, stacklevel=3)
            return super().make(task)


class PredictedReference(_PathReference):
    """Predicted by a path-predictor checkpoint from the pre-operative volume."""

    name = "predictor"

    def __init__(self, checkpoint: str | Path, spec: TaskSpec) -> None:
        from surgsim.predictor import PathPredictor

        self.predictor = PathPredictor.load(checkpoint, device="cpu", task=spec.task)
        config = self.predictor.config
        if spec.volume is None or spec.volume.resolution != config.resolution:
            got = "no volume block" if spec.volume is None else f"volume resolution {spec.volume.resolution}"
            raise EnvError(f"predictor {checkpoint}: trained on {config.resolution}^3 volumes; the spec "
                           f"{spec.name} has {got}")

    def make(self, task: Task) -> tuple[np.ndarray, str]:
        volume = preop_volume(task)
        if list(volume.channels) != list(self.predictor.config.channels):  # same count, other meaning
            raise EnvError(f"the predictor reads channels {self.predictor.config.channels}; this "
                           f"patient's volume has {list(volume.channels)}")
        return self.predictor.predict(volume.data, task.start_vector()), self.name


def reference_strategy(name: str, spec: TaskSpec, predictor: str | Path | None = None) -> StraightReference:
    """The strategy called ``name``; ``predictor`` (a checkpoint path) goes with ``"predictor"`` only."""
    if name not in REFERENCES:
        raise EnvError(f"reference={name!r} is not valid; expected one of {list(REFERENCES)}")
    if (predictor is not None) != (name == "predictor"):
        raise EnvError(
            "reference='predictor' needs predictor=<checkpoint path>, and predictor= is used only "
            f"with it; got reference={name!r}, predictor={predictor!r}"
        )
    if name == "predictor":
        return PredictedReference(predictor, spec)
    return PlannedReference() if name == "planner" else StraightReference()
