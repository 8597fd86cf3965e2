"""A learned, explainable assessor: ridge regression of grades on standardised session features.

Why linear and regularised: skills datasets are small (JIGSAWS: 8 surgeons, ~40 trials per
task), so a model must be simple enough not to memorise surgeons, and its grade must be
explainable as a sum of per-feature contributions a trainer can read.

- Inputs: the features of :mod:`surgsim.scoring.features` (or any numeric values, e.g. the
  rubric metrics), each log-transformed when it is a positive scale, then standardised with the
  training sessions' mean and SD. Features missing in over 20 % of the training sessions, or
  constant there, are left out; a missing value counts as the training mean (contributes 0).
- Targets: the label (e.g. ``grs``), every other numeric label that all training sessions
  carry (the six OSATS sub-scores of JIGSAWS), and the skill level (N=0, I=1, E=2) when all carry
  one; each gets its own ridge penalty. The predicted skill gives the level.
- Penalty selection: inner leave-one-trainee-out cross-validation on the training sessions only
  (leave-one-session-out with fewer than 3 trainees): the penalty with the lowest inner squared
  error. :func:`evaluate_assessor` refits everything, selection included, in every outer fold,
  so the held-out trainee (or trial) is never seen: nested cross-validation.
- Explanation: the grade is the training mean plus, per feature, weight x standardised value:
  :meth:`Assessor.explain` lists the features that moved it most, in the label's units.

Models are saved as JSON (never pickled) and checked when loaded.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from scipy import stats

from surgsim._files import atomic_write_json
from surgsim.errors import SurgsimError, validation_problem
from surgsim.scoring.calibrate import SKILL_LEVELS, Measured, group_of
from surgsim.scoring.features import feature_info, feature_label, model_inputs

#: ridge penalties tried by the inner cross-validation (on standardised features)
ALPHAS = tuple(float(a) for a in np.logspace(-1, 4, 11))
#: a feature is used when available in at least this share of the training sessions
MIN_AVAILABLE = 0.8
#: a session graded by a model must have at least this share of the model's features
MIN_PRESENT = 0.5
SKILL = "skill"
FORMAT = "surgsim-assessor"


class AssessorError(SurgsimError):
    """Sessions that cannot train or be graded by an assessor, or a bad model file."""


# ------------------------------------------------------------------ linear algebra
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
    with np.errstate(all="ignore"):
        center = np.nan_to_num(np.nanmean(X, axis=0))
        scale = np.nanstd(X, axis=0)
    return center, np.where(scale > 0, scale, np.inf)


def _z(X: np.ndarray, center: np.ndarray, scale: np.ndarray) -> np.ndarray:
    return np.nan_to_num((X - center) / scale)  # missing -> 0: the training mean


def _ridge(Z: np.ndarray, y: np.ndarray, alphas: Sequence[float]) -> tuple[float, np.ndarray]:
    """Intercept and weights (len(alphas), p) of ridge regressions of y on Z, one per penalty."""
    u, s, vt = np.linalg.svd(Z, full_matrices=False)
    uy = u.T @ (y - y.mean())
    shrink = s / (s * s + np.asarray(alphas)[:, None])  # (len(alphas), k)
    return float(y.mean()), (shrink * uy) @ vt


def _inner_groups(sessions: Sequence[Measured]) -> np.ndarray:
    """Inner folds: the trainee, or each session alone when fewer than 3 trainees."""
    try:
        groups = np.array([group_of(s, "louo") for s in sessions])
    except SurgsimError:
        groups = np.array([])
    return groups if len(set(groups)) >= 3 else np.arange(len(sessions)).astype(str)


def select_alpha(X: np.ndarray, y: np.ndarray, groups: np.ndarray,
                 alphas: Sequence[float] = ALPHAS) -> tuple[float, float]:
    """The penalty with the lowest leave-one-group-out squared error, and that RMSE.

    Every fold standardises on its own training rows: the held-out group shapes nothing."""
    errors = np.zeros(len(alphas))
    for group in np.unique(groups):
        train = groups != group
        center, scale = _standardiser(X[train])
        intercept, weights = _ridge(_z(X[train], center, scale), y[train], alphas)
        predicted = intercept + _z(X[~train], center, scale) @ weights.T  # (held-out, alphas)
        errors += ((predicted - y[~train, None]) ** 2).sum(axis=0)
    best = int(np.argmin(errors))
    return float(alphas[best]), float(math.sqrt(errors[best] / len(y)))


# ------------------------------------------------------------------ the model
@dataclass(frozen=True)
class Target:
    """One predicted quantity: intercept + weights . z."""

    intercept: float
    weights: tuple[float, ...]
    alpha: float  #: the ridge penalty the inner cross-validation chose
    cv_rmse: float  #: its inner cross-validated RMSE (label units)


@dataclass(frozen=True)
class Contribution:
    """How much one feature moved a grade."""

    feature: str
    value: float | None  #: raw value (SI), None when not available
    z: float  #: standardised model input (0 when not available)
    points: float  #: weight x z, in the target's units

    def explain(self, target: str) -> str:
        """E.g. ``right: peak speed (low-passed) = 0.0943 m/s (+1.3 SD): +1.20 grs``."""
        if self.value is None:
            return f"{feature_label(self.feature)}: not available (counted as average)"
        info = feature_info(self.feature)
        unit = info.unit if info is not None else ""
        shown = f"{self.value:.3g}" + (f" {unit}" if unit not in ("", "1") else "")
        return f"{feature_label(self.feature)} = {shown} ({self.z:+.1f} SD): {self.points:+.2f} {target}"


@dataclass(frozen=True)
class Grade:
    """What an assessor says about one session."""

    predictions: dict[str, float]  #: per target (the label first)
    level: str | None  #: novice / intermediate / expert from the predicted skill, if trained on skill
    contributions: list[Contribution]  #: to the label's prediction, largest |points| first


@dataclass(frozen=True)
class Assessor:
    """A fitted linear assessor (see the module docstring)."""

    task: str
    label: str
    features: tuple[str, ...]
    center: tuple[float, ...]
    scale: tuple[float, ...]
    targets: dict[str, Target]
    trained_on: dict[str, Any] = field(default_factory=dict)

    def _inputs(self, values: dict[str, float | None], source: str = "session") -> np.ndarray:
        x = np.array([_transform(n, values.get(n)) for n in self.features])
        present = int(np.isfinite(x).sum())
        if present < MIN_PRESENT * len(self.features):
            raise AssessorError(
                f"{source}: has {present} of the {len(self.features)} features the {self.task!r} assessor uses; "
                "is it a session of the kind the model was trained on?"
            )
        return _z(x, np.array(self.center), np.array(self.scale))

    def grade(self, values: dict[str, float | None], source: str = "session") -> Grade:
        """Predict every target for one session's feature values and explain the label's."""
        z = self._inputs(values, source)
        predictions = {name: t.intercept + float(np.dot(t.weights, z)) for name, t in self.targets.items()}
        level = None
        if SKILL in predictions:
            level = SKILL_LEVELS["NIE"[int(np.clip(np.rint(predictions[SKILL]), 0, 2))]]
        weights = self.targets[self.label].weights
        contributions = sorted(
            (Contribution(name, values.get(name) if np.isfinite(_transform(name, values.get(name))) else None,
                          float(zi), float(w * zi))
             for name, w, zi in zip(self.features, weights, z)),
            key=lambda c: -abs(c.points),
        )
        return Grade(predictions, level, contributions)

    def explain(self, values: dict[str, float | None], top: int = 5) -> list[str]:
        """The ``top`` features that moved the label's prediction most, in plain words."""
        return [c.explain(self.label) for c in self.grade(values).contributions[:top]]


def fit_assessor(
    sessions: Sequence[Measured], label: str, *, task: str = "", features: Sequence[str] | None = None,
    alphas: Sequence[float] = ALPHAS,
) -> Assessor:
    """Fit an assessor of ``label`` on the labelled ``sessions`` (see the module docstring).

    ``features`` defaults to the :func:`~surgsim.scoring.features.model_inputs` (every value, for
    values that are not session features, e.g. rubric metrics) available in at least
    :data:`MIN_AVAILABLE` of them.
    """
    labelled = [s for s in sessions if s.label(label) is not None]
    if len(labelled) < 4:
        raise AssessorError(f"an assessor needs >= 4 sessions with a numeric labels.{label}, got {len(labelled)}")
    if features is None:
        names = sorted({n for s in labelled for n in s.values})
        names = model_inputs(names) or names
        features = [n for n in names
                    if sum(np.isfinite(_transform(n, s.values.get(n))) for s in labelled) >= MIN_AVAILABLE * len(labelled)]
    X = _matrix(labelled, features)
    center, scale = _standardiser(X)
    keep = np.isfinite(scale)
    if not keep.any():
        raise AssessorError(f"no feature varies across the {len(labelled)} labelled sessions")
    features, X, center, scale = [f for f, k in zip(features, keep) if k], X[:, keep], center[keep], scale[keep]
    groups = _inner_groups(labelled)
    targets: dict[str, Target] = {}
    others = sorted(set.intersection(*(set((s.meta.get("labels") or {})) for s in labelled)) - {label, SKILL})
    names = [label, *(n for n in others if all(s.label(n) is not None for s in labelled))]
    if all(s.skill is not None for s in labelled):
        names.append(SKILL)
    Z = _z(X, center, scale)
    for name in names:
        y = np.array([s.label(name) for s in labelled], dtype=float)
        alpha, rmse = select_alpha(X, y, groups, alphas)
        intercept, weights = _ridge(Z, y, [alpha])
        targets[name] = Target(intercept, tuple(float(w) for w in weights[0]), alpha, rmse)
    trained_on = {"sessions": len(labelled), "trainees": len({str(s.meta.get("trainee")) for s in labelled})}
    return Assessor(task, label, tuple(features), tuple(map(float, center)), tuple(map(float, scale)), targets,
                    trained_on)


# ------------------------------------------------------------------ files
class _TargetFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    intercept: float
    weights: list[float]
    alpha: float = Field(gt=0)
    cv_rmse: float = Field(ge=0)


class _AssessorFile(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)
    format: Literal["surgsim-assessor"]
    version: Literal[1]
    task: str
    label: str
    features: list[str] = Field(min_length=1)
    center: list[float]
    scale: list[float]
    targets: dict[str, _TargetFile]
    trained_on: dict[str, Any] = {}

    @model_validator(mode="after")
    def _consistent(self) -> "_AssessorFile":
        p = len(self.features)
        if len(self.center) != p or len(self.scale) != p:
            raise ValueError(f"{p} features but {len(self.center)} centers and {len(self.scale)} scales")
        if any(s <= 0 for s in self.scale):
            raise ValueError("every scale must be > 0")
        if self.label not in self.targets:
            raise ValueError(f"no target for the label {self.label!r}")
        for name, target in self.targets.items():
            if len(target.weights) != p:
                raise ValueError(f"target {name!r} has {len(target.weights)} weights for {p} features")
        return self


def save_assessor(model: Assessor, path: str | Path) -> Path:
    """Write ``model`` as JSON, atomically."""
    data = {
        "format": FORMAT, "version": 1, "task": model.task, "label": model.label,
        "features": list(model.features), "center": list(model.center), "scale": list(model.scale),
        "targets": {n: {"intercept": t.intercept, "weights": list(t.weights), "alpha": t.alpha, "cv_rmse": t.cv_rmse}
                    for n, t in model.targets.items()},
        "trained_on": model.trained_on,
    }
    return atomic_write_json(path, data, allow_nan=False)


def load_assessor(path: str | Path) -> Assessor:
    """Read and check a model written by :func:`save_assessor`; errors name the file and field."""
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"), parse_constant=_refuse_constant)
    except OSError as exc:
        raise AssessorError(f"{path}: cannot read ({exc.strerror})") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise AssessorError(f"{path}: not a JSON assessor model ({exc})") from None
    try:
        checked = _AssessorFile.model_validate(data)
    except ValidationError as exc:
        raise AssessorError(f"{path}: {validation_problem(exc, 'model', limit=60)}") from None
    targets = {n: Target(t.intercept, tuple(t.weights), t.alpha, t.cv_rmse) for n, t in checked.targets.items()}
    return Assessor(checked.task, checked.label, tuple(checked.features), tuple(checked.center),
                    tuple(checked.scale), targets, checked.trained_on)


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
    """Cross-validated agreement of an assessor's predictions with the labels (nested CV)."""

    label: str
    cv: str
    folds: int
    n: int
    spearman: float | None  #: predicted vs true label; None when undefined
    p_value: float | None
    level_accuracy: float | None  #: share of sessions whose level matches labels.skill
    auc_expert_novice: float | None  #: of the predicted label: P(expert scores above novice)
    targets: dict[str, float | None]  #: Spearman of every other predicted target (sub-scores, skill)
    alphas: dict[str, list[float]]  #: per target, the penalty chosen in each outer fold
    predictions: list[dict[str, Any]]  #: per session: source, group, label, score, level, skill, predicted


def evaluate_assessor(
    sessions: Sequence[Measured], label: str, cv: Literal["louo", "loso"] = "louo", *,
    features: Sequence[str] | None = None,
) -> AssessorEvaluation:
    """Leave one group out: fit (penalties chosen by inner CV on the rest), predict the held-out group."""
    if cv not in ("louo", "loso"):
        raise AssessorError(f"cv must be 'louo' or 'loso', got {cv!r}")
    labelled = [s for s in sessions if s.label(label) is not None]
    if len(labelled) < 4:
        raise AssessorError(f"evaluation needs >= 4 sessions with a numeric labels.{label}, got {len(labelled)}")
    group = [group_of(s, cv) for s in labelled]
    folds = sorted(set(group))
    if len(folds) < 2:
        raise AssessorError(f"--cv {cv} needs sessions from >= 2 groups, all are in {folds}")
    predictions: list[dict[str, Any]] = []
    held: list[Measured] = []  # the session of each prediction
    alphas: dict[str, list[float]] = {}
    for fold in folds:
        train = [s for s, g in zip(labelled, group) if g != fold]
        model = fit_assessor(train, label, features=features)
        for name, target in model.targets.items():
            alphas.setdefault(name, []).append(target.alpha)
        for s, g in zip(labelled, group):
            if g == fold:
                graded = model.grade(s.values, s.source)
                held.append(s)
                predictions.append(dict(
                    source=s.source, group=g, label=s.label(label), score=graded.predictions[label],
                    level=graded.level, skill=s.skill, predicted=graded.predictions,
                ))
    rho, p_value = _spearman([p["score"] for p in predictions], [p["label"] for p in predictions])
    levels = [p for p in predictions if p["skill"] is not None and p["level"] is not None]
    accuracy = float(np.mean([SKILL_LEVELS[p["skill"]] == p["level"] for p in levels])) if levels else None
    others = {}
    for name in sorted({n for p in predictions for n in p["predicted"]} - {label}):
        pairs = [(p["predicted"][name], s.label(name)) for p, s in zip(predictions, held)
                 if name in p["predicted"] and s.label(name) is not None]
        others[name] = _spearman(*zip(*pairs))[0] if pairs else None
    auc = expert_novice_auc([p["score"] for p in predictions], [p["skill"] for p in predictions])
    return AssessorEvaluation(label, cv, len(folds), len(predictions), rho, p_value, accuracy, auc, others,
                              alphas, predictions)

