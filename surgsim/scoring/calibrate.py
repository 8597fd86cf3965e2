"""Fit a rubric from labelled sessions, and cross-validate how well its scores track a label.

Calibration works on metric values (one dict per session) and their metadata, so a folder is
read and measured once, then fitted as often as cross-validation needs.

- Reference distributions: from the expert sessions (labels.skill == "E"; without skill
  labels, the top third by ``label``): ``center`` / ``scale`` are median and 1.4826 x MAD
  (``robust``) or mean and SD, with ``scale`` floored at the metric's resolution and 5 % of
  ``|center|`` so that near-identical experts do not make every other session fail.
- Weights (optional, ``label`` given): non-negative least squares of the centred label on the
  negated, centred penalties, so a metric gets weight when more penalty means a lower label;
  normalised to a mean weight of 1. All-zero fits fall back to equal weights.
- Levels: with skill labels, the score thresholds that best split E from I/N and E/I from N
  on the calibration sessions; otherwise the defaults (75 / 50).
- Shortest gradable session: half the fastest expert's completion time, at most 1 s.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
from scipy import optimize, stats

from surgsim.errors import SurgsimError
from surgsim.scoring.metrics import METRICS, MetricSettings
from surgsim.scoring.rubric import Levels, MetricReference, Rubric
from surgsim.scoring.score import penalty, score_metrics

SKILL_LEVELS = {"N": "novice", "I": "intermediate", "E": "expert"}


class CalibrationError(SurgsimError):
    """Labelled sessions that cannot calibrate a rubric (no experts, label missing, ...)."""


@dataclass(frozen=True)
class Measured:
    """One session's combined metric values (SI) and its metadata."""

    source: str
    values: dict[str, float | None]
    meta: dict[str, Any]

    def label(self, name: str) -> float | None:
        """The numeric label ``name`` (from meta labels), or None."""
        value = (self.meta.get("labels") or {}).get(name)
        if isinstance(value, str) and name == "skill":
            return float("NIE".index(value)) if value in SKILL_LEVELS else None
        return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None

    @property
    def skill(self) -> str | None:
        value = (self.meta.get("labels") or {}).get("skill")
        return value if value in SKILL_LEVELS else None


def expert_sessions(sessions: Sequence[Measured], label: str | None) -> list[Measured]:
    """Sessions labelled skill E, else the top third by ``label``."""
    experts = [s for s in sessions if s.skill == "E"]
    if experts:
        return experts
    if label is not None:
        labelled = [s for s in sessions if s.label(label) is not None]
        if labelled:
            cut = np.quantile([s.label(label) for s in labelled], 2 / 3)
            return [s for s in labelled if s.label(label) >= cut]
    raise CalibrationError(
        "no expert sessions: none has labels.skill 'E'" + (f" and none has a numeric labels.{label}" if label else
                                                           "; pass --label to take the top third by a label")
    )


def _reference(name: str, values: np.ndarray, robust: bool) -> tuple[float, float]:
    if robust:
        center = float(np.median(values))
        scale = 1.4826 * float(np.median(np.abs(values - center)))
    else:
        center = float(values.mean())
        scale = float(values.std(ddof=1)) if len(values) > 1 else 0.0
    scale = max(scale, METRICS[name].resolution, 0.05 * abs(center))
    return float(f"{center:.6g}"), float(f"{scale:.6g}")  # 6 digits: readable YAML, far below the spread


def fit_rubric(
    sessions: Sequence[Measured],
    task: str,
    *,
    label: str | None = None,
    fit_weights: bool = True,
    robust: bool = True,
    metrics: Sequence[str] | None = None,
    settings: MetricSettings | None = None,
    cap: float = 4.0,
    description: str = "",
) -> Rubric:
    """A rubric for ``task`` fitted on ``sessions`` (see the module docstring).

    ``metrics`` defaults to every metric available in at least 80 % of the expert sessions.
    """
    experts = expert_sessions(sessions, label)
    if metrics is None:
        metrics = [
            name for name in METRICS
            if sum(s.values.get(name) is not None for s in experts) >= max(1, 0.8 * len(experts))
        ]
    references = {}
    for name in metrics:
        values = np.array([s.values[name] for s in experts if s.values.get(name) is not None], dtype=float)
        if not len(values):
            raise CalibrationError(f"metric {name!r} is not available in any expert session")
        center, scale = _reference(name, values, robust)
        references[name] = MetricReference(weight=1.0, center=center, scale=scale, better=METRICS[name].better)
    settings_dict = {k: v for k, v in vars(settings).items() if v != getattr(MetricSettings(), k)} if settings else {}
    times = [s.values["completion_time"] for s in experts if s.values.get("completion_time") is not None]
    min_duration = float(f"{min(1.0, 0.5 * min(times, default=2.0)):.3g}")
    rubric = Rubric(
        task=task, description=description, min_duration=min_duration, settings=settings_dict, cap=cap,
        metrics=references,
    )
    if fit_weights and label is not None:
        rubric = _fit_weights(rubric, sessions, label)
    return _fit_levels(rubric, sessions)


def _fit_weights(rubric: Rubric, sessions: Sequence[Measured], label: str) -> Rubric:
    labelled = [s for s in sessions if s.label(label) is not None]
    if len(labelled) < 3:
        raise CalibrationError(f"fitting weights needs >= 3 sessions with a numeric labels.{label}, got {len(labelled)}")
    names = list(rubric.metrics)
    pen = np.full((len(labelled), len(names)), np.nan)
    for i, s in enumerate(labelled):
        for j, name in enumerate(names):
            if s.values.get(name) is not None:
                pen[i, j] = penalty(float(s.values[name]), rubric.metrics[name], rubric.cap)[1]
    pen = np.where(np.isnan(pen), np.nanmean(np.where(np.isnan(pen).all(axis=0), 0.0, pen), axis=0), pen)
    y = np.array([s.label(label) for s in labelled])
    weights, _ = optimize.nnls(-(pen - pen.mean(axis=0)), y - y.mean())
    if weights.sum() <= 0:
        weights = np.ones(len(names))
    weights *= len(names) / weights.sum()
    metrics = {
        name: rubric.metrics[name].model_copy(update={"weight": float(round(w, 4))})
        for name, w in zip(names, weights)
    }
    return rubric.model_copy(update={"metrics": metrics})


def _best_split(scores: np.ndarray, upper: np.ndarray) -> float | None:
    """The threshold that best separates the ``upper`` class (score >= t) from the rest."""
    if upper.all() or not upper.any():
        return None
    candidates = np.unique(scores)
    cuts = np.concatenate([[candidates[0]], (candidates[1:] + candidates[:-1]) / 2, [candidates[-1] + 1e-9]])
    correct = ((scores[None, :] >= cuts[:, None]) == upper[None, :]).sum(axis=1)
    best = np.flatnonzero(correct == correct.max())
    return float(np.median(cuts[best]))


def _fit_levels(rubric: Rubric, sessions: Sequence[Measured]) -> Rubric:
    graded = [s for s in sessions if s.skill is not None]
    if not graded:
        return rubric
    scores = np.array([score_metrics(s.values, rubric).score for s in graded])
    skills = np.array([s.skill for s in graded])
    expert = _best_split(scores, skills == "E")
    intermediate = _best_split(scores, skills != "N")
    levels = Levels(
        expert=round(expert, 2) if expert is not None else rubric.levels.expert,
        intermediate=round(intermediate, 2) if intermediate is not None else rubric.levels.intermediate,
    )
    if levels.intermediate > levels.expert:
        levels = Levels(expert=levels.expert, intermediate=levels.expert)
    return rubric.model_copy(update={"levels": levels})


@dataclass
class Evaluation:
    """Cross-validated agreement of the scores with a label."""

    label: str
    cv: str
    folds: int
    n: int
    spearman: float | None  #: None when undefined (constant scores or labels)
    p_value: float | None  #: None when undefined (constant scores or labels)
    level_accuracy: float | None  #: fraction of sessions whose level matches labels.skill
    predictions: list[dict[str, Any]]  #: per session: source, group, label, score, level, skill


def group_of(session: Measured, cv: Literal["louo", "loso"]) -> str:
    """The fold a session belongs to: its trainee (louo) or its trial index (loso: meta trial,
    else the recorder's episode number)."""
    keys = ("trainee",) if cv == "louo" else ("trial", "episode")
    value = next((session.meta[k] for k in keys if session.meta.get(k) is not None), None)
    if value is None:
        raise CalibrationError(f"{session.source}: meta has no {' or '.join(map(repr, keys))}, needed for --cv {cv}")
    return str(value)


def evaluate(
    sessions: Sequence[Measured],
    label: str,
    cv: Literal["louo", "loso"] = "louo",
    *,
    task: str = "evaluated",
    fit_weights: bool = True,
    robust: bool = True,
    settings: MetricSettings | None = None,
) -> Evaluation:
    """Leave one group out: fit on the rest, score the held-out group; Spearman and level accuracy."""
    if cv not in ("louo", "loso"):
        raise CalibrationError(f"cv must be 'louo' or 'loso', got {cv!r}")
    labelled = [s for s in sessions if s.label(label) is not None]
    if len(labelled) < 4:
        raise CalibrationError(f"evaluation needs >= 4 sessions with a numeric labels.{label}, got {len(labelled)}")
    groups = sorted({group_of(s, cv) for s in labelled})
    if len(groups) < 2:
        raise CalibrationError(f"--cv {cv} needs sessions from >= 2 groups, all are in {groups}")
    predictions = []
    for group in groups:
        train = [s for s in labelled if group_of(s, cv) != group]
        rubric = fit_rubric(train, task, label=label, fit_weights=fit_weights, robust=robust, settings=settings)
        for s in labelled:
            if group_of(s, cv) == group:
                graded = score_metrics(s.values, rubric)
                predictions.append(dict(source=s.source, group=group, label=s.label(label),
                                        score=graded.score, level=graded.level, skill=s.skill))
    result = stats.spearmanr([p["score"] for p in predictions], [p["label"] for p in predictions])
    rho = float(result.statistic) if np.isfinite(result.statistic) else None
    with_skill = [p for p in predictions if p["skill"] is not None]
    accuracy = (
        float(np.mean([SKILL_LEVELS[p["skill"]] == p["level"] for p in with_skill])) if with_skill else None
    )
    p_value = float(result.pvalue) if np.isfinite(result.pvalue) else None
    return Evaluation(label, cv, len(groups), len(predictions), rho, p_value, accuracy, predictions)
