"""Scorer resolution: do scores fall steadily with impairment, with intermediates between experts and novices?

    python benchmarks/score_resolution.py            # every cohort, shipped rubrics
    python benchmarks/score_resolution.py --no-sim   # synthetic cohorts only (no PyBullet)
    python benchmarks/score_resolution.py --rubrics DIR   # rubrics from another folder

Cohorts, each graded by the shipped rubric of its task (``assets/rubrics``, or ``--rubrics``):

- synthetic (:mod:`surgsim.scoring.synthetic`, graded by ``generic.yaml``): minimum-jerk reaches
  with tremor, hesitations and detours growing with impairment; ``--levels`` impairments evenly
  in [0, 1], ``--per-level`` sessions each, on seeds not used to make the rubric. One hand and two
  hands (4 reaches), and one hand with 8 and 12 reaches (longer sessions than the rubric was made
  on: whole-session LDLJ falls with the number of reaches).
- simulator: each task's scripted expert, degraded as ``make_rubrics`` degrades it (action noise
  and hesitations, impairments 0-1), on seeds 100 and up (make_rubrics uses 0-9).

Printed per cohort: Spearman(score, impairment) over the graded sessions (goal <= -0.9), the
median score of experts (impairment < 1/3), intermediates (< 2/3) and novices, and how far the
intermediates' median lies from each (goal >= 15 points from both); each row is ``--repeats``
cohorts on other seeds (synthetic: seeds 1000 and up; simulator: blocks of ``--seeds`` seeds from
100), given as the mean and the worst. About a minute on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from scipy import stats

from surgsim.scoring.rubric import GENERIC, Rubric, load_rubric, rubric_dir
from surgsim.scoring.score import grade_session
from surgsim.scoring.synthetic import synthetic_session
from surgsim.sessions import read_session
from surgsim.sessions.session import Session

GOAL_RHO = -0.9
GOAL_GAP = 15.0


def synthetic_sessions(levels: int, per_level: int, seed: int, **kwargs) -> list[Session]:
    """``per_level`` synthetic sessions at each of ``levels`` impairments evenly in [0, 1]."""
    rng = np.random.default_rng(seed)
    return [synthetic_session(rng, float(impairment), **kwargs)
            for impairment in np.linspace(0.0, 1.0, levels) for _ in range(per_level)]


def simulator_sessions(env_id: str, folder: Path, seeds: range) -> list[Session]:
    """The degraded scripted expert of ``env_id`` recorded as make_rubrics records it."""
    from surgsim.scoring.make_rubrics import record_task

    record_task(env_id, folder, seeds)
    return [read_session(path) for path in sorted(folder.glob("*.parquet"))]


def resolution(sessions: list[Session], rubric: Rubric) -> dict[str, float | int]:
    """Spearman of score against impairment and the median score of each third of impairment."""
    impairment, scores, ungraded = [], [], 0
    for session in sessions:
        graded = grade_session(session, rubric, any_task=True)
        if graded.score is None:
            ungraded += 1
            continue
        impairment.append(session.meta["labels"]["impairment"])
        scores.append(graded.score.score)
    impairment, scores = np.array(impairment), np.array(scores)
    thirds = {"expert": impairment < 1 / 3, "intermediate": (impairment >= 1 / 3) & (impairment < 2 / 3),
              "novice": impairment >= 2 / 3}
    median = {name: float(np.median(scores[mask])) for name, mask in thirds.items()}
    return {
        "n": len(scores), "ungraded": ungraded,
        "spearman": float(stats.spearmanr(scores, impairment).statistic),
        **median,
        "gap_expert": median["expert"] - median["intermediate"],
        "gap_novice": median["intermediate"] - median["novice"],
    }


def verdict(rhos: np.ndarray, gaps: np.ndarray) -> str:
    """PASS when every repeat meets the goals, MEAN when their means do, else FAIL."""

    def meets(rho: float, gaps: np.ndarray) -> bool:
        return rho <= GOAL_RHO and gaps.min() >= GOAL_GAP

    if all(meets(r, g) for r, g in zip(rhos, gaps)):
        return "PASS"
    return "MEAN" if meets(rhos.mean(), gaps.mean(axis=0)) else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rubrics", type=Path, default=None, help="rubric folder (default: assets/rubrics)")
    parser.add_argument("--levels", type=int, default=21, help="synthetic impairment levels in [0, 1]")
    parser.add_argument("--per-level", type=int, default=4, help="synthetic sessions per level")
    parser.add_argument("--seeds", type=int, default=10, help="simulator seeds per impairment and repeat")
    parser.add_argument("--repeats", type=int, default=8, help="cohorts per row, each on other seeds")
    parser.add_argument("--no-sim", action="store_true", help="synthetic cohorts only")
    args = parser.parse_args()
    folder = args.rubrics or rubric_dir()
    generic = load_rubric(folder / f"{GENERIC}.yaml")
    synthetic = {"synthetic, 1 hand, 4 reaches": {}, "synthetic, 2 hands, 4 reaches": {"hands": 2},
                 "synthetic, 1 hand, 8 reaches": {"reaches": 8}, "synthetic, 1 hand, 12 reaches": {"reaches": 12}}
    rows = []
    for name, kwargs in synthetic.items():
        cohorts = [synthetic_sessions(args.levels, args.per_level, 1000 + r, **kwargs) for r in range(args.repeats)]
        rows.append((name, [resolution(c, generic) for c in cohorts]))
    if not args.no_sim:
        import surgsim

        for env_id in (e for e in surgsim.REGISTERED if not e.endswith("Discrete-v0")):
            task = env_id.split("/")[1].removesuffix("-v0")
            rubric = load_rubric(folder / f"{task}.yaml")
            results = []
            for r in range(args.repeats):
                with tempfile.TemporaryDirectory() as tmp:
                    start = 100 + r * args.seeds
                    sessions = simulator_sessions(env_id, Path(tmp), range(start, start + args.seeds))
                results.append(resolution(sessions, rubric))
            rows.append((f"simulator {task}", results))
    print(f"{args.repeats} cohorts per row (other seeds each); mean over them, worst in brackets; "
          f"goal: Spearman <= {GOAL_RHO}, both gaps >= {GOAL_GAP:g}")
    print("| cohort | graded (not gradable) per cohort | Spearman(score, impairment) | median E | median I | median N "
          "| E - I | I - N | goal met |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, results in rows:
        get = lambda key: np.array([r[key] for r in results], dtype=float)  # noqa: E731
        rhos, gaps = get("spearman"), np.column_stack([get("gap_expert"), get("gap_novice")])
        print(f"| {name} | {get('n').mean():.0f} ({get('ungraded').mean():.0f}) | {rhos.mean():.3f} ({rhos.max():.3f}) | "
              f"{get('expert').mean():.1f} | {get('intermediate').mean():.1f} | {get('novice').mean():.1f} | "
              f"{gaps[:, 0].mean():.1f} ({gaps[:, 0].min():.1f}) | {gaps[:, 1].mean():.1f} ({gaps[:, 1].min():.1f}) | "
              f"{verdict(rhos, gaps)} |")


if __name__ == "__main__":
    main()
