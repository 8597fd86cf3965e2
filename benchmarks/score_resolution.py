"""Scorer resolution: do scores fall steadily with impairment, with intermediates between experts and novices?

    python benchmarks/score_resolution.py            # every cohort, shipped rubrics
    python benchmarks/score_resolution.py --no-sim   # synthetic cohorts only (no PyBullet)
    python benchmarks/score_resolution.py --rubrics DIR   # rubrics from another folder

Cohorts, each graded by the shipped rubric of its task (``assets/rubrics``, or ``--rubrics``):

- synthetic (:mod:`surgsim.scoring.synthetic`, graded by ``generic.yaml``): minimum-jerk reaches
  with tremor, hesitations and detours growing with impairment; ``--levels`` impairments evenly
  in [0, 1], ``--per-level`` sessions each, seeds not used to make the rubric. One hand and two
  hands (4 reaches), and one hand with 8 reaches (longer sessions than the rubric was made on).
- simulator: each task's scripted expert, degraded as ``make_rubrics`` degrades it (action noise
  and hesitations, impairments 0-1), on seeds 100 and up (make_rubrics uses 0-9).

Printed per cohort: Spearman(score, impairment) over the graded sessions (goal <= -0.9), the
median score of experts (impairment < 1/3), intermediates (< 2/3) and novices, and how far the
intermediates' median lies from each (goal >= 15 points from both).
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


def verdict(row: dict[str, float | int]) -> str:
    ok = row["spearman"] <= GOAL_RHO and min(row["gap_expert"], row["gap_novice"]) >= GOAL_GAP
    return "PASS" if ok else "FAIL"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rubrics", type=Path, default=None, help="rubric folder (default: assets/rubrics)")
    parser.add_argument("--levels", type=int, default=21, help="synthetic impairment levels in [0, 1]")
    parser.add_argument("--per-level", type=int, default=4, help="synthetic sessions per level")
    parser.add_argument("--seeds", type=int, default=10, help="simulator seeds per impairment (from 100)")
    parser.add_argument("--no-sim", action="store_true", help="synthetic cohorts only")
    args = parser.parse_args()
    folder = args.rubrics or rubric_dir()
    generic = load_rubric(folder / f"{GENERIC}.yaml")
    cohorts = [
        ("synthetic, 1 hand, 4 reaches", generic, synthetic_sessions(args.levels, args.per_level, 1001)),
        ("synthetic, 2 hands, 4 reaches", generic, synthetic_sessions(args.levels, args.per_level, 1002, hands=2)),
        ("synthetic, 1 hand, 8 reaches", generic, synthetic_sessions(args.levels, args.per_level, 1003, reaches=8)),
    ]
    rows = [(name, resolution(sessions, rubric)) for name, rubric, sessions in cohorts]
    if not args.no_sim:
        import surgsim

        for env_id in (e for e in surgsim.REGISTERED if not e.endswith("Discrete-v0")):
            task = env_id.split("/")[1].removesuffix("-v0")
            with tempfile.TemporaryDirectory() as tmp:
                sessions = simulator_sessions(env_id, Path(tmp), range(100, 100 + args.seeds))
            rows.append((f"simulator {task}", resolution(sessions, load_rubric(folder / f"{task}.yaml"))))
    print(f"| cohort | graded (not gradable) | Spearman(score, impairment) | median E | median I | median N "
          f"| E - I | I - N | goal (rho <= {GOAL_RHO}, gaps >= {GOAL_GAP:g}) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for name, r in rows:
        print(f"| {name} | {r['n']} ({r['ungraded']}) | {r['spearman']:.3f} | {r['expert']:.1f} | "
              f"{r['intermediate']:.1f} | {r['novice']:.1f} | {r['gap_expert']:.1f} | {r['gap_novice']:.1f} | "
              f"{verdict(r)} |")


if __name__ == "__main__":
    main()
