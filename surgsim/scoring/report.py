"""Reports people read: per session a JSON and a PNG figure, per batch a CSV and a cohort plot.

Values are SI in the JSON's ``value`` fields; ``shown`` / ``shown_unit`` give the value in the
unit reports print (mm for lengths); a value that is not a finite number there (1e307 m is inf mm)
is null, not available. Every file is written to a temporary name and renamed. Matplotlib is
imported only when a figure is drawn (Agg backend, no display needed).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from surgsim._files import atomic_save
from surgsim.scoring.metrics import METRICS, SessionMetrics
from surgsim.scoring.score import Score
from surgsim.sessions.session import Session

#: columns of the batch summary CSV, before one column per combined metric (report units)
SUMMARY_FIELDS = [
    "file", "trainee", "task", "trial", "rubric", "gradable", "score", "level", "reason",
    "top_cost_1", "top_cost_2", "top_cost_3",
]


def atomic_write(path: Path, write: Callable[[Any], None], binary: bool = False) -> Path:
    """Call ``write(handle)`` on a temporary file beside ``path``, then rename it to ``path``."""
    def save(tmp: Path) -> None:
        with open(tmp, "wb" if binary else "w", **({} if binary else {"newline": ""})) as handle:
            write(handle)

    return atomic_save(path, save)


def _shown(name: str, value: float | None) -> float | None:
    """``value`` in the metric's report unit; None when that is not finite (1e307 m is inf mm)."""
    return None if value is None else _finite(value * METRICS[name].report_scale)


def _finite(value: float | None) -> float | None:
    """``value``, or None when it is not finite (JSON has no NaN or infinity)."""
    return value if value is None or math.isfinite(value) else None


def session_report(
    source: str, session: Session, metrics: SessionMetrics, score: Score | None, *, rubric: str,
    reason: str | None = None,
) -> dict[str, Any]:
    """Everything the JSON report holds: identity, score, level, plain-words costs, every metric.

    ``score`` is None for a session that is not gradable, ``reason`` says why.
    """
    meta = session.meta
    graded_metrics = score.metrics if score else {}

    def entry(name: str, value: float | None) -> dict[str, Any]:
        info = METRICS[name]
        value = _finite(value)
        item: dict[str, Any] = {"value": value, "unit": info.unit, "available": value is not None}
        if info.report_unit:
            item.update(shown=_shown(name, value), shown_unit=info.report_unit)
        graded = graded_metrics.get(name)
        if graded is not None:
            ref = graded.reference
            item.update(
                z=_finite(graded.z), points_lost=graded.points_lost, weight=ref.weight, better=ref.better,
                expert_center=ref.center, expert_scale=ref.scale,
            )
        return item

    return {
        "file": source,
        "trainee": meta.get("trainee"),
        "task": meta.get("task"),
        "trial": meta.get("trial"),
        "labels": meta.get("labels") or {},
        "rubric": rubric,
        "gradable": score is not None,
        "reason": reason,
        "score": round(score.score, 2) if score else None,
        "level": score.level if score else None,
        "top_costs": [m.explain() for m in score.top_costs()] if score else [],
        "unavailable": score.unavailable if score else [],
        "duration_s": _finite(session.duration),
        "n_samples": session.n_samples,
        "reference_track": metrics.reference_track,
        "metrics": {name: entry(name, value) for name, value in metrics.combined.items()},
        "instruments": {
            track: {name: entry(name, value) for name, value in values.items()}
            for track, values in metrics.instruments.items()
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


def session_figure(path: Path, session: Session, metrics: SessionMetrics, score: Score) -> Path:
    """PNG: 3D trajectory vs the reference path (mm), speed profile (mm/s), metrics vs the expert band."""
    plt, figure = _figure((16, 5))
    ax3d = figure.add_subplot(1, 3, 1, projection="3d")
    for name, track in session.tracks.items():
        p = np.asarray(track.position) * 1e3
        ax3d.plot(p[:, 0], p[:, 1], p[:, 2], lw=1, label=name)
    reference = session.meta.get("reference_path")
    if reference:
        r = np.asarray(reference, dtype=float) * 1e3
        ax3d.plot(r[:, 0], r[:, 1], r[:, 2], "k--", lw=1.5, label="reference path")
    target = session.meta.get("target")
    if target is not None:
        ax3d.scatter(*(np.asarray(target, dtype=float) * 1e3), c="red", marker="x", s=60, label="target")
    ax3d.set(xlabel="x (mm)", ylabel="y (mm)", zlabel="z (mm)", title="trajectory")
    ax3d.legend(fontsize=7)

    ax_speed = figure.add_subplot(1, 3, 2)
    for name, (time, speed) in metrics.speed.items():
        ax_speed.plot(time, speed * 1e3, lw=1, label=name)
    ax_speed.set(xlabel="time (s)", ylabel="low-passed speed (mm/s)", title="speed profile")
    ax_speed.legend(fontsize=7)

    ax_band = figure.add_subplot(1, 3, 3)
    graded = list(score.metrics.values())
    z = np.array([m.z for m in graded])
    colours = ["tab:red" if m.points_lost > 0 else "tab:green" for m in graded]
    ax_band.axvspan(-1, 1, color="tab:green", alpha=0.15, label="expert band (±1 SD)")
    limit = max([4.0] + [m.penalty for m in graded])  # penalties stop growing at the rubric's cap
    ax_band.barh(range(len(graded)), np.clip(z, -limit, limit), color=colours)
    ax_band.set_yticks(range(len(graded)), [METRICS[m.name].label for m in graded], fontsize=7)
    ax_band.axvline(0, color="k", lw=0.8)
    ax_band.set(xlabel="SD from the expert reference (clipped)", title=f"score {score.score:.0f} ({score.level})")
    ax_band.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    return _save_png(path, plt, figure)


def summary_row(report: dict[str, Any]) -> dict[str, Any]:
    """One CSV row of a session report: identity, score, level, costs, metrics in report units."""
    costs = report["top_costs"] + [""] * 3
    row = {key: report.get(key) for key in SUMMARY_FIELDS[:-3]}
    row.update(top_cost_1=costs[0], top_cost_2=costs[1], top_cost_3=costs[2])
    for name, item in report["metrics"].items():
        value = item.get("shown", item["value"])
        row[metric_column(name)] = None if value is None else float(f"{value:.6g}")
    return row


def metric_column(name: str) -> str:
    """CSV column of a combined metric, with its report unit, e.g. ``path_length_mm``."""
    unit = METRICS[name].shown_unit
    suffix = {"1": "", "count": "", "bool": "", "m^3": "_m3", "cm^3": "_cm3", "m/s": "_m_per_s",
              "mm/s": "_mm_per_s", "task unit": ""}.get(unit, f"_{unit}")
    return name + suffix


def write_summary(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """The batch summary CSV (one row per session, graded or not; empty cells are unavailable metrics)."""
    fields = SUMMARY_FIELDS + [metric_column(name) for name in METRICS]

    def write(handle) -> None:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: "" if v is None else v for k, v in row.items()})

    return atomic_write(path, write)


def _trial_order(row: dict[str, Any]) -> tuple:
    """Numbered trials in order, then the others (meta trial is any JSON value), then by file."""
    trial = row.get("trial")
    number = isinstance(trial, (int, float)) and not isinstance(trial, bool)
    return not number, trial if number else 0, str(trial), row["file"]


def cohort_figure(path: Path, rows: Sequence[dict[str, Any]]) -> Path:
    """PNG: score per trainee over their graded sessions (in trial order), with the level of each point."""
    rows = [row for row in rows if row["gradable"]]
    plt, figure = _figure((9, 5))
    ax = figure.add_subplot(1, 1, 1)
    trainees: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        trainees.setdefault(str(row.get("trainee") or "unknown"), []).append(row)
    markers = {"expert": "o", "intermediate": "s", "novice": "x"}
    for trainee, items in sorted(trainees.items()):
        items = sorted(items, key=_trial_order)
        line, = ax.plot(range(1, len(items) + 1), [r["score"] for r in items], lw=1, label=trainee)
        for i, r in enumerate(items, 1):
            ax.plot(i, r["score"], markers.get(r["level"], "o"), color=line.get_color())
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.set(xlabel="session (in trial order)", ylabel="score (0-100)", ylim=(-2, 102),
           title=f"cohort: {len(rows)} sessions, {len(trainees)} trainees (o expert, s intermediate, x novice)")
    if len(trainees) <= 20:
        ax.legend(fontsize=7, ncol=2)
    figure.tight_layout()
    return _save_png(path, plt, figure)
