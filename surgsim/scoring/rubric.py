"""Rubrics: per task, which metrics count, how much, what an expert's values look like, and what
each critical error does.

A rubric is a YAML file::

    task: SurgicalPath            # the session meta "task" it grades ("generic": any)
    description: ...
    min_duration: 1.0             # s: shorter sessions are not gradable
    settings: {idle_speed: 0.005} # MetricSettings overrides (SI)
    levels: {expert: 75.0, intermediate: 50.0}   # composite score thresholds
    cap: 4.0                      # a metric loses nearly all its points at `cap` expert SDs
    max_share: 0.4                # no group of metrics may hold more of the total weight
    critical_errors:              # what each critical error does: fail, or cap the score
      critical_contact: fail
      excessive_force: {cap: 50}
    metrics:
      path_length: {weight: 1.0, center: 0.21, scale: 0.03, better: lower, cap: 6.5}

``center`` / ``scale`` describe the expert reference distribution (mean and SD, or median and
1.4826 x MAD when fitted robustly), in SI units. Every number must be finite. Comments at the
top say how it was made.

Backward compatibility: a rubric without ``critical_errors`` (or missing a kind) gets
:data:`DEFAULT_CRITICAL_ERRORS`, so no rubric can leave a critical error out; one without
``max_share`` states no limit (1.0); a metric without its own ``cap`` takes the rubric's.
Default rubrics live in ``assets/rubrics/<task>.yaml``; ``generic.yaml`` grades the rest.
"""

from __future__ import annotations

import re
from pathlib import Path
import math
from typing import Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from surgsim._files import atomic_write_text
from surgsim._data import data_dir
from surgsim.errors import SurgsimError, validation_problem, yaml_problem
from surgsim.scoring.critical import KINDS
from surgsim.scoring.metrics import METRICS, MetricSettings, metric_group

GENERIC = "generic"
#: what a critical error does when a rubric does not say: a safety error or a failed attempt fails
#: it (as skills-lab scoring gives an uncompleted task 0, e.g. FLS: Fraser et al. 2003), the
#: others cap its score (and no attempt with one is expert, whatever the cap)
DEFAULT_CRITICAL_ERRORS: dict[str, Any] = {
    "critical_contact": "fail",
    "excessive_force": {"cap": 50.0},
    "bleeding": "fail",
    "failed": "fail",
    "incomplete": {"cap": 50.0},
}
#: rounding room when checking shares of weights written with 4 decimals
_SHARE_SLACK = 1e-3


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
    #: expert SDs at which this metric has lost nearly all its points (default: the rubric's cap)
    cap: float | None = Field(default=None, gt=0.0)


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


class CapRule(BaseModel):
    """A critical error that caps the score (and keeps the level below expert)."""

    model_config = _STRICT

    cap: float = Field(ge=0.0, lt=100.0)


#: what a critical error does: ``"fail"`` (score 0, level ``fail``) or ``{cap: score}``
CriticalRule = Union[Literal["fail"], CapRule]


def _critical_rules(value: Any) -> dict[str, Any]:
    """The critical-error rules with every kind (defaults for those not given), checked one by one
    so that a mistake reads as one line naming the kind."""
    if value is None:
        value = {}
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping of kind -> fail or {{cap: score}}, got {type(value).__name__}")
    unknown = sorted(set(value) - set(KINDS), key=str)
    if unknown:
        raise ValueError(f"unknown critical error kind(s) {unknown}; known: {list(KINDS)}")
    rules = dict(DEFAULT_CRITICAL_ERRORS)
    for kind, rule in value.items():
        if isinstance(rule, CapRule):
            rule = rule.model_dump()
        cap = rule.get("cap") if isinstance(rule, dict) and set(rule) == {"cap"} else None
        ok_cap = isinstance(cap, (int, float)) and not isinstance(cap, bool) and math.isfinite(cap) and 0 <= cap < 100
        if rule != "fail" and not ok_cap:
            raise ValueError(f"{kind}: expected fail or {{cap: <score, at least 0 and below 100>}}, got {rule!r}")
        rules[kind] = rule
    return {kind: rules[kind] for kind in KINDS}


class Rubric(BaseModel):
    """Weights and expert references of the metrics that grade one task."""

    model_config = _STRICT

    task: str = Field(min_length=1)
    description: str = ""
    #: shorter sessions (s) are not gradable; fitted rubrics take half their fastest expert's time
    min_duration: float = Field(default=1.0, ge=0.0)
    settings: dict[str, float] = Field(default_factory=dict)
    levels: Levels = Field(default_factory=Levels)
    #: expert SDs at which a metric has lost nearly all its points, unless it states its own
    cap: float = Field(default=4.0, gt=0.0)
    #: the largest share of the total weight one group of metrics may hold (1: no limit)
    max_share: float = Field(default=1.0, gt=0.0, le=1.0)
    critical_errors: dict[str, CriticalRule] = Field(default_factory=dict, validate_default=True)
    metrics: dict[str, MetricReference]

    @field_validator("critical_errors", mode="before")
    @classmethod
    def _every_critical_error(cls, value: Any) -> dict[str, Any]:
        return _critical_rules(value)

    @field_validator("metrics")
    @classmethod
    def _known_metrics(cls, value: dict[str, MetricReference], info: ValidationInfo) -> dict[str, MetricReference]:
        unknown = sorted(set(value) - set(METRICS))
        if unknown:
            raise ValueError(f"unknown metric(s) {unknown}; known: {list(METRICS)}")
        if not any(ref.weight > 0 for ref in value.values()):
            raise ValueError("needs at least one metric of weight > 0")
        max_share = info.data.get("max_share", 1.0)
        for group, share in group_shares(value).items():
            if share > max_share + _SHARE_SLACK:
                members = [n for n, ref in value.items() if metric_group(n) == group and ref.weight > 0]
                raise ValueError(f"{' + '.join(members)} (group {group!r}) hold {share:.1%} of the total weight; "
                                 f"max_share is {max_share:g}")
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


def group_shares(metrics: dict[str, MetricReference]) -> dict[str, float]:
    """Each group's share of the total weight (groups of weight 0 left out)."""
    total = sum(ref.weight for ref in metrics.values())
    shares: dict[str, float] = {}
    for name, ref in metrics.items():
        if ref.weight > 0:
            shares[metric_group(name)] = shares.get(metric_group(name), 0.0) + ref.weight / total
    return shares


def grades_task(model_task: str, session_task: object) -> bool:
    """Whether a model (a rubric or an assessor) of ``model_task`` grades a session of
    ``session_task`` (its meta task, any JSON value): one of its own task, any session when it is
    generic (or has no task), and a session with no task."""
    return session_task is None or model_task in ("", GENERIC) or model_task == str(session_task)


def load_rubric(path: str | Path) -> Rubric:
    """Read and check a rubric YAML file; :class:`RubricError` names the file, field and value."""
    path = Path(path)
    if not path.is_file():
        raise RubricError(f"{path}: {'a folder, not a' if path.is_dir() else 'no such'} rubric file")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise RubricError(f"{path}: not valid YAML ({yaml_problem(exc)})") from None
    if not isinstance(data, dict):
        raise RubricError(f"{path}: expected a mapping with task and metrics, got {type(data).__name__}")
    from surgsim.scoring.assessor import FORMAT as ASSESSOR_FORMAT  # the assessor imports this module

    if data.get("format") == ASSESSOR_FORMAT:
        raise RubricError(f"{path}: an assessor model, not a rubric; grade with it by "
                          f"`surgsim score assess DIR --model {path} --out DIR`")
    try:
        return Rubric.model_validate(data)
    except ValidationError as exc:
        raise RubricError(f"{path}: {validation_problem(exc, '(top level)', field='field ')}") from None


def save_rubric(rubric: Rubric, path: str | Path, header: str = "") -> Path:
    """Write ``rubric`` as YAML atomically, ``header`` lines first as comments (how it was made)."""
    comments = "".join(f"# {line}".rstrip() + "\n" for line in header.strip().splitlines()) if header else ""
    body = yaml.safe_dump(rubric.model_dump(mode="json", exclude_none=True), sort_keys=False, width=100)
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
