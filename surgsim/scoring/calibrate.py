"""Fit a rubric from labelled sessions, and cross-validate how well its scores track a label.

Calibration works on metric values and critical errors (one :class:`Measured` per session) and
their metadata, so a folder is read and measured once, then fitted as often as cross-validation
needs.

- Metrics: by default every metric available in at least 80 % of the expert sessions and not
  the same in every session (it would tell nothing), except those that only restate a critical
  error (:data:`~surgsim.scoring.critical.GATED_METRICS`):
  critical errors are the rubric's gates (``critical_errors``, always every kind with its
  default rule), which no fit can remove or weaken.
- Reference distributions: from the expert sessions (labels.skill == "E"; without skill
  labels, the top third by ``label``): ``center`` / ``scale`` are median and 1.4826 x MAD
  (``robust``) or mean and SD, with ``scale`` floored at the metric's resolution and 5 % of
  ``|center|`` so that near-identical experts do not make every other session fail.
- Caps: each metric's ``cap`` is where the worst non-expert sessions are (the 90th percentile of
  their penalties, at least 2 SDs), so its points fall steadily across the range of skill.
- Weights, per group of metrics that measure the same thing (smoothness: LDLJ and SPARC; path
  length and economy of motion; ...; a metric alone is its own group): the group gets one share,
  its metrics split it. With ``label`` given, a group's share grows with how strongly the points
  it loses track the label: ``r^8``, ``r`` the correlation of the label with minus the group's
  mean lost fraction (0 when the label does not fall as points are lost); no group above
  ``max_share`` of the total (the excess is shared out to the others in proportion); its metrics
  split it the same way, by their own ``r^8`` (equally when none tracks). A least-squares fit was tried first: with the
  share limit it parked weight on metrics that hardly vary, which costs no fit but flattens every
  score. Without ``label``, or when no group tracks it: equal groups, split equally. Normalised to
  a mean weight of 1 per metric.
- Levels: with skill labels, the score thresholds (after critical errors) that best split E
  from I/N and E/I from N on the calibration sessions; otherwise the defaults (75 / 50).
- Shortest gradable session: half the fastest expert's completion time, at most 1 s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import numpy as np
from scipy import stats

from surgsim.errors import SurgsimError
from surgsim.scoring.critical import GATED_METRICS, CriticalError
from surgsim.scoring.metrics import METRICS, MetricSettings, metric_group
from surgsim.scoring.rubric import Levels, MetricReference, Rubric
from surgsim.scoring.score import FAIL, lost_fraction, penalty, score_metrics

SKILL_LEVELS = {"N": "novice", "I": "intermediate", "E": "expert"}
#: the largest share of the total weight a fitted rubric gives one group of metrics
MAX_SHARE = 0.4
#: weights grow with this power of how well a group (a metric) tracks the label: 8 makes a group at
#: r = 0.9 weigh 4 times one at r = 0.75 (powers 1, 2, 4, 8 and 16 were compared on the cohorts of
#: benchmarks/score_resolution.py: 1 gave the best tracking groups too little, 8 and 16 did alike)
TRACKING_POWER = 8
#: a fitted metric's cap: this quantile of the non-expert sessions' penalties, at least MIN_CAP SDs
CAP_QUANTILE = 0.9
MIN_CAP = 2.0


class CalibrationError(SurgsimError):
    """Labelled sessions that cannot calibrate a rubric (no experts, label missing, ...)."""


@dataclass(frozen=True)
class Measured:
    """One session's combined metric values (SI) and its metadata."""

    source: str
    values: dict[str, float | None]
    meta: dict[str, Any]
    critical_errors: tuple[CriticalError, ...] = ()

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
    max_share: float = MAX_SHARE,
    description: str = "",
) -> Rubric:
    """A rubric for ``task`` fitted on ``sessions`` (see the module docstring).

    ``metrics`` defaults to every metric available in at least 80 % of the expert sessions that
    varies across the sessions, less the gated ones. Raises :class:`CalibrationError` when the
    metrics form too few groups for ``max_share`` (each group at most ``max_share`` of the weight
    needs ``1 / max_share`` groups).
    """
    experts = expert_sessions(sessions, label)
    chosen = {id(s) for s in experts}
    others = [s for s in sessions if id(s) not in chosen]
    if metrics is None:
        metrics = [
            name for name in METRICS
            if name not in GATED_METRICS
            and sum(s.values.get(name) is not None for s in experts) >= max(1, 0.8 * len(experts))
            and len({s.values[name] for s in sessions if s.values.get(name) is not None}) > 1
        ]
    references = {}
    for name in metrics:
        values = np.array([s.values[name] for s in experts if s.values.get(name) is not None], dtype=float)
        if not len(values):
            raise CalibrationError(f"metric {name!r} is not available in any expert session")
        center, scale = _reference(name, values, robust)
        reference = MetricReference(weight=1.0, center=center, scale=scale, better=METRICS[name].better)
        references[name] = reference.model_copy(update={"cap": _cap(name, reference, others)})
    groups = sorted({metric_group(name) for name in references})
    if len(groups) * max_share < 1 - 1e-9:
        raise CalibrationError(
            f"max_share {max_share:g} needs at least {math.ceil(1 / max_share - 1e-9)} groups of metrics; "
            f"{', '.join(references) or 'none'} make {len(groups)} ({', '.join(groups)})"
        )
    settings_dict = {k: v for k, v in vars(settings).items() if v != getattr(MetricSettings(), k)} if settings else {}
    times = [s.values["completion_time"] for s in experts if s.values.get("completion_time") is not None]
    min_duration = float(f"{min(1.0, 0.5 * min(times, default=2.0)):.3g}")
    shares = _fit_shares(references, sessions, label, cap, max_share) if fit_weights and label else None
    rubric = Rubric(
        task=task, description=description, min_duration=min_duration, settings=settings_dict,
        cap=cap, max_share=max_share, metrics=_weighted(references, shares),
    )
    return _fit_levels(rubric, sessions)


def _cap(name: str, reference: MetricReference, others: Sequence[Measured]) -> float | None:
    """Where the worst non-experts are: the :data:`CAP_QUANTILE` of their penalties (at least
    :data:`MIN_CAP` SDs), so that the metric's points spread over the range trainees span; None
    (the rubric's cap) without non-expert sessions."""
    values = [penalty(float(s.values[name]), reference)[1] for s in others if s.values.get(name) is not None]
    return float(f"{max(MIN_CAP, float(np.quantile(values, CAP_QUANTILE))):.3g}") if values else None


def _weighted(references: dict[str, MetricReference], shares: dict[str, float] | None) -> dict[str, MetricReference]:
    """The references weighted by their shares of the total (equal groups, split equally, when
    None), scaled to a mean weight of 1."""
    if shares is None:
        members: dict[str, list[str]] = {}
        for name in references:
            members.setdefault(metric_group(name), []).append(name)
        shares = {name: 1.0 / len(members) / len(members[metric_group(name)]) for name in references}
    return {name: ref.model_copy(update={"weight": round(len(references) * shares[name], 4)})
            for name, ref in references.items()}


def _tracking(lost: np.ndarray, y: np.ndarray) -> float:
    """How strongly losing points goes with a lower label: minus their correlation (0 when not
    positive), to the power :data:`TRACKING_POWER`."""
    if not (lost.std() > 0 and y.std() > 0):
        return 0.0
    return max(0.0, -float(np.corrcoef(lost, y)[0, 1])) ** TRACKING_POWER


def _fit_shares(
    references: dict[str, MetricReference], sessions: Sequence[Measured], label: str, cap: float,
    max_share: float,
) -> dict[str, float] | None:
    """Each metric's share of the weight, fitted on ``label`` (see the module docstring); None when
    no group tracks it."""
    labelled = [s for s in sessions if s.label(label) is not None]
    if len(labelled) < 3:
        raise CalibrationError(f"fitting weights needs >= 3 sessions with a numeric labels.{label}, got {len(labelled)}")
    names = list(references)
    lost = np.full((len(labelled), len(names)), np.nan)
    for i, s in enumerate(labelled):
        for j, name in enumerate(names):
            if s.values.get(name) is not None:
                ref = references[name]
                lost[i, j] = lost_fraction(penalty(float(s.values[name]), ref)[1], ref.cap or cap)
    # a value missing in a session: the metric's mean (0 when no session has it)
    lost = np.where(np.isnan(lost), np.nanmean(np.where(np.isnan(lost).all(axis=0), 0.0, lost), axis=0), lost)
    y = np.array([s.label(label) for s in labelled])
    groups = sorted({metric_group(name) for name in names})
    members = {group: [j for j, name in enumerate(names) if metric_group(name) == group] for group in groups}
    group_tracking = np.array([_tracking(lost[:, members[group]].mean(axis=1), y) for group in groups])
    if not group_tracking.sum() > 0:
        return None
    shares = {}
    for group, share in zip(groups, limit_shares(group_tracking, max_share)):
        own = np.array([_tracking(lost[:, j], y) for j in members[group]])
        split = own / own.sum() if own.sum() > 0 else np.full(len(own), 1.0 / len(own))
        shares.update({names[j]: share * part for j, part in zip(members[group], split)})
    return shares


def limit_shares(weights: np.ndarray, max_share: float) -> np.ndarray:
    """``weights`` as shares of their sum, none above ``max_share``: a share over it is cut to it and
    the rest shared out again in proportion (equally among weights of 0 when only they are left).
    Needs ``len(weights) * max_share >= 1``."""
    shares = weights / weights.sum()
    fixed = np.zeros(len(weights), dtype=bool)
    while (over := (shares > max_share) & ~fixed).any():
        fixed |= over
        shares[fixed] = max_share
        free = ~fixed
        rest = 1.0 - max_share * fixed.sum()
        shares[free] = rest * weights[free] / weights[free].sum() if weights[free].sum() > 0 else rest / free.sum()
    return shares


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
    scores = np.array([score_metrics(s.values, rubric, s.critical_errors).score for s in graded])
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
    #: fraction of sessions whose level matches labels.skill (a failed attempt counts as novice)
    level_accuracy: float | None
    predictions: list[dict[str, Any]]  #: per session: source, group, label, score, level, skill


def group_of(session: Measured, cv: Literal["louo", "loso"]) -> str:
    """The fold a session belongs to: its trainee (louo) or its trial index (loso: meta trial,
    else the recorder's episode number)."""
    keys = ("trainee",) if cv == "louo" else ("trial", "episode")
    value = next((session.meta[k] for k in keys if session.meta.get(k) is not None), None)
    if value is None:
        raise CalibrationError(f"{session.source}: meta has no {' or '.join(map(repr, keys))}, needed for --cv {cv}")
    return str(value)


def check_folds(groups: Sequence[str], cv: Literal["louo", "loso"]) -> None:
    """Refuse cross-validation with one fold, saying what the folds are made of."""
    if len(groups) < 2:
        made_of = "trainee (meta trainee)" if cv == "louo" else "trial index (meta trial, else episode)"
        raise CalibrationError(f"--cv {cv} leaves one {made_of} out at a time, and every session has the same "
                               f"one ({groups[0]!r}); it needs at least two"
                               + ("; --cv louo may have them" if cv == "loso" else ""))


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
    check_folds(groups, cv)
    predictions = []
    for group in groups:
        train = [s for s in labelled if group_of(s, cv) != group]
        rubric = fit_rubric(train, task, label=label, fit_weights=fit_weights, robust=robust, settings=settings)
        for s in labelled:
            if group_of(s, cv) == group:
                graded = score_metrics(s.values, rubric, s.critical_errors)
                predictions.append(dict(source=s.source, group=group, label=s.label(label),
                                        score=graded.score, level=graded.level, skill=s.skill))
    result = stats.spearmanr([p["score"] for p in predictions], [p["label"] for p in predictions])
    rho = float(result.statistic) if np.isfinite(result.statistic) else None
    with_skill = [p for p in predictions if p["skill"] is not None]
    accuracy = (
        float(np.mean([SKILL_LEVELS[p["skill"]] == ("novice" if p["level"] == FAIL else p["level"])
                       for p in with_skill])) if with_skill else None
    )
    p_value = float(result.pvalue) if np.isfinite(result.pvalue) else None
    return Evaluation(label, cv, len(groups), len(predictions), rho, p_value, accuracy, predictions)
