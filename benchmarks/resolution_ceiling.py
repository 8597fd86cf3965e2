"""How much of the degraded expert's impairment reaches the recorded motion (issue 15, point 2).

    python benchmarks/resolution_ceiling.py                      # NeedleReach
    python benchmarks/resolution_ceiling.py --task Incision --task SurgicalPath

``score_resolution.py`` asks the shipped rubric for Spearman(score, impairment) <= -0.9 on the
simulator's degraded experts. This asks how high any score made from the recording could go.
Each session is recorded as ``make_rubrics`` records it (seeds from ``--start`` in blocks of 10,
every impairment level) and ranked against impairment by:

- the shipped rubric's score (what ``score_resolution.py`` measures), and its motion score (the
  same before critical errors: a failed attempt scores 0 but keeps its motion score);
- the single metric that ranks the sessions of seeds 0-29 best, signed the way it correlates there;
- a ridge regression of impairment on every metric (standardised, penalty ``--penalty``) fitted
  to the sessions of seeds 0-29 (the rubric's own) and applied here: the best linear score of
  these metrics, with no caps and no weight limits;
- the degraded expert's own random draws: the realised SD of the noise it added, over the SD it
  was asked for. It sees what no recording does, and tells how much the cohort itself leaves to
  chance (hesitations not counted).

Magnitudes are Spearman correlations (higher = impairment ranked better), pooled and per block
of 10 seeds (mean, worst). About 20 s per task on 2 cores.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import gymnasium as gym
import numpy as np
from scipy import stats

import surgsim  # noqa: F401  (registers the envs)
from surgsim.datasets.policies import NOISE_PER_IMPAIRMENT, ExpertPolicy
from surgsim.scoring.make_rubrics import IMPAIRMENTS, record_task
from surgsim.scoring.metrics import compute_metrics
from surgsim.scoring.rubric import load_rubric, rubric_dir
from surgsim.scoring.score import grade_session
from surgsim.sessions import read_session

FIT_SEEDS = range(30)
BLOCK = 10


class _DrawRecorder:
    """Stands in for the degraded expert's generator and keeps its Gaussian noise draws."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng, self.noise = rng, []

    def random(self) -> float:
        return self.rng.random()

    def integers(self, *args):
        return self.rng.integers(*args)

    def normal(self, loc, scale, size):
        draw = self.rng.normal(loc, scale, size)
        self.noise.append(np.asarray(draw) - loc)
        return draw


def realised_noise(env_id: str, seeds: range) -> dict[tuple[float, int], float]:
    """Per (impairment, seed): the RMS of the noise the degraded expert drew, in units of the SD
    it was asked for at impairment 1; the same draws as :func:`record_task` makes."""
    env = gym.make(env_id)
    out = {}
    for level, impairment in enumerate(IMPAIRMENTS):
        expert = ExpertPolicy(env, impairment)
        for seed in seeds:
            recorder = _DrawRecorder(np.random.default_rng([level, seed]))
            expert.reset(seed, rng=recorder)  # type: ignore[arg-type]  (duck-typed generator)
            obs, _ = env.reset(seed=seed)
            done = False
            while not done:
                obs, _, terminated, truncated, _ = env.step(expert(obs))
                done = terminated or truncated
            noise = np.concatenate(recorder.noise) if recorder.noise else np.zeros(1)
            out[(impairment, seed)] = float(np.sqrt(np.mean(noise**2))) / NOISE_PER_IMPAIRMENT
    env.close()
    return out


def measure(env_id: str, seeds: range) -> list[dict]:
    """Record ``seeds`` at every impairment; per session its metrics, impairment and seed."""
    task = env_id.split("/")[1].removesuffix("-v0")
    rubric = load_rubric(rubric_dir() / f"{task}.yaml")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        record_task(env_id, Path(tmp), seeds)
        for path in sorted(Path(tmp).glob("*.parquet")):
            session = read_session(path)
            graded = grade_session(session, rubric, any_task=True)
            metrics = {k: v for k, v in compute_metrics(session).combined.items() if v is not None}
            rows.append({"metrics": metrics, "impairment": session.meta["labels"]["impairment"],
                         "seed": int(session.meta["source"]["seed"]),
                         "score": None if graded.score is None else graded.score.score,
                         "motion": None if graded.score is None else graded.score.metric_score})
    return rows


def ranking(values: np.ndarray, impairment: np.ndarray, seeds: np.ndarray) -> tuple[float, float, float]:
    """Spearman of ``values`` with impairment: pooled, mean over blocks of seeds, worst block."""
    blocks = [stats.spearmanr(values[b == seeds // BLOCK], impairment[b == seeds // BLOCK]).statistic
              for b in np.unique(seeds // BLOCK)]
    return float(stats.spearmanr(values, impairment).statistic), float(np.mean(blocks)), float(np.min(blocks))


def ridge_scores(fit: list[dict], test: list[dict], names: list[str], penalty: float) -> np.ndarray:
    """Impairment predicted by a ridge regression on standardised metrics fitted to ``fit``."""
    x_fit = np.array([[r["metrics"][n] for n in names] for r in fit])
    x_test = np.array([[r["metrics"][n] for n in names] for r in test])
    y = np.array([r["impairment"] for r in fit])
    centre, scale = x_fit.mean(axis=0), x_fit.std(axis=0)
    a, b = (x_fit - centre) / scale, (x_test - centre) / scale
    weights = np.linalg.solve(a.T @ a + penalty * np.eye(len(names)), a.T @ (y - y.mean()))
    return b @ weights


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", action="append", help="NeedleReach, Incision, SurgicalPath (default NeedleReach)")
    parser.add_argument("--start", type=int, default=100, help="first seed (score_resolution.py's blocks start at 100)")
    parser.add_argument("--seeds", type=int, default=80, help="seeds per impairment level, in blocks of 10")
    parser.add_argument("--penalty", type=float, default=1.0, help="ridge penalty on standardised metrics")
    args = parser.parse_args()
    print("| task | ranked by | Spearman with impairment, pooled | mean over blocks of 10 seeds | worst block |")
    print("|---|---|---:|---:|---:|")
    for task in args.task or ["NeedleReach"]:
        env_id = f"surgsim/{task}-v0"
        seeds = range(args.start, args.start + args.seeds)
        fit, test = measure(env_id, FIT_SEEDS), measure(env_id, seeds)
        graded = [r for r in test if r["score"] is not None]
        moved = [r for r in graded if r["motion"] is not None]
        names = sorted(n for n in set.intersection(*(set(r["metrics"]) for r in fit + test))
                       if np.std([r["metrics"][n] for r in fit]) > 0)
        impairment = np.array([r["impairment"] for r in test])
        seed = np.array([r["seed"] for r in test])
        rows = [(f"shipped rubric's score ({len(graded)} of {len(test)} graded)",
                 ranking(-np.array([r["score"] for r in graded]), np.array([r["impairment"] for r in graded]),
                         np.array([r["seed"] for r in graded])))]
        rows.append(("its motion score (the same, before critical errors)",
                     ranking(-np.array([r["motion"] for r in moved]), np.array([r["impairment"] for r in moved]),
                             np.array([r["seed"] for r in moved]))))
        # the metric is chosen on the fitting seeds, as the ridge is fitted there
        fit_impairment = np.array([r["impairment"] for r in fit])
        chosen = {n: stats.spearmanr([r["metrics"][n] for r in fit], fit_impairment).statistic for n in names}
        best = max(chosen, key=lambda n: abs(chosen[n]))
        rows.append((f"best single metric on seeds 0-29 ({best})",
                     ranking(np.sign(chosen[best]) * np.array([r["metrics"][best] for r in test]), impairment, seed)))
        rows.append((f"ridge on all {len(names)} metrics, fitted on seeds 0-29",
                     ranking(ridge_scores(fit, test, names, args.penalty), impairment, seed)))
        drawn = realised_noise(env_id, seeds)
        rows.append(("the expert's own noise draws (no recording sees them)",
                     ranking(np.array([drawn[(r["impairment"], r["seed"])] for r in test]), impairment, seed)))
        for what, (pooled, mean, worst) in rows:
            print(f"| {task} | {what} | {pooled:.3f} | {mean:.3f} | {worst:.3f} |")


if __name__ == "__main__":
    main()
