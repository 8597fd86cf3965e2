"""An explainable skill assessor: a fixed, signed composite of standardised session features.

Why not a fitted regression: skills datasets are small (JIGSAWS: 8 surgeons, ~40 trials per
task), and on them ridge weights chosen by nested cross-validation, sign-constrained weights and
shrinkage towards fixed weights all ranked held-out surgeons worse than fixed weights did
(benchmarks/RESULTS.md, *Skill assessment on JIGSAWS*). So the features, their directions and
their weights are set in advance (:data:`~surgsim.scoring.features.SKILL_DOMAINS`); only scales
and straight lines to the grades are fitted.

- Index: each feature is log-transformed when it is a positive scale, standardised with the
  training sessions' mean and SD, and signed so that higher is more skilled; the index is the
  mean over domains of the mean signed z in each domain (SD units, 0 = the training average). A
  missing value counts as the average (z = 0). Features missing in over 20 % of the training
  sessions, or constant there, are left out, and so is a domain with none left.
- Targets: the label (e.g. ``grs``), every other numeric label that all training sessions carry
  (the six OSATS sub-scores of JIGSAWS) and the skill level (N=0, I=1, E=2) when all carry one,
  each predicted from the index by a least-squares line with its slope kept >= 0 (a target the
  index does not track gets its mean), then kept within the target's range in the training
  sessions: a line runs on past the ends of a rating scale, a trainee's grade cannot. The
  predicted skill gives the level.
- Ranking: cross-validation ranks sessions by the index, not by a predicted grade. A line's
  intercept is its training sessions' mean grade, which moves with the held-out surgeon and so
  shifts whole folds against each other; the index depends on the fold only through the scales.
- Explanation: the index is a sum of per-feature contributions (weight x signed z); in label
  points each is multiplied by the label line's slope.

A model grades sessions of its own task only (a session without a task, or a model trained
without one, is not checked). Models are saved as JSON (never pickled) and checked when loaded:
known, distinct features (or rubric metrics), weighted by the domain rule above.
"""

from __future__ import annotations

import json
import math
import warnings
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal, Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from scipy import stats

from surgsim._files import atomic_write_json
from surgsim.errors import SurgsimError, validation_problem
from surgsim.scoring.calibrate import SKILL_LEVELS, Measured, check_folds, group_of
from surgsim.scoring.features import SKILL_DOMAINS, feature_info, feature_label
from surgsim.scoring.metrics import METRICS
from surgsim.scoring.rubric import grades_task

#: a feature is used when available in at least this share of the training sessions
MIN_AVAILABLE = 0.8
#: a session graded by a model must have at least this share of the model's features
MIN_PRESENT = 0.5
SKILL = "skill"
FORMAT = "surgsim-assessor"
#: 3: every target carries its training range (version 2 files have none: refit them)
VERSION = 3

Domains = Mapping[str, Mapping[str, int]]


class AssessorError(SurgsimError):
    """Sessions that cannot train or be graded by an assessor, or a bad model file."""


# ------------------------------------------------------------------ inputs
def _transform(name: str, value: float | None) -> float:
    """The model's input for a raw feature value: log of positive scales; NaN when missing."""
    if value is None or not math.isfinite(value):
        return math.nan
    info = feature_info(name)  # None: not one of features.py's (e.g. a rubric metric), used as it is
    if info is not None and info.log:
        return math.log(value) if value > 0 else math.nan
    return float(value)


def _matrix(sessions: Sequence[Measured], names: Sequence[str]) -> np.ndarray:
    return np.array([[_transform(n, s.values.get(n)) for n in names] for s in sessions], dtype=float).reshape(
        len(sessions), len(names))


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and SD of each column over its non-missing values; SD inf where constant (z = 0)."""
    with warnings.catch_warnings():  # an all-missing column: NaN, then centre 0 and scale inf
        warnings.simplefilter("ignore", RuntimeWarning)
        center = np.nan_to_num(np.nanmean(X, axis=0))
        scale = np.nan_to_num(np.nanstd(X, axis=0))
    return center, np.where(scale > 0, scale, np.inf)


def _z(X: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.nan_to_num((X - center) / scale)  # missing -> 0: the training mean


def monotone_line(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Intercept and slope of the least-squares line of y on x, the slope kept >= 0."""
    spread = float(np.var(x))
    slope = max(0.0, float(np.mean((x - x.mean()) * (y - y.mean()))) / spread) if spread > 0 else 0.0
    return float(y.mean() - slope * x.mean()), slope


# ------------------------------------------------------------------ the model
@dataclass(frozen=True)
class Target:
    """One predicted quantity: intercept + slope x index, within its range in the training sessions."""

    intercept: float
    slope: float
    low: float
    high: float

    def predict(self, index: float) -> float:
        """The line at ``index``, clipped: past the training range the line is extrapolating off
        the scale (a GRS below its minimum), so the prediction stops at the range's end."""
        return float(np.clip(self.intercept + self.slope * index, self.low, self.high))


#: lengths are shown in millimetres, as everywhere else in reports
_SHOWN_UNITS = {"m": ("mm", 1e3), "m/s": ("mm/s", 1e3), "m/s^2": ("mm/s^2", 1e3), "m^3": ("cm^3", 1e6)}


@dataclass(frozen=True)
class Contribution:
    """How much one feature moved a grade."""

    feature: str
    domain: str
    value: float | None  #: raw value (SI), None when not available
    z: float  #: standardised value (0 when not available), before the sign
    index: float  #: weight x sign x z: its share of the index (SD units)
    points: float  #: the same in the label's units (x the label line's slope, before clipping)

    def explain(self, target: str) -> str:
        """E.g. ``completion time = 188 s (+2.2 SD): -0.11 index, -0.62 grs``."""
        if self.value is None:
            return f"{feature_label(self.feature)}: not available (counted as average)"
        info = feature_info(self.feature)
        unit, scale = _SHOWN_UNITS.get(info.unit, (info.unit, 1.0)) if info is not None else ("", 1.0)
        shown = f"{self.value * scale:.3g}" + (f" {unit}" if unit not in ("", "1") else "")
        return (f"{feature_label(self.feature)} = {shown} ({self.z:+.1f} SD): "
                f"{self.index:+.2f} index, {self.points:+.2f} {target}")


@dataclass(frozen=True)
class Grade:
    """What an assessor says about one session."""

    index: float  #: the skill index (SD units, 0 = the training sessions' average)
    predictions: dict[str, float]  #: per target (the label first)
    level: str | None  #: novice / intermediate / expert from the predicted skill, if trained on skill
    domains: dict[str, float]  #: each domain's share of the index
    contributions: list[Contribution]  #: largest |index| first


@dataclass(frozen=True)
class Assessor:
    """A fitted assessor (see the module docstring); per feature its domain, sign, weight and scale."""

    task: str
    label: str
    features: tuple[str, ...]
    domains: tuple[str, ...]
    signs: tuple[int, ...]
    weights: tuple[float, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    targets: dict[str, Target]
    trained_on: dict[str, Any] = field(default_factory=dict)

    def _inputs(self, values: Mapping[str, float | None], source: str, task: str | None) -> np.ndarray:
        if not grades_task(self.task, task):
            raise AssessorError(f"{source}: task {task!r}, but the assessor grades {self.task!r} sessions")
        x = np.array([_transform(n, values.get(n)) for n in self.features])
        present = int(np.isfinite(x).sum())
        if present < MIN_PRESENT * len(self.features):
            raise AssessorError(
                f"{source}: has {present} of the {len(self.features)} features the {self.task!r} assessor uses; "
                "is it a session of the kind the model was trained on?"
            )
        return _z(x, np.array(self.center), np.array(self.scale))

    def grade(self, values: Mapping[str, float | None], source: str = "session", task: str | None = None) -> Grade:
        """The index, every target's prediction and the index's per-feature contributions.

        ``task`` is the session's (its meta ``task``): one of another task than the model's is
        refused, as its features are on another task's scale."""
        z = self._inputs(values, source, task)
        parts = np.array(self.weights) * np.array(self.signs) * z
        index = float(parts.sum())
        predictions = {name: t.predict(index) for name, t in self.targets.items()}
        level = None
        if SKILL in predictions:
            level = SKILL_LEVELS["NIE"[int(np.clip(np.rint(predictions[SKILL]), 0, 2))]]
        slope = self.targets[self.label].slope
        contributions = sorted(
            (Contribution(name, domain, values.get(name) if np.isfinite(_transform(name, values.get(name))) else None,
                          float(zi), float(part), float(slope * part))
             for name, domain, zi, part in zip(self.features, self.domains, z, parts)),
            key=lambda c: -abs(c.index),
        )
        domains = {d: float(sum(c.index for c in contributions if c.domain == d)) for d in dict.fromkeys(self.domains)}
        return Grade(index, predictions, level, domains, contributions)

    def explain(self, values: Mapping[str, float | None], top: int = 5, task: str | None = None) -> list[str]:
        """The ``top`` features that moved the grade most, in plain words."""
        return [c.explain(self.label) for c in self.grade(values, task=task).contributions[:top]]


def assessment(model: Assessor, session: Measured, top: int = 5) -> dict[str, Any]:
    """One session's grade as a report: identity, index, predictions, level, each domain's share
    and the ``top`` features that moved it, in words."""
    task = session.meta.get("task")
    grade = model.grade(session.values, session.source, task=task if isinstance(task, str) else None)
    return {
        "file": session.source, "trainee": session.meta.get("trainee"), "task": task,
        "index": round(grade.index, 4), "level": grade.level,
        "predictions": {name: round(value, 3) for name, value in grade.predictions.items()},
        "domains": {name: round(value, 4) for name, value in grade.domains.items()},
        "explanation": [c.explain(model.label) for c in grade.contributions[:top]],
    }


def fit_assessor(
    sessions: Sequence[Measured], label: str, *, task: str = "", domains: Domains = SKILL_DOMAINS,
) -> Assessor:
    """Fit the scales and the target lines of an assessor of ``label`` on the labelled ``sessions``.

    ``domains`` (default :data:`~surgsim.scoring.features.SKILL_DOMAINS`) names the features, by
    domain, with the sign that makes higher more skilled; a rubric metric may serve as one too
    (a model of other names could not be saved: :func:`load_assessor` would not know them).
    """
    labelled = [s for s in sessions if s.label(label) is not None]
    if len(labelled) < 4:
        raise AssessorError(f"an assessor needs >= 4 sessions with a numeric labels.{label}, got {len(labelled)}")
    listed = [(domain, name, sign) for domain, signed in domains.items() for name, sign in signed.items()]
    X = _matrix(labelled, [name for _, name, _ in listed])
    center, scale = _standardiser(X)
    keep = (np.isfinite(X).sum(axis=0) >= MIN_AVAILABLE * len(labelled)) & np.isfinite(scale)
    if not keep.any():
        raise AssessorError(f"none of the assessor's {len(listed)} features is available and varies across the "
                            f"{len(labelled)} labelled sessions")
    used = [item for item, k in zip(listed, keep) if k]
    per_domain = {domain: sum(d == domain for d, _, _ in used) for domain, _, _ in used}
    weights = np.array([1 / (len(per_domain) * per_domain[d]) for d, _, _ in used])
    signs = np.array([sign for _, _, sign in used])
    index = _z(X[:, keep], center[keep], scale[keep]) @ (weights * signs)
    others = sorted(set.intersection(*(set(s.meta.get("labels") or {}) for s in labelled)) - {label, SKILL})
    names = [label, *(n for n in others if all(s.label(n) is not None for s in labelled))]
    if all(s.skill is not None for s in labelled):
        names.append(SKILL)
    targets = {}
    for name in names:
        y = np.array([s.label(name) for s in labelled], dtype=float)
        targets[name] = Target(*monotone_line(index, y), float(y.min()), float(y.max()))
    trained_on = {"sessions": len(labelled), "trainees": len({str(s.meta.get("trainee")) for s in labelled})}
    return Assessor(task, label, tuple(n for _, n, _ in used), tuple(d for d, _, _ in used),
                    tuple(int(s) for s in signs), tuple(map(float, weights)), tuple(map(float, center[keep])),
                    tuple(map(float, scale[keep])), targets, trained_on)


# ------------------------------------------------------------------ files
class _TargetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    intercept: float
    slope: float = Field(ge=0)
    low: float
    high: float


class _AssessorFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    format: Literal["surgsim-assessor"]
    version: Literal[3]
    task: str
    label: str
    features: list[str] = Field(min_length=1)
    domains: list[str]
    signs: list[Literal[-1, 1]]
    weights: list[float]
    center: list[float]
    scale: list[Annotated[float, Field(gt=0)]]
    targets: dict[str, _TargetFile]
    trained_on: dict[str, Any] = {}


def _inconsistencies(model: _AssessorFile) -> list[str]:
    """What the per-field checks cannot see, each as ``field: problem``: a hand-edited feature or
    domain name, a repeated feature or a changed weight would otherwise grade silently."""
    p = len(model.features)
    problems = [f"{name}: {len(getattr(model, name))} values for {p} features"
                for name in ("domains", "signs", "weights", "center", "scale") if len(getattr(model, name)) != p]
    if problems:
        return problems
    for i, name in enumerate(model.features):
        if feature_info(name) is None and name not in METRICS:
            problems.append(f"features.{i}: {name!r} is neither a feature nor a metric surgsim measures")
        elif name in model.features[:i]:
            problems.append(f"features.{i}: {name!r} is listed twice")
    # the weights follow from the domains, 1 / (domains x the domain's features): a misspelt
    # domain makes one more domain, and every weight then disagrees
    count = Counter(model.domains)
    for i, (domain, weight) in enumerate(zip(model.domains, model.weights)):
        expected = 1 / (len(count) * count[domain])
        if not math.isclose(weight, expected, rel_tol=1e-9):
            problems.append(f"weights.{i}: {weight!r}, but {len(count)} domains with {count[domain]} "
                            f"feature(s) in {domain!r} give {expected:.6g}")
    if model.label not in model.targets:
        problems.append(f"targets: none for the label {model.label!r}")
    problems += [f"targets.{name}.low: {t.low!r} is above high {t.high!r}"
                 for name, t in model.targets.items() if t.low > t.high]
    skill = model.targets.get(SKILL)
    if skill is not None and not 0 <= skill.low <= skill.high <= len(SKILL_LEVELS) - 1:
        problems.append(f"targets.{SKILL}: range {skill.low!r}-{skill.high!r} is not within the levels' 0 (N) - 2 (E)")
    return problems


def _checked(data: dict[str, Any], where: object) -> _AssessorFile:
    """``data`` as a model file, or an AssessorError starting with ``where`` that lists every problem."""
    try:
        checked = _AssessorFile.model_validate(data)
    except ValidationError as exc:
        raise AssessorError(f"{where}: {validation_problem(exc, 'model', limit=60)}") from None
    problems = _inconsistencies(checked)
    if problems:
        raise AssessorError(f"{where}: {'; '.join(problems)}")
    return checked


def _as_file(model: Assessor) -> dict[str, Any]:
    return {
        "format": FORMAT, "version": VERSION, "task": model.task, "label": model.label,
        "features": list(model.features), "domains": list(model.domains), "signs": list(model.signs),
        "weights": list(model.weights), "center": list(model.center), "scale": list(model.scale),
        "targets": {n: {"intercept": t.intercept, "slope": t.slope, "low": t.low, "high": t.high}
                    for n, t in model.targets.items()},
        "trained_on": model.trained_on,
    }


def save_assessor(model: Assessor, path: str | Path) -> Path:
    """Write ``model`` as JSON, atomically; one that :func:`load_assessor` would refuse is not written."""
    data = _as_file(model)
    _checked(data, f"{path}: not written, it would not load")
    return atomic_write_json(path, data, allow_nan=False)


def load_assessor(path: str | Path) -> Assessor:
    """Read and check a model written by :func:`save_assessor`; errors name the file, the field and the value."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except OSError as exc:
        raise AssessorError(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise AssessorError(f"{path}: not a JSON assessor model ({exc})") from None
    if not isinstance(data, dict):
        raise AssessorError(f"{path}: not a JSON assessor model (a JSON {type(data).__name__}, not an object)")
    if data.get("format") == FORMAT and data.get("version") != VERSION:
        raise AssessorError(f"{path}: version: {data.get('version')!r}, but this surgsim reads version {VERSION} "
                            "models (targets with their training range); refit it with "
                            "`surgsim score calibrate --model assessor`")
    checked = _checked(data, path)
    targets = {n: Target(t.intercept, t.slope, t.low, t.high) for n, t in checked.targets.items()}
    return Assessor(checked.task, checked.label, tuple(checked.features), tuple(checked.domains),
                    tuple(checked.signs), tuple(checked.weights), tuple(checked.center), tuple(checked.scale),
                    targets, checked.trained_on)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a number JSON allows")


# ------------------------------------------------------------------ evaluation
def expert_novice_auc(scores: Sequence[float], skills: Sequence[str | None]) -> float | None:
    """Probability that an expert's score beats a novice's (ties count half); None without both."""
    scores = np.asarray(scores, dtype=float)
    skills = np.asarray([s or "" for s in skills])
    expert, novice = scores[skills == "E"], scores[skills == "N"]
    if not len(expert) or not len(novice):
        return None
    diff = expert[:, None] - novice[None, :]
    return float(np.mean(diff > 0) + 0.5 * np.mean(diff == 0))


def _spearman(a: Sequence[float], b: Sequence[float]) -> tuple[float | None, float | None]:
    if len(a) < 3 or np.ptp(a) == 0 or np.ptp(b) == 0:
        return None, None
    result = stats.spearmanr(a, b)
    return float(result.statistic), float(result.pvalue)


@dataclass
class AssessorEvaluation:
    """Cross-validated agreement of an assessor with the labels (every fold refits on the rest)."""

    label: str
    cv: str
    folds: int
    n: int
    spearman: float | None  #: the held-out index vs the label; None when undefined
    p_value: float | None
    spearman_predicted: float | None  #: the held-out predicted label vs the label (fold intercepts included)
    level_accuracy: float | None  #: share of sessions whose level matches labels.skill
    auc_expert_novice: float | None  #: of the index: P(an expert's index is above a novice's)
    targets: dict[str, float | None]  #: Spearman of every other predicted target (sub-scores, skill)
    predictions: list[dict[str, Any]]  #: per session: source, group, label, score (the index), level, skill, predicted


def evaluate_assessor(
    sessions: Sequence[Measured], label: str, cv: Literal["louo", "loso"] = "louo", *,
    domains: Domains = SKILL_DOMAINS,
) -> AssessorEvaluation:
    """Leave one group out: fit on the rest, grade the held-out group; rank by the index."""
    if cv not in ("louo", "loso"):
        raise AssessorError(f"cv must be 'louo' or 'loso', got {cv!r}")
    labelled = [s for s in sessions if s.label(label) is not None]
    if len(labelled) < 4:
        raise AssessorError(f"evaluation needs >= 4 sessions with a numeric labels.{label}, got {len(labelled)}")
    group = [group_of(s, cv) for s in labelled]
    folds = sorted(set(group))
    check_folds(folds, cv)
    predictions: list[dict[str, Any]] = []
    held: list[Measured] = []  # the session of each prediction
    for fold in folds:
        model = fit_assessor([s for s, g in zip(labelled, group) if g != fold], label, domains=domains)
        for s, g in zip(labelled, group):
            if g == fold:
                graded = model.grade(s.values, s.source)
                held.append(s)
                predictions.append(dict(
                    source=s.source, group=g, label=s.label(label), score=graded.index,
                    level=graded.level, skill=s.skill, predicted=graded.predictions,
                ))
    truth = [p["label"] for p in predictions]
    rho, p_value = _spearman([p["score"] for p in predictions], truth)
    rho_predicted = _spearman([p["predicted"][label] for p in predictions], truth)[0]
    levels = [p for p in predictions if p["skill"] is not None and p["level"] is not None]
    accuracy = float(np.mean([SKILL_LEVELS[p["skill"]] == p["level"] for p in levels])) if levels else None
    others = {}
    for name in sorted({n for p in predictions for n in p["predicted"]} - {label}):
        pairs = [(p["predicted"][name], s.label(name)) for p, s in zip(predictions, held)
                 if name in p["predicted"] and s.label(name) is not None]
        others[name] = _spearman(*zip(*pairs))[0] if pairs else None
    auc = expert_novice_auc([p["score"] for p in predictions], [p["skill"] for p in predictions])
    return AssessorEvaluation(label, cv, len(folds), len(predictions), rho, p_value, rho_predicted, accuracy, auc,
                              others, predictions)
