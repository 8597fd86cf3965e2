"""Reports people read: per session a JSON and a PNG figure, per batch a CSV and a cohort plot.

A session's JSON leads with its critical errors (kind, time, what happened, and what the rubric
made of it), then the grade. Values are SI in the JSON's ``value`` fields; ``shown`` /
``shown_unit`` give the value in the unit reports print (mm for lengths); a value that is not a
finite number there (1e307 m is inf mm) is null, not available. Every file is written to a
temporary name and renamed. Matplotlib is imported only when a figure is drawn (Agg backend, no
display needed).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from surgsim._files import atomic_save
from surgsim.scoring.critical import CriticalError
from surgsim.scoring.history import attempt_order
from surgsim.scoring.metrics import (
    DIMENSIONLESS, METRICS, TISSUE_DAMAGE_UNITS, SessionMetrics, apart_from, metric_units, shown_decimals,
)
from surgsim.scoring.rubric import CapRule, Rubric
from surgsim.scoring.score import FAIL, Graded, Score
from surgsim.sessions.session import Session

#: columns of the batch summary CSV, before one column per combined metric (report units)
SUMMARY_FIELDS = [
    "file", "trainee", "task", "trial", "recorded_at", "rubric", "gradable", "score", "metric_score", "level", "critical_errors", "reason",
    "top_cost_1", "top_cost_2", "top_cost_3",
]
#: level -> (marker, colour) in every figure
LEVEL_STYLE = {"expert": ("o", "tab:green"), "intermediate": ("s", "tab:orange"), "novice": ("v", "tab:red"),
               FAIL: ("X", "black")}


def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = False) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``."""
    def save(tmp: Path) -> None:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": ""})) as handle:
            write(handle)

    return atomic_save(path, save)


def _finite(value: float | None) -> float | None:
    """``value``, or None when it is not finite (JSON has no NaN or infinity)."""
    return value if value is None or math.isfinite(value) else None


def error_effects(errors: Sequence[CriticalError], rubric: Rubric, score: Score | None) -> list[tuple[str, bool]]:
    """What ``rubric`` made of each critical error in this grade, in words, and whether it is one
    that set the grade (a ``fail`` that failed it, the cap the score ended at, or, when no cap
    lowered the score, every error that kept an expert motion score from the expert level): a
    cap that a fail or a lower cap superseded, or that the motion score was already under, says so."""
    rules = [rubric.critical_errors[e.kind] for e in errors]
    caps = [rule.cap for rule in rules if isinstance(rule, CapRule)]
    motion = score.metric_score if score is not None else None
    held_below_expert = (score is not None and score.level != FAIL and motion is not None
                         and motion <= min(caps, default=math.inf) and rubric.levels.level(motion) == "expert")
    effects = []
    for rule in rules:
        if not isinstance(rule, CapRule):
            effects.append((FAIL, score is not None and score.level == FAIL))
            continue
        text = f"score capped at {rule.cap:g}"
        if score is None or motion is None:
            effects.append((text, False))
        elif score.level == FAIL:
            effects.append((f"{text} (superseded: the attempt fails)", False))
        elif held_below_expert:
            effects.append((f"{text} (the motion scored {apart_from(motion, rule.cap)}, under it; the error keeps "
                            "the level below expert)", True))
        elif motion <= rule.cap:
            effects.append((f"{text} (no effect: the motion scored {apart_from(motion, rule.cap)})", False))
        elif rule.cap > min(caps):
            effects.append((f"{text} (superseded by the cap at {min(caps):g})", False))
        else:
            effects.append((text, True))
    return effects


def session_report(source: str, session: Session, graded: Graded, *, rubric: Rubric) -> dict[str, Any]:
    """Everything the JSON report holds: critical errors first, then identity, score, level,
    plain-words costs and every metric. A session that is not gradable has no score; ``reason``
    says why."""
    meta = session.meta
    score = graded.score
    graded_metrics = score.metrics if score else {}
    task = meta.get("task")

    def entry(name: str, value: float | None) -> dict[str, Any]:
        unit, shown_unit, scale = metric_units(name, task)
        value = _finite(value)
        item: dict[str, Any] = {"value": value, "unit": unit, "available": value is not None}
        if shown_unit != unit:
            item.update(shown=None if value is None else _finite(value * scale), shown_unit=shown_unit)
        graded_metric = graded_metrics.get(name)
        if graded_metric is not None:
            ref = graded_metric.reference
            item.update(
                z=_finite(graded_metric.z), points_lost=graded_metric.points_lost, weight=ref.weight,
                better=ref.better, expert_center=ref.center, expert_scale=ref.scale,
            )
        return item

    return {
        "critical_errors": [dict(e.as_dict(), effect=text, sets_grade=decides) for e, (text, decides)
                            in zip(graded.critical_errors, error_effects(graded.critical_errors, rubric, score))],
        "file": source,
        "trainee": meta.get("trainee"),
        "task": task,
        "trial": meta.get("trial"),
        "recorded_at": meta.get("recorded_at"),
        "labels": meta.get("labels") or {},
        "rubric": rubric.task,
        "gradable": score is not None,
        "reason": graded.reason,
        "score": round(score.score, 2) if score else None,
        "level": score.level if score else None,
        "metric_score": round(score.metric_score, 2) if score and score.metric_score is not None else None,
        "top_costs": [m.explain() for m in score.top_costs()] if score else [],
        "unavailable": score.unavailable if score else [],
        "duration_s": _finite(session.duration),
        "n_samples": session.n_samples,
        "reference_track": graded.metrics.reference_track,
        "metrics": {name: entry(name, value) for name, value in graded.metrics.combined.items()},
        "instruments": {
            track: {name: entry(name, value) for name, value in values.items()}
            for track, values in graded.metrics.instruments.items()
        },
    }


def _figure(size: tuple[float, float]):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt, plt.figure(figsize=size)


def _save_png(path: Path, plt, figure) -> Path:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90)
    plt.close(figure)
    return atomic_write(path, lambda f: f.write(buffer.getvalue()), binary=True)


def _equal_axes(ax3d, points: np.ndarray) -> None:
    """One scale on the three axes of a 3D plot: a cube around ``points`` (n, 3), at least 1 mm."""
    low, high = points.min(axis=0), points.max(axis=0)
    centre, half = (low + high) / 2, max(float((high - low).max()) / 2, 0.5) * 1.05
    ax3d.set(xlim=(centre[0] - half, centre[0] + half), ylim=(centre[1] - half, centre[1] + half),
             zlim=(centre[2] - half, centre[2] + half))
    ax3d.set_box_aspect((1, 1, 1))


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _short(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def session_figure(path: Path, session: Session, metrics: SessionMetrics, score: Score,
                   effects: Sequence[tuple[str, bool]]) -> Path:
    """PNG: 3D trajectory vs the reference path (mm, equal axes), speed profile (mm/s), metrics vs
    the expert band (SD); each critical error numbered on the trajectory and the speed profile,
    and listed with its effect (``effects``: the report's, from :func:`error_effects`)."""
    plt, figure = _figure((17, 6))
    time = np.asarray(session.time, dtype=float)
    errors = score.critical_errors
    # errors within 3 % of the session of each other are stacked on the plots, not printed over or
    # against each other ("34" for errors 3 and 4 at 0.1 s apart)
    near = max(0.03 * float(time[-1] - time[0]), 1e-6)
    stacked = [sum(1 for e in errors[:i] if abs(e.time_s - error.time_s) < near) for i, error in enumerate(errors)]
    ax3d = figure.add_subplot(1, 3, 1, projection="3d")
    shown = []
    for name, track in session.tracks.items():
        p = np.asarray(track.position, dtype=float) * 1e3
        shown.append(p)
        ax3d.plot(p[:, 0], p[:, 1], p[:, 2], lw=1, label=name)
    reference = session.meta.get("reference_path")
    if reference:
        r = np.asarray(reference, dtype=float) * 1e3
        shown.append(r)
        ax3d.plot(r[:, 0], r[:, 1], r[:, 2], "k--", lw=1.5, label="reference path")
    target = session.meta.get("target")
    if target is not None:
        t = np.asarray(target, dtype=float) * 1e3
        shown.append(t[None])
        ax3d.scatter(*t, c="red", marker="x", s=60, label="target")
    track = session.tracks.get(metrics.reference_track) or next(iter(session.tracks.values()))
    for i, error in enumerate(errors, 1):
        k = min(int(np.searchsorted(time - time[0], error.time_s - 1e-9)), len(time) - 1)
        at = np.asarray(track.position[k], dtype=float) * 1e3
        ax3d.scatter(*at, c="magenta", marker="*", s=140, edgecolors="k", depthshade=False,
                     label="critical error" if i == 1 else None)
        ax3d.text(*at, " " * (1 + 3 * stacked[i - 1]) + str(i), color="magenta", fontsize=10, fontweight="bold")
    _equal_axes(ax3d, np.vstack(shown))
    ax3d.locator_params(nbins=5)
    ax3d.set(xlabel="x (mm)", ylabel="y (mm)", zlabel="z (mm)", title="trajectory (equal axes)")
    ax3d.legend(fontsize=7, loc="upper left")

    ax_speed = figure.add_subplot(1, 3, 2)
    for name, (t, speed) in metrics.speed.items():
        ax_speed.plot(t - time[0], speed * 1e3, lw=1, label=name)
    for i, error in enumerate(errors, 1):
        ax_speed.axvline(error.time_s, color="magenta", lw=1.2, ls=":", label="critical error" if i == 1 else None)
        ax_speed.annotate(str(i), (error.time_s, 0.97 - 0.06 * stacked[i - 1]), xycoords=("data", "axes fraction"),
                          color="magenta", fontweight="bold", ha="left", va="top")
    ax_speed.set(xlabel="time from start (s)", ylabel="low-passed speed (mm/s)", title="speed profile")
    ax_speed.legend(fontsize=7)

    ax_band = figure.add_subplot(1, 3, 3)
    graded = list(score.metrics.values())
    limit = 8.0  # SD: a bar longer than this is drawn to it
    if graded:
        z = np.array([m.z for m in graded])
        # red: worse than the expert band, whatever the metric's weight (its cost is in brackets)
        colours = ["tab:red" if m.penalty > 1.0 else "tab:green" for m in graded]
        ax_band.axvspan(-1, 1, color="tab:green", alpha=0.15, label="expert band (±1 SD)")
        ax_band.barh(range(len(graded)), np.clip(z, -limit, limit), color=colours)
        labels = [METRICS[m.name].short_label + (f" (−{m.points_lost:.1f})" if m.points_lost >= 0.05 else "")
                  for m in graded]
        ax_band.set_yticks(range(len(graded)), labels, fontsize=8)
        ax_band.set_xlim(-limit - 0.5, limit + 0.5)
        ax_band.axvline(0, color="k", lw=0.8)
        ax_band.legend(fontsize=7, loc="lower right")
        ax_band.set_xlabel(f"SD from the expert reference (bars stop at ±{limit:g})")
    else:
        ax_band.text(0.5, 0.5, "too short to grade its motion:\na critical error fails it",
                     ha="center", va="center", transform=ax_band.transAxes)
        ax_band.set_axis_off()
    alone = (f"; metrics alone {score.metric_score:.1f}"
             if score.metric_score is not None and score.metric_score - score.score >= 0.05 else "")
    ax_band.set_title(f"score {score.score:.1f} of 100 ({score.level}){alone}\n(points lost in brackets)", fontsize=10)
    if errors:
        # numbered in time order, as on the plots; the errors that set the grade are listed first
        order = sorted(range(len(errors)), key=lambda i: not effects[i][1])
        lines = [f"{i + 1}. {errors[i].kind.replace('_', ' ')} at {errors[i].time_s:.2f} s: "
                 f"{_short(errors[i].what, 60)} ({effects[i][0]})" for i in order[:4]]
        if len(errors) > 4:
            lines.append(f"... and {len(errors) - 4} more (see the JSON report)")
        figure.set_figheight(6 + 0.16 * (len(lines) + 1))  # room for one line per error above the plots
        figure.suptitle("Critical errors\n" + "\n".join(lines), color="magenta", fontsize=9)
    figure.tight_layout()
    if errors:
        figure.subplots_adjust(top=1 - (0.16 * (len(lines) + 1) + 0.45) / figure.get_figheight())
    return _save_png(path, plt, figure)


def summary_row(report: dict[str, Any]) -> dict[str, Any]:
    """One CSV row of a session report: identity, score, level, critical errors, costs, metrics in
    report units (tissue damage in its task's column: mm^2 in SurgicalPath, mm in Incision), to
    :func:`~surgsim.scoring.metrics.shown_decimals`."""
    costs = report["top_costs"] + [""] * 3
    row = {key: report.get(key) for key in SUMMARY_FIELDS[:-3]}
    row["critical_errors"] = "; ".join(f"{e['kind']} at {e['time_s']:.2f} s" for e in report["critical_errors"])
    row.update(top_cost_1=costs[0], top_cost_2=costs[1], top_cost_3=costs[2])
    for name, item in report["metrics"].items():
        value = item.get("shown", item["value"])
        if value is not None:
            row[metric_column(name, report["task"])] = round(value, shown_decimals(name, report["task"])) + 0.0
    return row


def metric_column(name: str, task: object = None) -> str:
    """CSV column of a combined metric, with its report unit, e.g. ``path_length_mm``
    (``tissue_damage_mm2`` in SurgicalPath, ``tissue_damage_mm`` in Incision)."""
    unit = metric_units(name, task)[1]
    suffix = {DIMENSIONLESS: "", "count": "", "bool": "", "cm^3": "_cm3", "mm^2": "_mm2",
              "mm/s": "_mm_per_s", "1/s": "_per_s"}.get(unit, f"_{unit}")
    return name + suffix


def metric_columns() -> list[str]:
    """Every metric's CSV column, tissue damage once per task that has it."""
    return [column for name in METRICS for column in dict.fromkeys(
        metric_column(name, task) for task in ([None] if name != "tissue_damage" else TISSUE_DAMAGE_UNITS))]


def write_summary(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """The batch summary CSV (one row per session, graded or not; empty cells are unavailable metrics)."""
    fields = SUMMARY_FIELDS + metric_columns()

    def write(handle) -> None:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})

    return atomic_write(path, write)


def _trainee(row: dict[str, Any]) -> str:
    return str(row.get("trainee") or "unknown")


def cohort_figure(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """PNG: one panel per task; in each, every trainee's score over their graded sessions (in the
    order they were made, as the history orders them), one line and colour per trainee for the
    whole batch, offset a little so that equal scores stay apart, the marker's colour and shape its
    level. A panel's title counts the sessions that could not be graded."""
    tasks: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        tasks.setdefault(str(row.get("task") if row.get("task") is not None else "no task"), []).append(row)
    tasks = {task: task_rows for task, task_rows in tasks.items() if any(r["gradable"] for r in task_rows)}
    plt, figure = _figure((9, 1 + 4 * len(tasks)))
    styles = ["-", "--", "-.", ":"]
    # trainee lines in colours the level markers do not use (green, orange, red, black)
    line_colours = ["tab:blue", "tab:purple", "tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan"]
    names = sorted({_trainee(row) for row in rows if row["gradable"]})
    style = {name: (styles[k % len(styles)], line_colours[k % len(line_colours)]) for k, name in enumerate(names)}
    for panel, (task, task_rows) in enumerate(sorted(tasks.items()), 1):
        ax = figure.add_subplot(len(tasks), 1, panel)
        trainees: dict[str, list[dict[str, Any]]] = {}
        for row in task_rows:
            if row["gradable"]:
                trainees.setdefault(_trainee(row), []).append(row)
        n = len(trainees)
        for k, (trainee, items) in enumerate(sorted(trainees.items())):
            items = sorted(items, key=attempt_order)
            x = np.arange(1, len(items) + 1) + (0.3 * (k / (n - 1) - 0.5) if n > 1 else 0.0)
            line, colour = style[trainee]
            ax.plot(x, [r["score"] for r in items], line, lw=1.2, alpha=0.8, label=trainee, color=colour)
            for xi, r in zip(x, items):
                marker, colour = LEVEL_STYLE.get(r["level"], ("o", "grey"))
                ax.plot(xi, r["score"], marker, color=colour, ms=6, mec="k", mew=0.4)
        graded = sum(r["gradable"] for r in task_rows)
        ungraded = f" ({len(task_rows) - graded} more not gradable)" if graded < len(task_rows) else ""
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set(xlabel="session (in the order made: recorded_at, else trial, else file)", ylabel="score (0-100)",
               ylim=(-3, 103), title=f"{task}: {_count(graded, 'session')}{ungraded}, {_count(n, 'trainee')}")
        ax.legend(fontsize=7 if n <= 20 else 5, ncol=1 + n // 12, loc="center left", bbox_to_anchor=(1.01, 0.5),
                  title="trainee", title_fontsize=7)
    handles = [plt.Line2D([], [], ls="", marker=m, color=c, mec="k", label=level)
               for level, (m, c) in LEVEL_STYLE.items()]
    figure.legend(handles=handles, loc="upper center", ncol=len(handles), fontsize=8, title="level", title_fontsize=8)
    figure.tight_layout(rect=(0, 0, 1, 1 - 0.6 / figure.get_figheight()))
    return _save_png(path, plt, figure)
