"""``surgsim score DIR | calibrate | evaluate | assess | plan``: grade recorded sessions like a skills lab."""

from __future__ import annotations

import datetime
from pathlib import Path
from typing import List, Optional

import typer
from typer.core import TyperGroup

from surgsim.cli._common import app, check_writable, fail


class _ScoreGroup(TyperGroup):
    """``surgsim score DIR ...`` is short for ``surgsim score report DIR ...``."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            args = ["report", *args]
        return super().parse_args(ctx, args)


score_app = typer.Typer(
    cls=_ScoreGroup,
    help=(
        "Grade recorded sessions: `surgsim score DIR --out report/` writes a JSON and PNG per session, "
        "summary.csv and cohort.png; `score calibrate` fits a rubric from labelled sessions; "
        "`score evaluate` cross-validates it against a label; `score assess` grades with a fitted assessor; "
        "`score plan TRAINEE --history DIR` writes a trainee's training plan."
    ),
    no_args_is_help=True,
)
app.add_typer(score_app, name="score")

_WORKERS_HELP = "Parallel worker processes (default: one per CPU)."


def _workers(value: Optional[int]) -> int:
    from surgsim.scoring.batch import workers_default

    if value is not None and value < 1:
        fail(f"--workers must be >= 1, got {value}")
    return value or workers_default()


def _inputs(paths: List[Path]) -> List[Path]:
    """``paths``, once each exists: a missing one is a usage error (a typo must not quietly grade
    a smaller cohort)."""
    for path in paths:
        if not path.exists():
            fail(f"{path}: no such file or folder")
    return paths


def _no_sessions(paths: List[Path]) -> None:
    """The usage error for inputs with no session file, pointing at unfinished recordings if any."""
    journals = [j for path in paths for j in ([path] if path.is_file() else path.rglob("*.partial"))
                if j.name.endswith(".partial")]
    hint = (f"; {len(journals)} unfinished recording journal(s) (*.partial, e.g. {journals[0]}): "
            "`surgsim session recover FILE` turns one into a session marked incomplete") if journals else ""
    fail(f"no session files (*.parquet) in {', '.join(map(str, paths))}{hint}")


def _report_failures(failures, total: int) -> None:
    """List the files that failed, then exit non-zero when any did."""
    if not failures:
        return
    typer.secho(f"{len(failures)} of {total} files failed:", fg=typer.colors.RED, err=True)
    for failure in failures:
        typer.echo(f"  {failure}", err=True)
    fail(f"{len(failures)} file(s) could not be used (listed above)", code=1)


@score_app.command("report")
def report_cmd(
    paths: List[Path] = typer.Argument(..., help="Session files (.parquet) or folders searched recursively."),
    out: Path = typer.Option(..., "--out", "-o", help="Report folder (created)."),
    rubric: Optional[Path] = typer.Option(None, "--rubric", help="Rubric YAML (default: the session task's shipped rubric)."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help=_WORKERS_HELP),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Draw a PNG per session and the cohort plot."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
    any_task: bool = typer.Option(False, "--any-task", help="Grade sessions of any task with --rubric (else only its own task's)."),
    history: Optional[Path] = typer.Option(None, "--history", help="Also add each graded session to this per-trainee history folder (see `score plan`)."),
) -> None:
    """Grade every session: <out>/<name>.json (+ .png), summary.csv, failures.csv, cohort.png."""
    _inputs(paths)
    check_writable(out, "--out", folder=True)
    store = _history(history) if history is not None else None
    from surgsim.scoring.batch import find_sessions, grade_sessions
    from surgsim.scoring.rubric import RubricError

    found, missing = find_sessions(paths)
    if not found and not missing:
        _no_sessions(paths)
    if rubric is not None and not any_task:
        _check_rubric_task(rubric, [path for path, _ in found])
    try:
        batch = grade_sessions(
            found, out, failures=missing, rubric=rubric, workers=_workers(workers), figures=figures, progress=progress, any_task=any_task
        )
    except RubricError as exc:
        fail(str(exc))
    for row in batch.results:
        grade = f"{row['score']:.1f} ({row['level']})" if row["gradable"] else f"not gradable ({row['reason']})"
        motion = row.get("metric_score")
        if row["gradable"] and motion is not None and motion - row["score"] >= 0.05:
            grade += f", by its critical errors: the motion alone scored {motion:.1f}"
        typer.echo(f"{row['file']}: {grade}")
    ungraded = sum(not row["gradable"] for row in batch.results)
    drawn = figures and ungraded < len(batch.results)
    written = ["summary.csv", "failures.csv"] + (["per-session JSON"] if batch.results else []) + (
        ["PNG per graded session", "cohort.png"] if drawn else [])
    typer.echo(f"scored {len(batch.results) - ungraded} session(s)"
               + (f", {ungraded} not gradable" if ungraded else "") + f" -> {out}/ ({', '.join(written)})")
    if rubric is None:
        _note_generic(batch.results)
    _note_earlier_reports(out, [placed for _, placed in found])
    if store is not None:
        _add_history(store, found, out, batch.results)
    _report_failures(batch.failures, len(batch.results) + len(batch.failures))


def _check_rubric_task(rubric: Path, sessions: List[Path]) -> None:
    """``--rubric``'s task against the sessions' (a bad rubric is a usage error here, once)."""
    from surgsim.scoring.rubric import RubricError, load_rubric
    from surgsim.sessions.io import read_meta

    try:
        task = load_rubric(rubric).task
    except RubricError as exc:
        fail(str(exc))
    tasks = []
    for path in sessions:
        try:
            tasks.append(read_meta(path).get("task"))
        except Exception:  # an unreadable file fails on its own, with its reason, when graded
            continue
    _check_task(task, "--rubric", rubric, tasks)


def _check_task(task: str, option: str, model: Path, tasks: List[object]) -> None:
    """A usage error (exit 2) when ``model`` grades none of the sessions (of ``tasks``, their meta
    tasks): a typo in its task or the wrong model, said once instead of failing every file."""
    from surgsim.scoring.rubric import grades_task

    if tasks and not any(grades_task(task, t) for t in tasks):
        fail(f"{option} {model} grades {task!r} sessions, and none of these is one (tasks: "
             f"{', '.join(sorted({repr(t) for t in tasks}))}); check its task"
             + (", or add --any-task to grade them anyway" if option == "--rubric" else ""))


def _note_earlier_reports(out: Path, placed: List[Path]) -> None:
    """Say when ``--out`` also holds session reports this run did not write (an earlier batch's):
    summary.csv and cohort.png describe this run only."""
    from surgsim.scoring.batch import REPORT_SUFFIXES

    ours = {out / p.with_name(p.name + REPORT_SUFFIXES[0]) for p in placed}
    earlier = [path for path in out.rglob(f"*{REPORT_SUFFIXES[0]}") if path not in ours and _is_report(path)]
    if earlier:
        typer.echo(f"note: {out} also holds {len(earlier)} report(s) of sessions not in this run "
                   f"(e.g. {earlier[0].relative_to(out)}); summary.csv and cohort.png describe this run only")


def _is_report(path: Path) -> bool:
    """Whether ``path`` is a session report (not an assessment, an evaluation or a plan)."""
    import json

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(data, dict) and {"critical_errors", "file", "rubric"} <= data.keys()


def _note_generic(rows) -> None:
    """Say when sessions of a task with no shipped rubric were graded by the generic one."""
    from surgsim.scoring.rubric import GENERIC
    from surgsim.scoring.synthetic import SYNTHETIC_TASK

    tasks = sorted({str(row["task"]) for row in rows
                    if row["rubric"] == GENERIC and row.get("task") not in (None, SYNTHETIC_TASK)})
    if tasks:
        typer.echo(f"note: no shipped rubric for {', '.join(tasks)}: graded by generic.yaml, whose expert "
                   "references come from synthetic reaches (dimensionless metrics only); for real grades "
                   "fit one on labelled sessions: surgsim score calibrate DIR --label grs --out rubric.yaml")


def _history(folder: Path):
    """The history folder, read whole: a usage error (exit 2) before grading when it cannot be used."""
    from surgsim.scoring.history import History, HistoryError

    check_writable(folder, "--history", folder=True)
    try:
        history = History(folder)
        history.check()
    except HistoryError as exc:
        fail(str(exc))
    return history


def _add_history(history, found, out: Path, rows) -> None:
    """Add the batch's graded sessions to the history and say what changed."""
    from surgsim.errors import SurgsimError
    from surgsim.scoring.batch import REPORT_SUFFIXES

    graded = {row["file"] for row in rows if row["gradable"]}
    pairs = [(f, out / placed.with_name(placed.name + REPORT_SUFFIXES[0])) for f, placed in found if str(f) in graded]
    try:
        added = history.add_reports(pairs)
    except (SurgsimError, OSError) as exc:  # a session changed since it was graded, a full disk
        fail(str(exc))
    typer.echo(f"history {history.folder}: {added.new} new attempt(s), {added.updated} graded again, {added.unchanged} unchanged"
               + (f"; {len(added.no_trainee)} without a trainee not kept" if added.no_trainee else ""))


@score_app.command("plan")
def plan_cmd(
    trainee: str = typer.Argument(..., help="Trainee name, as in the sessions' meta trainee."),
    history: Path = typer.Option(..., "--history", help="History folder written by `score ... --history`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for <trainee>.json and <trainee>.png (created)."),
    settings: Optional[Path] = typer.Option(None, "--settings", help="Plan settings YAML: pass marks, passes to advance."),
    figures: bool = typer.Option(True, "--figures/--no-figures", help="Draw the learning curves PNG."),
) -> None:
    """A trainee's training plan: learning curves, progression easy -> medium -> hard, next exercise."""
    from surgsim.scoring.history import History, HistoryError
    from surgsim.scoring.plan import PlanError, load_settings
    from surgsim.scoring.trainee_report import write_trainee_report

    if not history.is_dir():
        fail(f"--history {history}: {'not a' if history.exists() else 'no such'} folder")
    check_writable(out, "--out", folder=True)
    try:
        report, written = write_trainee_report(History(history), trainee, out, load_settings(settings), figures)
    except (HistoryError, PlanError) as exc:
        fail(str(exc))
    for name, state in report["progression"].items():
        done = ", ".join(state["completed"]) or "none"
        rung = state["current"] or "all completed"
        typer.echo(f"{name}: completed {done}; now {rung}")
    step = report["next_exercise"]
    typer.echo(f"next: {step['exercise']} at {step['difficulty']}: {step['reason']}")
    for note in report["notes"]:
        typer.echo(f"note: {note}")
    typer.echo(f"wrote {', '.join(map(str, written))}")


_MODEL_HELP = "rubric: expert references and weights (YAML); assessor: skill index of signed session features (JSON)."


def _model_kind(model: str, label: Optional[str]) -> str:
    if model not in ("rubric", "assessor"):
        fail(f"--model must be rubric or assessor, got {model!r}")
    if model == "assessor" and label is None:
        fail("--model assessor needs --label (the grade to learn, e.g. grs)")
    return model


def _one_task(measured) -> str:
    """The sessions' meta task (``generic`` when none says); several tasks are a usage error."""
    tasks = sorted({str(m.meta.get("task")) for m in measured if m.meta.get("task")})
    if len(tasks) > 1:
        fail(f"the sessions are from several tasks {tasks}; calibrate or evaluate one task's folder at a time"
             " (calibrate: or name the task the rubric grades with --task)")
    return tasks[0] if tasks else "generic"


def _note_unlabelled(measured, label: Optional[str], left_out: str = "are left out") -> None:
    """Say which sessions have no numeric ``label`` and what that costs them (``left_out``)."""
    if label is None:
        return
    missing = [m.source for m in measured if m.label(label) is None]
    if missing:
        shown = ", ".join(Path(name).name for name in missing[:3]) + (", ..." if len(missing) > 3 else "")
        typer.echo(f"note: {len(missing)} of {len(measured)} session(s) have no numeric labels.{label} and "
                   f"{left_out}: {shown}")


def _commonest_level_share(measured, label: str) -> float | None:
    """The accuracy of calling every labelled session the commonest skill level: the floor that a
    level accuracy must beat to mean anything."""
    skills = [m.skill for m in measured if m.skill is not None and m.label(label) is not None]
    return max(skills.count(s) for s in set(skills)) / len(skills) if skills else None


def _measure(paths: List[Path], workers: Optional[int], progress: bool, settings=None, features: bool = False):
    from surgsim.scoring.batch import measure_folder
    from surgsim.scoring.features import measure_features

    if features:
        batch = measure_features(_inputs(paths), workers=_workers(workers), progress=progress)
    else:
        batch = measure_folder(_inputs(paths), settings, workers=_workers(workers), progress=progress)
    if not batch.results:
        _report_failures(batch.failures, len(batch.failures))
        _no_sessions(paths)
    return batch


@score_app.command("calibrate")
def calibrate_cmd(
    paths: List[Path] = typer.Argument(..., help="Labelled session files or folders."),
    out: Path = typer.Option(..., "--out", "-o", help="Rubric YAML (or assessor JSON) to write."),
    label: Optional[str] = typer.Option(None, "--label", help="Numeric label to fit the weights on, higher = more skilled (e.g. grs; not an error count or a time)."),
    model: str = typer.Option("rubric", "--model", help=_MODEL_HELP),
    task: Optional[str] = typer.Option(None, "--task", help="Task the rubric grades (default: the sessions' meta task)."),
    robust: bool = typer.Option(True, "--robust/--mean-std", help="Expert reference as median/MAD or mean/SD."),
    weights: bool = typer.Option(True, "--weights/--equal-weights", help="Fit weights by regression on --label."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help=_WORKERS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Fit expert reference distributions (and weights, level thresholds) from labelled sessions,
    or with --model assessor a skill index of fixed, signed session features, with lines to the grades."""
    _inputs(paths)
    check_writable(out, "--out", folder=False)
    kind = _model_kind(model, label)
    wanted = {"assessor": (".json",), "rubric": (".yaml", ".yml")}[kind]
    if out.suffix.lower() not in wanted:
        fail(f"--out {out}: {'an assessor' if kind == 'assessor' else 'a rubric'} is written as "
             f"{wanted[0][1:].upper()}; name it *{wanted[0]}")
    if kind == "assessor":
        return _calibrate_assessor(paths, out, label, task, workers, progress)
    from surgsim.scoring.calibrate import CalibrationError, expert_sessions, fit_rubric
    from surgsim.scoring.rubric import save_rubric

    batch = _measure(paths, workers, progress)
    task = task or _one_task(batch.results)
    _note_unlabelled(batch.results, label, "weigh nothing (they still shape the expert references, caps and levels)")
    try:
        experts = expert_sessions(batch.results, label)
        rubric = fit_rubric(batch.results, task, label=label, fit_weights=weights, robust=robust)
    except CalibrationError as exc:
        fail(str(exc))
    header = (
        f"Calibrated by `surgsim score calibrate` on {datetime.date.today().isoformat()} from "
        f"{len(batch.results)} session(s) in {', '.join(map(str, paths))}.\n"
        f"Expert reference: {len(experts)} session(s) "
        f"({'labels.skill E' if any(m.skill == 'E' for m in batch.results) else f'top third by {label}'}), "
        f"{'median / 1.4826 MAD' if robust else 'mean / SD'}.\n"
        f"Weights: per group of metrics, {f'correlation with labels.{label}' if label and weights else 'equal'}, "
        f"no group above {rubric.max_share:.0%}; caps from the non-experts. Critical errors: gates, default rules."
    )
    save_rubric(rubric, out, header)
    typer.echo(f"wrote {out}: task {task}, {len(rubric.metrics)} metrics, levels expert >= "
               f"{rubric.levels.expert:.1f}, intermediate >= {rubric.levels.intermediate:.1f}")
    if rubric.levels.intermediate >= rubric.levels.expert:
        typer.echo("note: the intermediate and expert thresholds coincide, so no session grades intermediate: "
                   "the calibration sessions' intermediates did not score between its experts and novices")
    _report_failures(batch.failures, len(batch.results) + len(batch.failures))


@score_app.command("evaluate")
def evaluate_cmd(
    paths: List[Path] = typer.Argument(..., help="Labelled session files or folders."),
    label: str = typer.Option(..., "--label", help="Numeric label to correlate with, higher = more skilled (e.g. grs)."),
    cv: str = typer.Option("louo", "--cv", help="louo: leave one trainee out; loso: leave one trial index out."),
    robust: bool = typer.Option(True, "--robust/--mean-std", help="Expert reference as median/MAD or mean/SD."),
    weights: bool = typer.Option(True, "--weights/--equal-weights", help="Fit weights by regression on --label."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Also write the result and per-session predictions as JSON."),
    model: str = typer.Option("rubric", "--model", help=_MODEL_HELP),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help=_WORKERS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Cross-validate: Spearman correlation of score and label, and skill-level accuracy."""
    _inputs(paths)
    if out is not None:
        check_writable(out, "--out", folder=False)
    from dataclasses import asdict

    from surgsim.scoring.calibrate import evaluate
    from surgsim._files import atomic_write_json
    from surgsim.errors import SurgsimError

    if cv not in ("louo", "loso"):
        fail(f"--cv must be louo or loso, got {cv!r}")
    learned = _model_kind(model, label) == "assessor"
    batch = _measure(paths, workers, progress, features=learned)
    _one_task(batch.results)  # one model per task, as calibrate fits it
    _note_unlabelled(batch.results, label)
    try:
        if learned:
            from surgsim.scoring.assessor import evaluate_assessor

            result = evaluate_assessor(batch.results, label, cv)  # type: ignore[arg-type]
        else:
            result = evaluate(batch.results, label, cv, fit_weights=weights, robust=robust)  # type: ignore[arg-type]
    except SurgsimError as exc:
        fail(str(exc))
    commonest = _commonest_level_share(batch.results, label)
    accuracy = "n/a (no labels.skill)" if result.level_accuracy is None else (
        f"{result.level_accuracy:.3f} (calling every session the commonest level: {commonest:.3f})")
    typer.echo(f"{cv}: {result.folds} folds, {result.n} sessions")
    p_value = "n/a" if result.p_value is None else f"{result.p_value:.2g}"
    rho = "n/a (constant scores or labels)" if result.spearman is None else f"{result.spearman:.3f}"
    # several sessions per trainee are not independent: the p-value flatters
    typer.echo(f"Spearman rho (score vs {label}): {rho} (p = {p_value} if the sessions were independent)")
    typer.echo(f"level accuracy: {accuracy}")
    if learned:
        auc = result.auc_expert_novice
        typer.echo(f"expert-vs-novice AUC: {'n/a' if auc is None else f'{auc:.3f}'}")
        shown = ", ".join(f"{k} {'n/a' if v is None else f'{v:.2f}'}" for k, v in result.targets.items())
        typer.echo(f"Spearman of the other predictions: {shown or 'none'}")
    if out is not None:
        atomic_write_json(out, {**asdict(result), "commonest_level_accuracy": commonest}, allow_nan=False)
        typer.echo(f"wrote {out}")
    _report_failures(batch.failures, len(batch.results) + len(batch.failures))


@score_app.command("assess")
def assess_cmd(
    paths: List[Path] = typer.Argument(..., help="Session files (.parquet) or folders searched recursively."),
    model: Path = typer.Option(..., "--model", help="Assessor JSON written by `score calibrate --model assessor`."),
    out: Path = typer.Option(..., "--out", "-o", help="Folder for assessed.json and assessed.csv (created)."),
    top: int = typer.Option(5, "--top", help="Features to explain per session, the largest first."),
    workers: Optional[int] = typer.Option(None, "--workers", "-j", help=_WORKERS_HELP),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Grade sessions with a fitted assessor: the skill index, the predicted grades and level, and the
    features that drove each grade (assessed.json), one row per session in assessed.csv."""
    import csv

    from surgsim._files import atomic_write_json
    from surgsim.scoring.assessor import AssessorError, assessment, load_assessor
    from surgsim.scoring.report import atomic_write

    _inputs(paths)
    if top < 1:
        fail(f"--top must be >= 1, got {top}")
    if model.suffix.lower() in (".yaml", ".yml"):
        fail(f"--model {model}: a rubric (YAML), not an assessor model; grade with it by `surgsim score DIR --rubric {model}`")
    try:
        assessor = load_assessor(model)
    except AssessorError as exc:
        fail(str(exc))
    check_writable(out, "--out", folder=True)
    batch = _measure(paths, workers, progress, features=True)
    _check_task(assessor.task, "--model", model, [m.meta.get("task") for m in batch.results])
    reports, failures = [], list(batch.failures)
    for session in batch.results:
        try:
            reports.append(assessment(assessor, session, top))
        except AssessorError as exc:  # another task's session, too few of the model's features
            failures.append(str(exc))
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "assessed.json", reports, allow_nan=False)
    targets = list(assessor.targets)
    fields = ["file", "trainee", "task", "index", "level", *(f"predicted_{t}" for t in targets), "top_feature"]

    def write(handle) -> None:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for r in reports:
            writer.writerow({**{k: r[k] for k in fields[:5]}, **{f"predicted_{t}": r["predictions"][t] for t in targets},
                             "top_feature": r["explanation"][0] if r["explanation"] else ""})

    atomic_write(out / "assessed.csv", write)
    for r in reports:
        level = f" ({r['level']})" if r["level"] else ""
        typer.echo(f"{r['file']}: index {r['index']:+.2f}, {assessor.label} {r['predictions'][assessor.label]:.1f}{level}")
    typer.echo(f"assessed {len(reports)} session(s) -> {out}/ (assessed.json, assessed.csv)")
    _report_failures(failures, len(reports) + len(failures))


def _calibrate_assessor(
    paths: List[Path], out: Path, label: str, task: Optional[str], workers: Optional[int], progress: bool
) -> None:
    """``score calibrate --model assessor``: fit and write the learned assessor (JSON)."""
    from surgsim.scoring.assessor import AssessorError, fit_assessor, save_assessor

    batch = _measure(paths, workers, progress, features=True)
    task = task or _one_task(batch.results)
    _note_unlabelled(batch.results, label)
    try:
        assessor = fit_assessor(batch.results, label, task=task)
    except AssessorError as exc:
        fail(str(exc))
    save_assessor(assessor, out)
    chosen = assessor.targets[label]
    typer.echo(f"wrote {out}: task {task}, {len(assessor.features)} features, targets {', '.join(assessor.targets)}; "
               f"{label} = {chosen.intercept:.3g} + {chosen.slope:.3g} x index")
    _report_failures(batch.failures, len(batch.results) + len(batch.failures))
