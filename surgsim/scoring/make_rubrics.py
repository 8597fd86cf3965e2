"""Make the default rubrics in ``assets/rubrics/``: ``python -m surgsim.scoring.make_rubrics``.

Per surgsim task: :data:`EPISODES` episodes per impairment level of the env's scripted expert
(``env.unwrapped.expert_action()``) are recorded as sessions with
:class:`~surgsim.sessions.SessionRecorder`, next to the same expert degraded by ``impairment``
in (0, 1] (:class:`~surgsim.datasets.policies.ExpertPolicy`: Gaussian action noise, SD 0.6 x
impairment, a step too long shortened with its direction kept, and hesitations: with probability
0.15 x impairment per step, the tool stops for 1-6 steps). Every level plays the same seeds (the
same patients). Labels: skill E / I / N for impairment below
1/3, 2/3, above; ``grs`` = 30 - 22 x impairment. The rubric is fitted with
:func:`~surgsim.scoring.calibrate.fit_rubric` (experts = skill E, caps from the non-experts,
weights on grs, critical errors as gates). About 10 s on 2 cores.

``generic.yaml`` grades sessions with no task (imported ones): fitted the same way on
synthetic minimum-jerk sessions (:mod:`surgsim.scoring.synthetic`), restricted to metrics that
do not depend on the size of the task (dimensionless ones).

This module runs the simulator (PyBullet); the scorer never imports it.
"""

from __future__ import annotations

import argparse
import datetime
import tempfile
from pathlib import Path

import numpy as np
from tqdm import tqdm

from surgsim.scoring.batch import measure_folder
from surgsim.scoring.calibrate import MAX_SHARE, Measured, fit_rubric
from surgsim.scoring.critical import detect_critical_errors
from surgsim.scoring.metrics import compute_metrics
from surgsim.scoring.rubric import GENERIC, rubric_dir, save_rubric
from surgsim.scoring.synthetic import synthetic_cohort

IMPAIRMENTS = (0.0, 0.15, 0.35, 0.5, 0.7, 0.85, 1.0)
#: seeds per impairment level and task (0 .. EPISODES-1); benchmarks and tests use seeds from 100
EPISODES = 30
GENERIC_METRICS = ("economy_of_motion", "idle_fraction", "ldlj", "sparc", "bimanual_dexterity")


def labels_for(impairment: float) -> dict[str, object]:
    """The labels a session of this impairment gets (skill by thirds, GRS 30 down to 8)."""
    skill = "E" if impairment < 1 / 3 else "I" if impairment < 2 / 3 else "N"
    return {"skill": skill, "grs": round(30 - 22 * impairment, 1), "impairment": impairment}


def record_task(env_id: str, folder: Path, seeds: range) -> None:
    """Record the scripted expert on ``seeds`` at every level of :data:`IMPAIRMENTS`."""
    import gymnasium as gym

    import surgsim  # noqa: F401  (registers the envs)
    from surgsim.datasets.policies import ExpertPolicy
    from surgsim.sessions import SessionRecorder

    for level, impairment in enumerate(tqdm(IMPAIRMENTS, desc=env_id, unit="level")):
        env = SessionRecorder(gym.make(env_id), folder, f"level{level}", labels=labels_for(impairment))
        expert = ExpertPolicy(env, impairment)
        for seed in seeds:
            expert.reset(seed, rng=np.random.default_rng([level, seed]))
            obs, _ = env.reset(seed=seed)
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(expert(obs))
                done = terminated or truncated
        env.close()


def _header(what: str, n: int) -> str:
    return (
        f"Default rubric made by `python -m surgsim.scoring.make_rubrics` on {datetime.date.today().isoformat()}.\n"
        f"{what}\n"
        f"Fitted on {n} sessions: experts = labels.skill E (impairment < 1/3), reference = median / 1.4826 MAD;\n"
        "per-metric cap = 90th percentile of the non-experts' penalties (>= 2 SD); group weights = correlation\n"
        f"of grs (30 - 22 x impairment) with minus the points lost, to the power 8, no group above {MAX_SHARE:.0%};\n"
        "level thresholds split E | I | N.\n"
        "Critical errors are gates (critical_errors), not weights: calibration keeps every kind's default rule.\n"
        "Recalibrate on your own labelled sessions with `surgsim score calibrate DIR --label grs --out rubric.yaml`."
    )


def make_task_rubric(env_id: str, out: Path, episodes: int = EPISODES) -> Path:
    """Record, measure and fit one task's rubric; write ``<out>/<task>.yaml``."""
    with tempfile.TemporaryDirectory() as tmp:
        record_task(env_id, Path(tmp), range(episodes))
        batch = measure_folder([tmp], progress=False)
    if batch.failures:
        raise RuntimeError("recorded sessions failed: " + "; ".join(map(str, batch.failures)))
    task = str(batch.results[0].meta["task"])
    what = (
        f"Sessions of {env_id}: its scripted expert (env.unwrapped.expert_action()), {episodes} seeds at each\n"
        f"impairment in {list(IMPAIRMENTS)}, degraded by action noise (SD 0.6 x impairment, direction kept) and\n"
        "hesitations (p = 0.15 x impairment per step, 1-6 steps); no trained agents."
    )
    rubric = fit_rubric(batch.results, task, label="grs", description=f"Default rubric of {env_id} sessions.")
    return save_rubric(rubric, out / f"{task}.yaml", _header(what, len(batch.results)))


def make_generic_rubric(out: Path, seed: int = 0) -> Path:
    """Fit ``generic.yaml`` on synthetic sessions, on the dimensionless metrics only."""
    rng = np.random.default_rng(seed)
    sessions = synthetic_cohort(rng, trainees=24, trials=3) + synthetic_cohort(rng, trainees=12, trials=3, hands=2)
    measured = [Measured(f"synthetic-{i}", compute_metrics(s).combined, s.meta, tuple(detect_critical_errors(s)))
                for i, s in enumerate(sessions)]
    rubric = fit_rubric(
        measured, GENERIC, label="grs", metrics=GENERIC_METRICS,
        description="Sessions with no task (imported): dimensionless kinematic metrics only.",
    )
    what = (
        f"Synthetic sessions (surgsim.scoring.synthetic, seed {seed}): minimum-jerk reaches, degraded by tremor,\n"
        f"hesitations and detours; metrics {list(GENERIC_METRICS)} (independent of the task's size).\n"
        "Impairment here is continuous in [0, 1]; grs = 30 - 22 x impairment + noise."
    )
    return save_rubric(rubric, out / f"{GENERIC}.yaml", _header(what, len(measured)))


def main(argv: list[str] | None = None) -> None:
    """Write every default rubric."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=None, help="folder (default: assets/rubrics)")
    parser.add_argument("--episodes", type=int, default=EPISODES, help="seeds per impairment level and task")
    parser.add_argument("--env", action="append", help="env ids (default: every continuous surgsim env)")
    args = parser.parse_args(argv)
    out = args.out or rubric_dir()
    print(f"wrote {make_generic_rubric(out)}")
    if args.env:
        env_ids = args.env
    else:
        import surgsim

        env_ids = [e for e in surgsim.REGISTERED if not e.endswith("Discrete-v0")]
    for env_id in env_ids:
        print(f"wrote {make_task_rubric(env_id, out, args.episodes)}")


if __name__ == "__main__":
    main()
