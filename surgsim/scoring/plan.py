"""A training plan from a trainee's history: proficiency-based progression and the next exercise.

Progression (per exercise, i.e. session task) climbs the ladder easy -> medium -> hard. An
attempt *passes* when its score reaches the pass mark of its exercise and difficulty and it has
no critical error (a session report's ``critical_errors``; none when the field is absent).
``passes_to_advance`` passes in a row at a difficulty complete it (a fail at that difficulty
resets its run; attempts at other difficulties do not); a completed difficulty stays completed.
The rung to practise is the one above the highest completed (easy when none is), so a trainee
who shows proficiency at medium first is not sent back to easy. A session with no difficulty in
its metadata (imported kinematics) counts as ``medium``, and the plan says so.

The next exercise comes from the trainee's weakest metrics: the metric that cost the most points,
on average over the recent attempts that graded it (each exercise's last ``recent_attempts``, so
an exercise practised a while ago keeps its record), names the skill to train, and
:data:`SKILLS` names the exercise that trains it; a metric within the expert band on average
(|z| <= 1) is no weakness. Critical errors come first: while a recent attempt has one, the plan
sends the trainee back to that exercise. With no weakness left, the lowest open rung comes next,
and once every exercise practised is completed, one not practised yet (:data:`EXERCISES`).

Pass marks and the run length are settings, read from a small YAML file (:func:`load_settings`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal, Sequence

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from surgsim.errors import SurgsimError, validation_problem, yaml_problem
from surgsim.scoring.metrics import METRICS, apart_from
from surgsim.scoring.rubric import default_rubric

LADDER = ("easy", "medium", "hard")
#: the difficulty of a session whose metadata has none (or one not on the ladder)
ASSUMED_DIFFICULTY = "medium"

NEEDLE, PATH, INCISION = "NeedleReach", "SurgicalPath", "Incision"
#: the simulator's exercises, in the order a new trainee meets them
EXERCISES = (NEEDLE, PATH, INCISION)
#: metric -> (the skill it measures, the exercise that trains it); None: the exercise in which the
#: points were lost (completion and speed of the task itself; no exercise trains two hands or a gripper)
SKILLS: dict[str, tuple[str, str | None]] = {
    "ldlj": ("smooth, fluent motion", NEEDLE),
    "sparc": ("smooth, fluent motion", NEEDLE),
    "relative_acceleration": ("smooth, fluent motion", NEEDLE),
    "movements": ("smooth, fluent motion", NEEDLE),
    "idle_fraction": ("smooth, fluent motion", NEEDLE),
    "mean_speed": ("smooth, fluent motion", NEEDLE),
    "peak_speed": ("smooth, fluent motion", NEEDLE),
    "path_length": ("direct, economical reaches", NEEDLE),
    "economy_of_motion": ("direct, economical reaches", NEEDLE),
    "workspace_volume": ("direct, economical reaches", NEEDLE),
    "final_error": ("accurate targeting", NEEDLE),
    "deviation_mean": ("following a planned path with clearance", PATH),
    "deviation_rms": ("following a planned path with clearance", PATH),
    "deviation_max": ("following a planned path with clearance", PATH),
    "critical_contacts": ("following a planned path with clearance", PATH),
    "critical_contact_time": ("following a planned path with clearance", PATH),
    "depth_perception": ("depth control and tissue handling", INCISION),
    "tissue_damage": ("depth control and tissue handling", INCISION),
    "contact_force_peak": ("depth control and tissue handling", INCISION),
    "contact_force_time": ("depth control and tissue handling", INCISION),
    "completion_time": ("completing the task in time", None),
    "success": ("completing the task", None),
    "bimanual_dexterity": ("coordinating both hands", None),
    "gripper_travel": ("economical gripper use", None),
}


class PlanError(SurgsimError):
    """Plan settings that cannot be used; the message names the file, field and value."""


Difficulty = Literal["easy", "medium", "hard"]
Mark = Annotated[float, Field(ge=0.0, le=100.0)]


@lru_cache(maxsize=None)
def rubric_pass_marks(exercise: str) -> dict[str, float]:
    """Pass marks from the levels of the shipped rubric that grades ``exercise`` (its task's, else
    ``generic.yaml``), so that they follow it when it is re-made: easy asks for its intermediate
    grade, hard for its expert grade, medium halfway."""
    levels = default_rubric(exercise).levels
    low, high = levels.intermediate, levels.expert
    return {"easy": low, "medium": round((low + high) / 2, 2), "hard": high}


class PlanSettings(BaseModel):
    """How progression is judged. ``pass_score`` maps an exercise (a session task, or
    ``default`` for every exercise) to pass marks per difficulty; a mark not given is the
    ``default`` entry's, else :func:`rubric_pass_marks`'."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    passes_to_advance: int = Field(default=3, ge=1, le=100, strict=True)
    #: the next exercise is chosen from this many latest attempts
    recent_attempts: int = Field(default=5, ge=1, le=1000, strict=True)
    pass_score: dict[str, dict[Difficulty, Mark]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rising(self) -> "PlanSettings":
        """A harder rung never asks for less (an inverted ladder is a typo, not a choice), once the
        marks given are merged with the shipped rubrics' for every exercise they touch."""
        touched = [name for name in self.pass_score if name != "default"]
        touched += [name for name in EXERCISES if "default" in self.pass_score and name not in touched]
        for exercise in touched:
            marks = [(d, self.mark(exercise, d)) for d in LADDER]
            for (easier, low), (harder, high) in zip(marks, marks[1:]):
                if low > high:
                    raise ValueError(f"pass_score: {exercise} would ask {low:g} at {easier} but {high:g} at "
                                     f"{harder} (with the marks not given taken from its shipped rubric); "
                                     "marks must not fall up the ladder easy -> medium -> hard")
        return self

    def mark(self, exercise: str, difficulty: str) -> float:
        """The pass mark of ``exercise`` at ``difficulty``."""
        for marks in (self.pass_score.get(exercise, {}), self.pass_score.get("default", {}),
                      rubric_pass_marks(exercise)):
            if difficulty in marks:
                return marks[difficulty]  # type: ignore[index]
        raise KeyError(f"difficulty {difficulty!r} is not on the ladder {LADDER}")


def load_settings(path: str | Path | None) -> PlanSettings:
    """Read and check plan settings (YAML); None gives the defaults. :class:`PlanError` names the
    file, field and value of a bad one."""
    if path is None:
        return PlanSettings()
    path = Path(path)
    if not path.is_file():
        raise PlanError(f"{path}: no such plan settings file")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        problem = yaml_problem(exc) if isinstance(exc, yaml.YAMLError) else str(exc)
        raise PlanError(f"{path}: not valid YAML ({problem})") from None
    if not isinstance(data, dict):
        raise PlanError(f"{path}: expected a mapping (passes_to_advance, recent_attempts, pass_score), "
                        f"got {type(data).__name__}")
    try:
        return PlanSettings.model_validate(data)
    except ValidationError as exc:
        raise PlanError(f"{path}: {validation_problem(exc, '(top level)', field='field ', limit=60)}") from None


@dataclass(frozen=True)
class Attempt:
    """One history attempt judged against its pass mark."""

    number: int  #: 1-based, in the order made
    exercise: str
    difficulty: str
    difficulty_assumed: bool  #: the session's metadata had no difficulty on the ladder
    score: float
    pass_score: float
    critical_errors: tuple[str, ...]  #: each in words
    passed: bool
    why: str  #: the verdict in words


@dataclass
class Progress:
    """Where a trainee stands on one exercise's ladder."""

    exercise: str
    completed: list[str] = field(default_factory=list)  #: difficulties completed, in ladder order
    streak: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LADDER, 0))  #: current runs of passes
    current: str | None = LADDER[0]  #: the difficulty to practise; None once hard is completed
    attempts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(LADDER, 0))  #: per difficulty


@dataclass(frozen=True)
class Weakness:
    """A metric that cost points in the recent attempts."""

    metric: str
    points_lost: float  #: mean over the recent attempts that graded it
    sd: float | None  #: mean SDs beyond the experts' centre on the worse side, over the attempts that graded it
    side: str  #: "higher" or "lower" than experts where it cost points, or "away from" (both ways)
    attempts: int  #: recent attempts that graded it
    skill: str
    exercise: str  #: the exercise that trains it


@dataclass(frozen=True)
class NextExercise:
    """What to practise next, and why."""

    exercise: str
    difficulty: str
    reason: str
    metric: str | None  #: the weakest metric it trains, when that decided


@dataclass
class TrainingPlan:
    """A trainee's judged attempts, progression per exercise, weakest metrics and next exercise."""

    attempts: list[Attempt]
    progress: dict[str, Progress]
    weaknesses: list[Weakness]
    next: NextExercise
    settings: PlanSettings


def exercise_of(record: dict[str, Any]) -> str:
    """The exercise of an attempt: its task, else the rubric that graded it (``generic``)."""
    task = record.get("task")
    return task if isinstance(task, str) and task else str(record.get("rubric") or "generic")


def _describe(error: Any) -> str:
    """A critical error in words: the report's ``what``, else its ``kind``."""
    if isinstance(error, dict):
        return str(error.get("what") or error.get("kind") or "critical error")
    return str(error)


def judge(records: Sequence[dict[str, Any]], settings: PlanSettings) -> list[Attempt]:
    """Each history record (in the order made) as a pass or a fail, with the reason."""
    attempts = []
    for number, record in enumerate(records, 1):
        exercise = exercise_of(record)
        given = record.get("difficulty")
        difficulty = given if given in LADDER else ASSUMED_DIFFICULTY
        score, mark = float(record["score"]), settings.mark(exercise, difficulty)
        errors = tuple(map(_describe, record.get("critical_errors") or []))
        if errors:
            why = f"failed: {len(errors)} critical error(s): {'; '.join(errors)}"
        elif score >= mark:
            why = f"passed: score {apart_from(score, mark)} >= {mark:g}"
        else:
            why = f"failed: score {apart_from(score, mark)} below the pass mark {mark:g}"
        attempts.append(Attempt(number, exercise, difficulty, given not in LADDER, score, mark, errors,
                                why.startswith("passed"), why))
    return attempts


def progression(attempts: Sequence[Attempt], settings: PlanSettings) -> dict[str, Progress]:
    """Each exercise's ladder after ``attempts`` (see the module docstring for the rules)."""
    progress: dict[str, Progress] = {}
    for attempt in attempts:
        state = progress.setdefault(attempt.exercise, Progress(attempt.exercise))
        d = attempt.difficulty
        state.attempts[d] += 1
        state.streak[d] = state.streak[d] + 1 if attempt.passed else 0
        if state.streak[d] >= settings.passes_to_advance and d not in state.completed:
            state.completed = [x for x in LADDER if x in state.completed or x == d]
    for state in progress.values():
        top = max((LADDER.index(d) for d in state.completed), default=-1)
        state.current = LADDER[top + 1] if top + 1 < len(LADDER) else None
    return progress


def _worse(metric: str, z: float) -> float:
    """SDs beyond the experts' centre on the metric's worse side (both sides for a two-sided one)."""
    better = METRICS[metric].better
    return abs(z) if better == "both" else max(z if better == "lower" else -z, 0.0)


def weaknesses(records: Sequence[dict[str, Any]]) -> list[Weakness]:
    """The metrics that cost points in ``records``, most costly first (mean points lost over the
    records that graded each, and mean SDs from the expert reference over the same records)."""
    lost: dict[str, list[float]] = defaultdict(list)
    z: dict[str, list[tuple[float, bool]]] = defaultdict(list)  # (z, whether it cost points) per record
    where: dict[str, tuple[float, str]] = {}  # the exercise where each metric cost the most
    for record in records:
        for name, item in record.get("metrics", {}).items():
            points = item.get("points_lost")
            if points is None or name not in SKILLS:
                continue
            lost[name].append(points)
            if item.get("z") is not None:
                z[name].append((item["z"], points > 0))  # the metric's worse side: see _worse
            if points > where.get(name, (-1.0, ""))[0]:
                where[name] = (points, exercise_of(record))
    found = []
    for name, points in lost.items():
        mean = sum(points) / len(points)
        if mean > 0:
            skill, exercise = SKILLS[name]
            # how far to the worse side of experts, over every attempt that graded it (an attempt
            # better than experts counts 0, not its distance); the side from those it cost
            sd = sum(_worse(name, v) for v, _ in z[name]) / len(z[name]) if z[name] else None
            costly = [v for v, cost in z[name] if cost]
            side = "higher" if costly and min(costly) > 0 else "lower" if costly and max(costly) < 0 else "away from"
            found.append(Weakness(name, mean, sd, side, len(points), skill, exercise or where[name][1]))
    return sorted(found, key=lambda w: (-w.points_lost, w.metric))


def _standing(exercise: str, progress: dict[str, Progress], settings: PlanSettings) -> tuple[str, str]:
    """(difficulty to practise, where the trainee stands there in words)."""
    state = progress.get(exercise, Progress(exercise))
    difficulty = state.current or LADDER[-1]
    mark, needed = settings.mark(exercise, difficulty), settings.passes_to_advance
    if state.current is None:
        return difficulty, f"every difficulty of {exercise} is completed"
    so_far = (f"{state.streak[difficulty]} of {needed} passes in a row so far" if state.attempts[difficulty]
              else f"no attempt at {difficulty} yet; {needed} passes in a row complete it")
    return difficulty, f"{so_far} (score {mark:g} or more, no critical error)"


def recent(attempts: Sequence[Attempt], n: int) -> list[int]:
    """Indices, in order, of each exercise's last ``n`` attempts: an exercise practised a while ago
    keeps its recent record (its errors and weak metrics) while the trainee works on another."""
    counts: dict[str, int] = defaultdict(int)
    keep = []
    for i in range(len(attempts) - 1, -1, -1):
        exercise = attempts[i].exercise
        if counts[exercise] < n:
            counts[exercise] += 1
            keep.append(i)
    return keep[::-1]


def choose_next(
    attempts: Sequence[Attempt], progress: dict[str, Progress], found: Sequence[Weakness], settings: PlanSettings
) -> NextExercise:
    """The exercise to practise next (see the module docstring)."""
    window = [attempts[i] for i in recent(attempts, settings.recent_attempts)]
    where = (f"the last {len(window)} attempt(s)" if len({a.exercise for a in window}) == 1
             else f"the last {settings.recent_attempts} attempt(s) of each exercise")
    # an exercise completed up to hard is done, whatever errors its last attempts had on the way
    critical = [a for a in window if a.critical_errors and progress[a.exercise].current is not None]
    if critical:
        exercise = critical[-1].exercise
        mine = [a for a in window if a.exercise == exercise]
        difficulty, standing = _standing(exercise, progress, settings)
        reason = (f"{sum(bool(a.critical_errors) for a in mine)} of the last {len(mine)} {exercise} attempt(s) "
                  f"had a critical error (latest: attempt {critical[-1].number}: {critical[-1].critical_errors[0]}); "
                  f"an attempt with one never passes, so practise {exercise} at {difficulty} until attempts are "
                  f"free of them; {standing}")
        return NextExercise(exercise, difficulty, reason, None)
    within_band = False
    for weakness in found:
        if progress.get(weakness.exercise, Progress(weakness.exercise)).current is None:
            continue  # that exercise is mastered: the next weakness decides
        if weakness.sd is not None and weakness.sd <= 1.0:
            within_band = True
            continue  # within the expert band on average: not a weakness to train
        difficulty, standing = _standing(weakness.exercise, progress, settings)
        label = METRICS[weakness.metric].label
        side = "" if weakness.sd is None else (
            f", {weakness.sd:.1f} SD {weakness.side} {'experts' if weakness.side == 'away from' else 'than experts'}")
        among = " of the metrics outside the expert band" if within_band else ""
        reason = (f"{label} cost the most points{among} in {where} "
                  f"({weakness.points_lost:.1f} points on average{side}); {weakness.exercise} trains "
                  f"{weakness.skill}: practise it at {difficulty}; {standing}")
        return NextExercise(weakness.exercise, difficulty, reason, weakness.metric)
    open_ = [state for state in progress.values() if state.current is not None]
    if not open_:
        new = [name for name in EXERCISES if name not in progress]
        if new and any(name in EXERCISES for name in progress):  # a simulator trainee
            return NextExercise(new[0], LADDER[0], f"every exercise practised is completed up to hard; "
                                f"{new[0]} has not been practised yet: start it at {LADDER[0]}", None)
        exercise = attempts[-1].exercise
        return NextExercise(exercise, LADDER[-1], f"every exercise is completed up to hard; "
                            f"keep up {exercise} at hard", None)
    state = min(open_, key=lambda s: LADDER.index(s.current))  # type: ignore[arg-type]
    difficulty, standing = _standing(state.exercise, progress, settings)
    reason = (f"no metric outside the expert band in {where} that an open exercise trains; "
              f"{state.exercise} is the lowest open rung of the ladder: practise it at {difficulty}; {standing}")
    return NextExercise(state.exercise, difficulty, reason, None)


def training_plan(records: Sequence[dict[str, Any]], settings: PlanSettings | None = None) -> TrainingPlan:
    """The plan of a trainee from their history records (:meth:`History.attempts`, in order)."""
    if not records:
        raise PlanError("no attempts to plan from")
    settings = settings or PlanSettings()
    attempts = judge(records, settings)
    progress = progression(attempts, settings)
    found = weaknesses([records[i] for i in recent(attempts, settings.recent_attempts)])
    return TrainingPlan(attempts, progress, found, choose_next(attempts, progress, found, settings), settings)
