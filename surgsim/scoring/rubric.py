"""Rubrics: per task, which metrics count, how much, and what an expert's values look like.

A rubric is a YAML file::

    task: SurgicalPath            # the session meta "task" it grades ("generic": any)
    description: ...
    min_duration: 1.0             # s: shorter sessions are not gradable
    settings: {idle_speed: 0.005} # MetricSettings overrides (SI)
    levels: {expert: 75.0, intermediate: 50.0}   # composite score thresholds
    cap: 4.0                      # a metric loses all its points at `cap` expert SDs
    metrics:
      path_length: {weight: 1.0, center: 0.21, scale: 0.03, better: lower}

``center`` / ``scale`` describe the expert reference distribution (mean and SD, or median and
1.4826 x MAD when fitted robustly), in SI units. Every number must be finite. Comments at the
top say how it was made.
Default rubrics live in ``assets/rubrics/<task>.yaml``; ``generic.yaml`` grades the rest.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from surgsim._files import atomic_write_text
from surgsim._data import data_dir
from surgsim.errors import SurgsimError, validation_problem, yaml_problem
from surgsim.scoring.metrics import METRICS, MetricSettings

GENERIC = "generic"


class RubricError(SurgsimError):
    """A rubric file that cannot be used; the message names the file, field and value."""


#: every model refuses unknown fields, and infinite or NaN numbers (``cap: .inf`` grades nothing)
_STRICT = ConfigDict(extra="forbid", allow_inf_nan=False)


class MetricReference(BaseModel):
    """One metric's weight and expert reference distribution (SI units)."""

    model_config = _STRICT

    weight: float = Field(ge=0.0)
    center: float
    scale: float = Field(gt=0.0)
    better: Literal["lower", "higher", "both"]


class Levels(BaseModel):
    """Composite-score thresholds of the skill levels (novice below ``intermediate``)."""

    model_config = _STRICT

    expert: float = Field(default=75.0, ge=0.0, le=100.0)
    intermediate: float = Field(default=50.0, ge=0.0, le=100.0)

    @model_validator(mode="after")
    def _ordered(self) -> "Levels":
        if self.intermediate > self.expert:
            raise ValueError(f"levels.intermediate ({self.intermediate}) is above levels.expert ({self.expert})")
        return self

    def level(self, score: float) -> str:
        """``expert`` / ``intermediate`` / ``novice`` for a composite score."""
        if score >= self.expert:
            return "expert"
        return "intermediate" if score >= self.intermediate else "novice"


class Rubric(BaseModel):
    """Weights and expert references of the metrics that grade one task."""

    model_config = _STRICT

    task: str = Field(min_length=1)
    description: str = ""
    #: shorter sessions (s) are not gradable; fitted rubrics take half their fastest expert's time
    min_duration: float = Field(default=1.0, ge=0.0)
    settings: dict[str, float] = Field(default_factory=dict)
    levels: Levels = Field(default_factory=Levels)
    cap: float = Field(default=4.0, gt=0.0)
    metrics: dict[str, MetricReference]

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: dict[str, MetricReference]) -> dict[str, MetricReference]:
        unknown = sorted(set(value) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
        if not any(ref.weight > 0 for ref in value.values()):
            raise ValueError("needs at least one metric of weight > 0")
        return value

    @field_validator("settings")
    @classmethod
    def _known_settings(cls, value: dict[str, float]) -> dict[str, float]:
        known = set(MetricSettings.__dataclass_fields__)
        unknown = sorted(set(value) - known)
        if unknown:
            raise ValueError(f"unknown setting(s) {unknown}; known: {sorted(known)}")
        MetricSettings(**value)  # refuses values out of range
        return value

    def metric_settings(self) -> MetricSettings:
        """The metric thresholds this rubric grades with."""
        return MetricSettings(**self.settings)


def load_rubric(path: str | Path) -> Rubric:
    """Read and check a rubric YAML file; :class:`RubricError` names the file, field and value."""
    path = Path(path)
    if not path.is_file():
        raise RubricError(f"{path}: no such rubric file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RubricError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if not isinstance(data, dict):
        raise RubricError(f"{path}: expected a mapping with task and metrics, got {type(data).__name__}")
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        raise RubricError(f"{path}: {validation_problem(exc, '(top level)', field='field ')}") from None


def save_rubric(rubric: Rubric, path: str | Path, header: str = "") -> Path:
    """Write ``rubric`` as YAML atomically, ``header`` lines first as comments (how it was made)."""
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.strip().splitlines()) if header else ""
    body = yaml.safe_dump(rubric.model_dump(mode="json"), sort_keys=False, width=100)
    return atomic_write_text(path, comments + body)


def rubric_dir() -> Path:
    """The folder of the default rubrics (``assets/rubrics``)."""
    return data_dir("assets") / "rubrics"


def default_rubric(task: object) -> Rubric:
    """The shipped rubric of ``task`` (a session's meta task: any JSON value), else generic."""
    folder = rubric_dir()
    # a task name is a file name here: nothing that could leave the folder
    named = isinstance(task, str) and re.fullmatch(r"[A-Za-z0-9_.-]+", task) and ".." not in task
    path = folder / f"{task}.yaml" if named else None
    if path is None or not path.is_file():
        path = folder / f"{GENERIC}.yaml"
    return load_rubric(path)
