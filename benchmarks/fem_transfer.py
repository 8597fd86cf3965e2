"""Sim-to-sim transfer (issue 14, point 5): PPO trained on elastic tissue, evaluated on FEM tissue.

For each seed, trains PPO on surgsim/SurgicalPath-v0 (its default elastic tissue, the shipped
preset from agents/) with `surgsim train`'s code, or reuses the run folders given with --runs;
then evaluates the final model deterministically on the same seeded episodes with
tissue="elastic" and tissue="fem", and reports success, critical-structure and excessive-force
failure rates and the per-episode peak tool force (N) on both. Goal: success on fem at least
80 % of success on elastic.

Each seed's figures are written to <out>/seed_<n>.json as soon as they are measured, and a seed
whose JSON is already there is not measured again; the run folders it trains are kept in
<out>/runs (pass them with --runs to evaluate them again without training).

    OMP_NUM_THREADS=1 python benchmarks/fem_transfer.py                  # 3 seeds, 60k steps each
    OMP_NUM_THREADS=1 python benchmarks/fem_transfer.py --runs RUN ... --episodes 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import surgsim  # noqa: F401
from surgsim.rl.evaluate import model_policy, run_episodes
from surgsim.rl.train import TrainArgs, load_run, read_run_args, train

ENV_ID = "surgsim/SurgicalPath-v0"
TISSUES = ("elastic", "fem")
#: success on fem over success on elastic that the issue asks for
GOAL_RATIO = 0.8
#: episode i is reset with seed EPISODE_SEED + i, apart from the seeds training evaluates on
EPISODE_SEED = 100_000


def train_run(seed: int, timesteps: int, folder: Path) -> Path:
    """A PPO run on the default (elastic) tissue with the shipped preset."""
    return train(TrainArgs(algo="ppo", env_id=ENV_ID, n_timesteps=timesteps, seed=seed, log_folder=str(folder),
                           device="cpu", progress_bar=False))


def evaluate_run(run: Path, episodes: int) -> dict:
    """The run's final model on each tissue: rates, peak forces and wall time, over the same episodes."""
    model, normalizer, args = load_run(run, device="cpu")
    row = {"run": str(run), "seed": args.seed, "timesteps": args.n_timesteps,
           "trained_on": args.env_kwargs.get("tissue", "default (elastic)"), "episodes": episodes}
    for tissue in TISSUES:
        env = gym.make(args.env_id, **{**args.env_kwargs, "tissue": tissue})
        start = time.time()
        result = run_episodes(env, model_policy(model, True, normalizer), episodes, seed=EPISODE_SEED)
        env.close()
        row[tissue] = {**result.to_dict(), "wall_s": round(time.time() - start, 1)}
        print(f"seed {args.seed} on {tissue}: success {result.success_rate:.0%} "
              f"({row[tissue]['wall_s']} s)", flush=True)
    return row


def table(rows: list[dict]) -> str:
    """Markdown: one line per seed and the mean; peak forces of the mean line pool every episode."""
    lines = [
        "| seed | success elastic | success fem | fem / elastic | critical failures elastic / fem | "
        "excessive-force failures elastic / fem | peak force median elastic / fem (N) | "
        "peak force 95th pct elastic / fem (N) |",
        "|---|--:|--:|--:|--:|--:|--:|--:|",
    ]
    pooled = {tissue: {"success_rate": np.mean([r[tissue]["success_rate"] for r in rows]),
                       "critical_failure_rate": np.mean([r[tissue]["critical_failure_rate"] for r in rows]),
                       "force_failure_rate": np.mean([r[tissue]["force_failure_rate"] for r in rows]),
                       "peak_forces": [p for r in rows for p in r[tissue]["peak_forces"]]}
              for tissue in TISSUES}
    for label, el, fem in [*((r["seed"], r["elastic"], r["fem"]) for r in rows),
                           ("mean", pooled["elastic"], pooled["fem"])]:
        lines.append(
            f"| {label} | {el['success_rate']:.1%} | {fem['success_rate']:.1%} | {_ratio(el, fem)} | "
            f"{el['critical_failure_rate']:.1%} / {fem['critical_failure_rate']:.1%} | "
            f"{el['force_failure_rate']:.1%} / {fem['force_failure_rate']:.1%} | "
            f"{_pct(el, 50)} / {_pct(fem, 50)} | {_pct(el, 95)} / {_pct(fem, 95)} |"
        )
    ratio = pooled["fem"]["success_rate"] / pooled["elastic"]["success_rate"] if pooled["elastic"]["success_rate"] else 0.0
    verdict = "PASS" if ratio >= GOAL_RATIO else "FAIL"
    lines.append(f"\n{verdict}: mean success on fem / on elastic = {ratio:.2f} over {len(rows)} seed(s) "
                 f"(goal >= {GOAL_RATIO})")
    return "\n".join(lines)


def _ratio(elastic: dict, fem: dict) -> str:
    return f"{fem['success_rate'] / elastic['success_rate']:.2f}" if elastic["success_rate"] else "-"


def _pct(result: dict, q: float) -> str:
    return f"{np.percentile(result['peak_forces'], q):.2f}" if result["peak_forces"] else "-"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2], help="training seeds (without --runs)")
    parser.add_argument("--timesteps", type=int, default=60_000, help="training budget per seed")
    parser.add_argument("--runs", nargs="+", type=Path, default=None, help="evaluate these run folders, no training")
    parser.add_argument("--episodes", type=int, default=100, help="evaluation episodes per tissue")
    parser.add_argument("--out", type=Path, default=Path(tempfile.gettempdir()) / "surgsim_fem_transfer")
    opts = parser.parse_args()

    print(f"machine: {platform.platform()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print(f"command: {' '.join(sys.argv)}", flush=True)
    opts.out.mkdir(parents=True, exist_ok=True)
    jobs = ([(read_run_args(run)[0].seed, run) for run in opts.runs] if opts.runs
            else [(seed, None) for seed in opts.seeds])
    rows = []
    for seed, run in jobs:
        done = opts.out / f"seed_{seed}.json"
        if done.is_file():
            print(f"seed {seed}: reusing {done}", flush=True)
            rows.append(json.loads(done.read_text()))
            continue
        train_wall = None
        if run is None:
            start = time.time()
            run = train_run(seed, opts.timesteps, opts.out / "runs")
            train_wall = round(time.time() - start, 1)
            print(f"seed {seed}: trained {run} in {train_wall} s", flush=True)
        row = {**evaluate_run(run, opts.episodes), "train_wall_s": train_wall}
        done.write_text(json.dumps(row, indent=2))
        rows.append(row)
    print()
    print(table(rows))


if __name__ == "__main__":
    main()
