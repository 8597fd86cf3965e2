"""From metric values to a composite score 0-100, a skill level and the metrics that cost most.

Each rubric metric with a value becomes a standardised value ``z = (value - center) / scale``
against the expert reference. Its *penalty* is the departure in the worse direction:
``max(z, 0)`` when lower is better, ``max(-z, 0)`` when higher is better, ``|z|`` when both
ways are worse, capped at the rubric's ``cap``. With weights ``w`` over the available metrics
(total ``W``), a metric loses ``100 * w / W * penalty / cap`` points and the composite is
``100 - sum of points lost``: a session inside the expert band on every metric scores near
100, one at ``cap`` SDs or worse on every metric scores 0. Metrics that are not available
are left out and the remaining weights renormalised (they are listed as ``unavailable``);
metrics of weight 0 are shown in the rubric but not graded.

A session is graded only by a rubric of its task (or the generic one, or when asked for with
``any_task``), and only when it is long enough: :data:`MIN_SAMPLES` samples and the rubric's
``min_duration``. A one-sample session has no motion and would otherwise score 100.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from surgsim.errors import SurgsimError
from surgsim.scoring.metrics import METRICS, SessionMetrics, compute_metrics
from surgsim.scoring.rubric import GENERIC, MetricReference, Rubric, default_rubric
from surgsim.sessions.session import Session


#: the fewest samples with a smoothness (LDLJ needs three speeds); a scripted NeedleReach expert takes 4
MIN_SAMPLES = 4


class ScoreError(SurgsimError):
    """A session that the rubric cannot grade (none of its metrics is available, another task)."""


class NotGradable(ScoreError):
    """A session too short to grade: reported as such, not as a failed file."""


def check_task(rubric: Rubric, task: object, any_task: bool = False) -> None:
    """Refuse a rubric made for another task than the session's (``any_task`` allows it)."""
    if any_task or task is None or rubric.task in (GENERIC, str(task)):
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
    penalty: float  #: departure in the worse direction, in expert SDs, capped
    points_lost: float  #: of the composite's 100
    reference: MetricReference

    def explain(self) -> str:
        """The metric in plain words, in the units people read (mm for lengths)."""
        info = METRICS[self.name]
        scale, unit = info.report_scale, info.shown_unit
        unit = "" if unit in ("1", "count", "bool") else f" {unit}"
        if info.unit == "bool":  # success: yes / no against how often experts succeed
            answer = "yes" if self.value >= 0.5 else "no"
            cost = f"; cost {self.points_lost:.1f} points" if self.penalty else ""
            return f"{info.label}: {answer} (experts: {self.reference.center:.0%}){cost}"
        value = _number(self.value * scale)
        band = f"{_number(self.reference.center * scale)} ± {_number(self.reference.scale * scale)}{unit}"
        if self.penalty == 0.0:
            return f"{info.label}: {value}{unit}, within the expert range ({band})"
        side = "higher" if self.z > 0 else "lower"
        return (
            f"{info.label}: {value}{unit}, {abs(self.z):.1f} SD {side} than experts ({band}); "
            f"cost {self.points_lost:.1f} points"
        )


@dataclass
class Score:
    """The grade of one session under one rubric."""

    score: float  #: composite, 0-100
    level: str  #: novice / intermediate / expert
    task: str  #: the rubric's task
    metrics: dict[str, MetricScore]
    unavailable: list[str] = field(default_factory=list)  #: rubric metrics the session lacks

    def top_costs(self, k: int = 3) -> list[MetricScore]:
        """The ``k`` metrics that cost the most points (those that cost any)."""
        costly = sorted(self.metrics.values(), key=lambda m: m.points_lost, reverse=True)
        return [m for m in costly[:k] if m.points_lost > 0]


def _number(value: float) -> str:
    """A value with about three significant digits, without exponent for everyday sizes."""
    return f"{value:.3g}" if abs(value) < 1e-3 or abs(value) >= 1e4 else f"{value:.4g}"


def penalty(value: float, reference: MetricReference, cap: float) -> tuple[float, float]:
    """(z, capped penalty) of ``value`` against ``reference`` (see the module docstring)."""
    z = (value - reference.center) / reference.scale
    worse = {"lower": max(z, 0.0), "higher": max(-z, 0.0), "both": abs(z)}[reference.better]
    return z, min(worse, cap)


def score_metrics(values: dict[str, float | None], rubric: Rubric) -> Score:
    """Grade combined metric values (SI, ``None`` = not available) with ``rubric``."""
    values = {name: v for name, v in values.items() if v is not None and math.isfinite(v)}
    available = {name: ref for name, ref in rubric.metrics.items() if name in values and ref.weight > 0}
    total = sum(ref.weight for ref in available.values())
    if total <= 0:
        raise ScoreError(
            f"none of the rubric {rubric.task!r} metrics ({', '.join(rubric.metrics)}) is available in this session"
        )
    scored = {}
    for name, ref in available.items():
        z, pen = penalty(float(values[name]), ref, rubric.cap)
        scored[name] = MetricScore(name, float(values[name]), z, pen, 100.0 * ref.weight / total * pen / rubric.cap, ref)
    composite = max(0.0, 100.0 - sum(m.points_lost for m in scored.values()))
    unavailable = [name for name in rubric.metrics if name not in values]
    return Score(composite, rubric.levels.level(composite), rubric.task, scored, unavailable)


def grade_session(
    session: Session, rubric: Rubric | None = None, *, any_task: bool = False
) -> tuple[SessionMetrics, Score | None, str | None]:
    """(metrics, grade, why not gradable) of a session; ``rubric`` defaults to the shipped one of
    its meta task. A session too short to grade has its metrics, no grade and the reason; a
    gradable one has its grade and reason None.

    Raises :class:`ScoreError` for a rubric of another task (unless ``any_task``) or none of
    whose metrics the session has.
    """
    task = session.meta.get("task")
    rubric = rubric or default_rubric(task)
    check_task(rubric, task, any_task)
    metrics = compute_metrics(session, rubric.metric_settings())
    reason = not_gradable(session, rubric)
    return metrics, None if reason else score_metrics(metrics.combined, rubric), reason


def score_session(
    session: Session, rubric: Rubric | None = None, *, any_task: bool = False
) -> tuple[SessionMetrics, Score]:
    """Metrics and grade of a session; ``rubric`` defaults to the shipped one of its meta task.

    Raises :class:`ScoreError` for a rubric of another task (unless ``any_task``) and
    :class:`NotGradable` for a session too short to grade.
    """
    metrics, score, reason = grade_session(session, rubric, any_task=any_task)
    if score is None:
        raise NotGradable(reason)
    return metrics, score
