"""A trainee's report from their history: attempts, progression, next exercise (JSON) and learning
curves of the score and the weakest metrics over attempts (PNG). ``surgsim score plan`` writes it.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any, Sequence

from surgsim._files import atomic_save, atomic_write_json
from surgsim.scoring.history import History, file_stem
from surgsim.scoring.metrics import METRICS
from surgsim.scoring.plan import ASSUMED_DIFFICULTY, EXERCISES, LADDER, PlanSettings, TrainingPlan, training_plan, weaknesses

#: learning curves are drawn of this many metrics: those that cost the most over all attempts
CURVES = 3


def trainee_report(trainee: str, records: Sequence[dict[str, Any]], plan: TrainingPlan) -> dict[str, Any]:
    """Everything the trainee's JSON holds; ``records`` are their history lines in the order made."""
    settings = plan.settings
    assumed = sum(a.difficulty_assumed for a in plan.attempts)
    notes = [f"{assumed} of {len(plan.attempts)} attempt(s) have no difficulty (easy, medium, hard) in their "
             f"session metadata: counted as {ASSUMED_DIFFICULTY}"] if assumed else []
    known = {"default", *EXERCISES, *(a.exercise for a in plan.attempts)}
    notes += [f"settings pass_score names {name!r}, which is neither an exercise of the simulator "
              f"({', '.join(EXERCISES)}) nor one this trainee practised: a typo? Its marks are not used"
              for name in settings.pass_score if name not in known]
    return {
        "trainee": trainee,
        "next_exercise": asdict(plan.next),
        "progression": {
            name: {
                "completed": state.completed,
                "current": state.current,
                "passes_in_a_row": state.streak,
                "passes_to_advance": settings.passes_to_advance,
                "pass_score": {d: settings.mark(name, d) for d in LADDER},
            }
            for name, state in plan.progress.items()
        },
        "weakest_metrics": [
            {**asdict(w), "label": METRICS[w.metric].label} for w in plan.weaknesses
        ],
        "curves": [w.metric for w in weaknesses(records)[:CURVES]],
        "attempts": [
            {
                **asdict(attempt),
                **{key: record.get(key) for key in ("file", "trial", "recorded_at", "level", "critical_errors")},
                "metrics": record.get("metrics", {}),  # report units, with z and points lost where graded
            }
            for attempt, record in zip(plan.attempts, records)
        ],
        "settings": settings.model_dump(),
        "notes": notes,
    }


def learning_curves(path: Path, report: dict[str, Any]) -> Path:
    """PNG: score over attempts (one line per exercise, filled = passed, x = critical error, dotted steps =
    pass mark), then each metric of ``curves`` over attempts, in SDs from the expert reference of
    the attempt's own exercise (the band is the experts' ±1 SD): raw values of different exercises
    (mm^2 and mm of tissue damage, say) cannot share an axis, and a raw value says nothing of how
    far from experts it is."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    attempts = report["attempts"]
    curves = report["curves"]
    figure, axes = plt.subplots(1, 1 + len(curves), figsize=(5.5 * (1 + len(curves)), 4.2), squeeze=False)
    exercises = list(dict.fromkeys(a["exercise"] for a in attempts))
    colours = {name: f"C{i % 10}" for i, name in enumerate(exercises)}
    markers = dict(zip(LADDER, "o^s"))
    ax = axes[0][0]
    for name in exercises:
        mine = [a for a in attempts if a["exercise"] == name]
        x = [a["number"] for a in mine]
        colour = colours[name]
        ax.plot(x, [a["score"] for a in mine], lw=1, color=colour, label=name)
        # a pass mark holds until the exercise is next tried, at whatever rung: steps, not slopes
        ax.plot(x, [a["pass_score"] for a in mine], ":", lw=1, color=colour, drawstyle="steps-post")
        for a in mine:
            ax.plot(a["number"], a["score"], markers[a["difficulty"]], color=colour,
                    markerfacecolor=colour if a["passed"] else "white")
            if a["critical_errors"]:
                ax.plot(a["number"], a["score"], "x", color="red", ms=11, mew=2)
    ax.set(xlabel="attempt", ylabel="score (0-100)", ylim=(-2, 102),
           title=f"{report['trainee']}: score\n(o easy, ^ medium, s hard; filled = passed)")
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    for ax, metric in zip(axes[0][1:], curves):
        ax.axhspan(-1, 1, color="tab:green", alpha=0.15, label="expert band (±1 SD)")
        ax.axhline(0, color="k", lw=0.8)
        for name in exercises:
            points = [(a["number"], a["metrics"][metric]["z"]) for a in attempts
                      if a["exercise"] == name and (a["metrics"].get(metric) or {}).get("z") is not None]
            if points:
                ax.plot(*zip(*points), "o-", lw=1, ms=4, color=colours[name], label=name)
        better = METRICS[metric].better
        ax.set(xlabel="attempt", title=METRICS[metric].label,
               ylabel="SD from the experts' centre" + {"lower": " (lower is better)",
                                                       "higher": " (higher is better)"}.get(better, ""))
        ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5))
    for row in axes:
        for ax in row:
            ax.xaxis.get_major_locator().set_params(integer=True)
    figure.tight_layout()
    try:
        return atomic_save(path, lambda tmp: figure.savefig(tmp, dpi=90))
    finally:
        plt.close(figure)


def write_trainee_report(
    history: History, trainee: str, out: str | Path, settings: PlanSettings | None = None, figure: bool = True
) -> tuple[dict[str, Any], list[Path]]:
    """Write ``<out>/<trainee>.json`` (and ``.png``); return the report and the files written."""
    records = history.attempts(trainee)
    report = trainee_report(trainee, records, training_plan(records, settings))
    stem = Path(out) / file_stem(trainee)
    written = [atomic_write_json(stem.with_name(stem.name + ".json"), report, allow_nan=False)]
    if figure:
        written.append(learning_curves(stem.with_name(stem.name + ".png"), report))
    return report, written
