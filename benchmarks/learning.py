"""Learning benchmark: how fast the default presets solve each env, over several seeds.

For each env (PPO on the continuous ids, DQN on the discrete ids) and seed, trains with
`surgsim train`'s code and the preset from agents/, evaluating every --eval-freq steps, and
reports: timesteps and wall time until the evaluation success rate first reaches the goal,
the final success rate and critical-structure failure rate over 100 held-out seeded episodes,
for the final model and for the run's best model (the one `surgsim train` keeps by its periodic
20-episode evaluations, on other seeds than the 100).
With panda-gym installed (the `bench` extra), PandaReachDense-v3 is trained in the same run
with the NeedleReach PPO settings, as the peer.

    python benchmarks/learning.py                         # every env, 3 seeds (hours on 2 cores)
    python benchmarks/learning.py --envs surgsim/NeedleReach-v0 --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import surgsim  # noqa: F401
from surgsim.rl.evaluate import model_policy, run_episodes
from surgsim.rl.train import TrainArgs, load_run, train

#: env id -> (algo, success-rate goal, timestep budget)
GOALS = {
    "surgsim/NeedleReach-v0": ("ppo", 0.98, 50_000),
    "surgsim/NeedleReachDiscrete-v0": ("dqn", 0.98, 50_000),
    "surgsim/SurgicalPath-v0": ("ppo", 0.90, 1_000_000),
    "surgsim/SurgicalPathDiscrete-v0": ("dqn", 0.85, 1_000_000),
    "surgsim/Incision-v0": ("ppo", 0.90, 1_000_000),
    "surgsim/IncisionDiscrete-v0": ("dqn", 0.90, 1_000_000),
}
FINAL_EPISODES = 100
#: the most critical-structure plus excessive-force failures a run may have (issue 13)
MAX_UNSAFE = 0.02


def bench_env(env_id: str, seed: int, eval_freq: int, budget: int | None, folder: Path) -> dict:
    algo, goal, default_budget = GOALS[env_id]
    steps = budget or default_budget
    start = time.time()
    run = train(TrainArgs(algo=algo, env_id=env_id, n_timesteps=steps, seed=seed, log_folder=str(folder),
                          eval_freq=eval_freq, eval_episodes=20, device="cpu", progress_bar=False))
    wall = time.time() - start
    history = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    reached = next((h for h in history if h["success_rate"] >= goal), None)
    final, best = (_final_eval(run, env_id, use_best) for use_best in (False, True))
    return {
        "env_id": env_id, "algo": algo, "seed": seed, "goal": goal, "timesteps": steps,
        "wall_s": round(wall, 1),
        "steps_to_goal": reached["timesteps"] if reached else None,
        "wall_s_to_goal": round(reached["wall_time"] - start, 1) if reached else None,
        "final_success": final.success_rate,
        "final_critical_failure": final.critical_failure_rate,
        "final_force_failure": final.force_failure_rate,
        "final_peak_force": final.peak_forces,
        "final_outcomes": final.outcomes,
        "best_model_success": best.success_rate,
        "best_model_critical_failure": best.critical_failure_rate,
    }


def _final_eval(run: Path, env_id: str, best: bool):
    model, normalizer, _ = load_run(run, device="cpu", best=best)
    env = gym.make(env_id)
    return run_episodes(env, model_policy(model, True, normalizer), FINAL_EPISODES, seed=100_000)


def bench_panda_peer(seed: int, steps: int) -> dict | None:
    """PandaReachDense-v3 with the NeedleReach PPO preset (MultiInputPolicy for its Dict obs)."""
    try:
        import panda_gym  # noqa: F401
    except ImportError:
        print("panda-gym not installed (pip install 'surgsim[bench]'): peer skipped")
        return None
    from stable_baselines3 import PPO
    from stable_baselines3.common.env_util import make_vec_env

    from surgsim.rl.presets import RUN_KEYS, load_preset

    preset = load_preset("ppo", "surgsim/NeedleReach-v0")
    kwargs = {k: v for k, v in preset.items() if k not in RUN_KEYS}
    venv = make_vec_env("PandaReachDense-v3", n_envs=preset["n_envs"], seed=seed)
    start = time.time()
    model = PPO("MultiInputPolicy", venv, seed=seed, device="cpu", **kwargs).learn(steps)
    wall = time.time() - start
    env = gym.make("PandaReachDense-v3")
    final = run_episodes(env, model_policy(model), FINAL_EPISODES, seed=100_000)
    return {"env_id": "PandaReachDense-v3", "algo": "ppo", "seed": seed, "timesteps": steps,
            "wall_s": round(wall, 1), "final_success": final.success_rate}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--envs", nargs="+", default=list(GOALS), choices=list(GOALS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-freq", type=int, default=5_000)
    parser.add_argument("--timesteps", type=int, default=None, help="override every env's budget")
    parser.add_argument("--no-peer", action="store_true", help="skip PandaReachDense-v3")
    parser.add_argument("--json", type=Path, default=None, help="write every row to this file")
    parser.add_argument("--keep", type=Path, default=None, help="keep the run folders here (default: a temp dir)")
    opts = parser.parse_args()

    rows = []
    with tempfile.TemporaryDirectory() as temp:
        folder = opts.keep or Path(temp)
        for env_id in opts.envs:
            for seed in opts.seeds:
                row = bench_env(env_id, seed, opts.eval_freq, opts.timesteps, folder)
                rows.append(row)
                print(json.dumps(row), flush=True)
    if not opts.no_peer and "surgsim/NeedleReach-v0" in opts.envs:
        for seed in opts.seeds:
            row = bench_panda_peer(seed, opts.timesteps or GOALS["surgsim/NeedleReach-v0"][2])
            if row:
                rows.append(row)
                print(json.dumps(row), flush=True)

    print("\n| env id | algo | seed | budget | steps to goal | wall s to goal | wall s | final success "
          "(100 ep) | critical failures | force failures | peak force median / 95th pct (N) | "
          "best model success | best model critical |")
    print("|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
    for r in rows:
        print(f"| {r['env_id']} | {r['algo']} | {r['seed']} | {r['timesteps']:,} | "
              f"{r.get('steps_to_goal') or '-'} | {r.get('wall_s_to_goal') or '-'} | {r['wall_s']} | "
              f"{r['final_success']:.0%} | {r.get('final_critical_failure', 0):.0%} | "
              f"{r.get('final_force_failure', 0):.0%} | {_peaks(r.get('final_peak_force'))} | "
              f"{_percent(r.get('best_model_success'))} | {_percent(r.get('best_model_critical_failure'))} |")
    for env_id in opts.envs:
        expert = run_episodes(env := gym.make(env_id), lambda obs: env.unwrapped.expert_action(), FINAL_EPISODES,
                              seed=100_000)
        print(f"| {env_id} | scripted expert | - | - | - | - | - | {expert.success_rate:.0%} | "
              f"{expert.critical_failure_rate:.0%} | {expert.force_failure_rate:.0%} | "
              f"{_peaks(expert.peak_forces)} | - | - |")
    for env_id in opts.envs:
        mine = [r for r in rows if r["env_id"] == env_id]
        algo, goal, _ = GOALS[env_id]
        mean = np.mean([r["final_success"] for r in mine])
        unsafe = max(r.get("final_critical_failure", 0) + r.get("final_force_failure", 0) for r in mine)
        verdict = "PASS" if all(r["final_success"] >= goal for r in mine) and unsafe <= MAX_UNSAFE else "FAIL"
        print(f"{verdict}  {env_id} ({algo}): mean final success {mean:.1%} over {len(mine)} seeds, goal {goal:.0%}; "
              f"worst critical + excessive-force failures {unsafe:.0%} (at most {MAX_UNSAFE:.0%})")
    if opts.json:
        opts.json.write_text(json.dumps(rows, indent=2))


def _peaks(peaks: list[float] | None) -> str:
    """Median and 95th percentile of episodes' peak tool forces (N), or '-' (rigid tissue)."""
    if not peaks:
        return "-"
    return f"{np.median(peaks):.2f} / {np.percentile(peaks, 95):.2f}"


def _percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.0%}"


if __name__ == "__main__":
    main()
