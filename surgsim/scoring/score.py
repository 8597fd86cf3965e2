"""From metric values and critical errors to a score 0-100, a skill level and the metrics that cost most.

Each rubric metric with a value becomes a standardised value ``z = (value - center) / scale``
against the expert reference. Its *penalty* ``p`` is the departure in the worse direction:
``max(z, 0)`` when lower is better, ``max(-z, 0)`` when higher is better, ``|z|`` when both
ways are worse. With weights ``w`` over the available metrics (total ``W``), a metric loses
``100 * w / W * f(p / c)`` points, ``c`` its ``cap`` (else the rubric's) and
``f(x) = x / (1 + x^4)^(1/4)``: linear while ``x`` is small (0.97 x at x = 0.6), 0.84 at the cap,
then bending smoothly towards all its points (0.97 at twice the cap), never past them. A
calibrated cap lies where the worst trainees of the calibration are, so points fall steadily
across the whole range of skill; a cap of a few expert SDs (what every metric had before) gave
every intermediate and novice the same 0. The metrics' score is ``100 - sum of points lost``.
Metrics that are not available are left out and the remaining weights renormalised (they are
listed as ``unavailable``); metrics of weight 0 are shown in the rubric but not graded.

Then the critical errors (:mod:`surgsim.scoring.critical`), whatever the metrics say: one whose
rubric rule is ``fail`` makes the score 0 and the level ``fail``; ``{cap: c}`` caps the score at
``c``; and an attempt with any critical error is never ``expert``.

A session is graded only by a rubric of its task (or the generic one, or when asked for with
``any_task``), and only when it is long enough: :data:`MIN_SAMPLES` samples and the rubric's
``min_duration``. A one-sample session has no motion and would otherwise score 100. A session
with a critical error that fails it is graded ``fail`` however short.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from typing import Sequence

from surgsim.errors import SurgsimError
from surgsim.scoring.critical import CriticalError, detect_critical_errors
from surgsim.scoring.metrics import (
    DIMENSIONLESS, METRICS, SessionMetrics, apart_from, compute_metrics, metric_units,
)
from surgsim.scoring.rubric import CapRule, MetricReference, Rubric, default_rubric, grades_task
from surgsim.sessions.session import Session

#: the level of an attempt failed by a critical error
FAIL = "fail"


#: the fewest samples with a smoothness (LDLJ needs three speeds); a scripted NeedleReach expert takes 4
MIN_SAMPLES = 4


class ScoreError(SurgsimError):
    """A session that the rubric cannot grade (none of its metrics is available, another task)."""


class NotGradable(ScoreError):
    """A session too short to grade: reported as such, not as a failed file."""


def check_task(rubric: Rubric, task: object, any_task: bool = False) -> None:
    """Refuse a rubric made for another task than the session's (``any_task`` allows it)."""
    if any_task or grades_task(rubric.task, task):
        return
    raise ScoreError(
        f"task {task!r}, but the rubric grades {rubric.task!r} sessions (--any-task grades it anyway)"
    )


def not_gradable(session: Session, rubric: Rubric) -> str | None:
    """Why ``session`` is too short for ``rubric`` to grade, or None when it is gradable."""
    if session.n_samples < MIN_SAMPLES:
        return f"{session.n_samples} sample(s); grading needs at least {MIN_SAMPLES}"
    if not session.duration >= rubric.min_duration:
        return f"lasts {session.duration:.3g} s; rubric {rubric.task!r} grades sessions of {rubric.min_duration:g} s or more"
    return None


@dataclass(frozen=True)
class MetricScore:
    """One metric's value against the expert reference and the points it cost."""

    name: str
    value: float  #: SI
    z: float  #: (value - center) / scale
    penalty: float  #: departure in the worse direction, in expert SDs
    points_lost: float  #: of the composite's 100
    reference: MetricReference
    task: str | None = None  #: the rubric's task (tissue damage's unit is the task's)

    def explain(self) -> str:
        """The metric in plain words, in the units people read (mm for lengths)."""
        info = METRICS[self.name]
        _, unit, scale = metric_units(self.name, self.task)
        unit = "" if unit in (DIMENSIONLESS, "count", "bool") else f" {unit}"
        if info.unit == "bool":  # success: yes / no against how often experts succeed
            answer = "yes" if self.value >= 0.5 else "no"
            cost = f"; cost {self.points_lost:.1f} points" if self.penalty else ""
            return f"{info.label}: {answer} (experts: {self.reference.center:.0%}){cost}"
        number = _count if info.unit == "count" else _formatter(self.reference.scale * scale)
        value = number(self.value * scale)
        band = f"{number(self.reference.center * scale)} ± {number(self.reference.scale * scale)}{unit}"
        if self.penalty == 0.0:
            return f"{info.label}: {value}{unit}, within the expert range ({band})"
        side = "higher" if self.z > 0 else "lower"
        return (
            f"{info.label}: {value}{unit}, {apart_from(abs(self.z), 0.0)} SD {side} than experts ({band}); "
            f"cost {self.points_lost:.1f} points"
        )


@dataclass
class Score:
    """The grade of one session under one rubric."""

    score: float  #: 0-100, after the critical errors
    level: str  #: fail / novice / intermediate / expert
    task: str  #: the rubric's task
    metrics: dict[str, MetricScore]
    unavailable: list[str] = field(default_factory=list)  #: rubric metrics the session lacks
    critical_errors: list[CriticalError] = field(default_factory=list)
    #: the metrics' score before the critical errors (None: failed before its metrics could be graded)
    metric_score: float | None = None

    def top_costs(self, k: int = 3) -> list[MetricScore]:
        """The ``k`` metrics that cost the most points (those that cost 0.05 or more: shown with
        one decimal, a smaller cost would read "cost 0.0 points")."""
        costly = sorted(self.metrics.values(), key=lambda m: m.points_lost, reverse=True)
        return [m for m in costly[:k] if m.points_lost >= 0.05]


def _count(value: float) -> str:
    """A count as a whole number (``13``); a median or spread of counts with the decimals it has,
    up to two (``12.5``, ``0.25``)."""
    return f"{value:.2f}".rstrip("0").rstrip(".")


def _formatter(spread: float):
    """One format for a value, the expert centre and spread: as many decimals as give the spread
    two significant digits (``67 mm/s (65 ± 14 mm/s)``, ``1.035 (1.044 ± 0.052)``); powers of ten
    for spreads under 1e-6 or over 1e6."""
    if not 1e-6 <= spread <= 1e6:
        return lambda v: f"{v:.2e}"
    decimals = max(0, 1 - math.floor(math.log10(spread)))
    return lambda v: f"{v:.{decimals}f}"


def penalty(value: float, reference: MetricReference) -> tuple[float, float]:
    """(z, penalty) of ``value`` against ``reference`` (see the module docstring)."""
    z = (value - reference.center) / reference.scale
    return z, {"lower": max(z, 0.0), "higher": max(-z, 0.0), "both": abs(z)}[reference.better]


def lost_fraction(penalty: float, cap: float) -> float:
    """The fraction of its points a metric loses at ``penalty`` SDs: ``x / (1 + x^4)^(1/4)``, ``x = penalty / cap``."""
    x = penalty / cap
    return 1.0 if x > 1e6 else x / (1.0 + x**4) ** 0.25  # beyond 1e6 it is 1 to double precision


def apply_critical_errors(
    metric_score: float | None, errors: Sequence[CriticalError], rubric: Rubric
) -> tuple[float, str]:
    """(score, level) after the critical errors: 0 and ``fail`` when a rule fails the attempt,
    else the metrics' score capped by every rule that caps, never ``expert`` with an error."""
    rules = [rubric.critical_errors[e.kind] for e in errors]
    if metric_score is None or any(rule == FAIL for rule in rules):
        return 0.0, FAIL
    score = min([metric_score] + [rule.cap for rule in rules if isinstance(rule, CapRule)])
    level = rubric.levels.level(score)
    return score, "intermediate" if errors and level == "expert" else level


def score_metrics(
    values: dict[str, float | None], rubric: Rubric, critical_errors: Sequence[CriticalError] = ()
) -> Score:
    """Grade combined metric values (SI, ``None`` = not available) and critical errors with ``rubric``."""
    values = {name: v for name, v in values.items() if v is not None and math.isfinite(v)}
    available = {name: ref for name, ref in rubric.metrics.items() if name in values and ref.weight > 0}
    total = sum(ref.weight for ref in available.values())
    if total <= 0:
        raise ScoreError(
            f"none of the rubric {rubric.task!r} metrics ({', '.join(rubric.metrics)}) is available in this session"
        )
    scored = {}
    for name, ref in available.items():
        z, pen = penalty(float(values[name]), ref)
        lost = 100.0 * ref.weight / total * lost_fraction(pen, ref.cap or rubric.cap)
        scored[name] = MetricScore(name, float(values[name]), z, pen, lost, ref, rubric.task)
    composite = max(0.0, 100.0 - sum(m.points_lost for m in scored.values()))
    unavailable = [name for name in rubric.metrics if name not in values]
    score, level = apply_critical_errors(composite, critical_errors, rubric)
    return Score(score, level, rubric.task, scored, unavailable, list(critical_errors), composite)


@dataclass
class Graded:
    """A session's metrics, critical errors and grade; ``reason`` says why it has no grade (or,
    for a session too short to grade that a critical error failed, why its motion has none)."""

    metrics: SessionMetrics
    critical_errors: list[CriticalError]
    score: Score | None
    reason: str | None


def grade_session(session: Session, rubric: Rubric | None = None, *, any_task: bool = False) -> Graded:
    """Metrics, critical errors and grade of a session; ``rubric`` defaults to the shipped one of
    its meta task. A session too short to grade has its metrics and errors, no grade and the
    reason, unless a critical error fails it (graded ``fail`` however short: an attempt that left
    the line within 0.2 s failed).

    Raises :class:`ScoreError` for a rubric of another task (unless ``any_task``) or none of
    whose metrics the session has.
    """
    task = session.meta.get("task")
    rubric = rubric or default_rubric(task)
    check_task(rubric, task, any_task)
    settings = rubric.metric_settings()
    metrics = compute_metrics(session, settings)
    errors = detect_critical_errors(session, settings)
    reason = not_gradable(session, rubric)
    if reason is None:
        return Graded(metrics, errors, score_metrics(metrics.combined, rubric, errors), None)
    if any(rubric.critical_errors[e.kind] == FAIL for e in errors):  # graded, and the reason kept
        why = f"{reason}: too short to grade its motion; a critical error fails it"
        return Graded(metrics, errors, Score(0.0, FAIL, rubric.task, {}, [], errors, None), why)
    return Graded(metrics, errors, None, reason)


def score_session(
    session: Session, rubric: Rubric | None = None, *, any_task: bool = False
) -> tuple[SessionMetrics, Score]:
    """Metrics and grade of a session; ``rubric`` defaults to the shipped one of its meta task.

    Raises :class:`ScoreError` for a rubric of another task (unless ``any_task``) and
    :class:`NotGradable` for a session too short to grade.
    """
    graded = grade_session(session, rubric, any_task=any_task)
    if graded.score is None:
        raise NotGradable(graded.reason)
    return graded.metrics, graded.score
