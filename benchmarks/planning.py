"""Reference path planner benchmark: planning time per scenario, the scripted expert following
the planned versus the straight reference, and what planning at every reset costs in steps/s.

    python benchmarks/planning.py            # 50 seeds per env
    python benchmarks/planning.py --seeds 200
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import numpy as np

import surgsim  # noqa: F401  (registers the ids)
from surgsim.planning import PlanningError, plan

ENVS = ["surgsim/SurgicalPath-v0", "surgsim/NeedleReach-v0", "surgsim/Incision-v0"]


def planner_timing(env_id: str, seeds: int) -> None:
    env = gym.make(env_id)
    plan_ms, volume_ms, infeasible = [], [], 0
    for seed in range(seeds):
        env.reset(seed=seed)
        tic = time.perf_counter()
        try:
            plan(env.unwrapped.task)
        except PlanningError:
            infeasible += 1
        plan_ms.append(1000 * (time.perf_counter() - tic))
        tic = time.perf_counter()
        env.unwrapped.preop_volume()
        volume_ms.append(1000 * (time.perf_counter() - tic))
    env.close()
    print(f"{env_id}: planner {np.mean(plan_ms):.1f} ms mean / {np.median(plan_ms):.1f} median / "
          f"{np.max(plan_ms):.1f} max per scenario, {infeasible}/{seeds} infeasible; "
          f"volume export {np.mean(volume_ms):.1f} ms")


def expert_run(env_id: str, reference: str, seeds: int) -> None:
    env = gym.make(env_id, reference=reference)
    wins, steps, damage, reset_ms, deviation = 0, [], [], [], []
    for seed in range(seeds):
        tic = time.perf_counter()
        env.reset(seed=seed)
        reset_ms.append(1000 * (time.perf_counter() - tic))
        done, k = False, 0
        while not done:
            _, _, terminated, truncated, info = env.step(env.unwrapped.expert_action())
            deviation.append(info["reference_deviation"])
            done, k = terminated or truncated, k + 1
        wins += bool(info["is_success"])
        steps.append(k)
        damage.append(info["tissue_damage"])
    env.close()
    print(f"  expert, reference={reference}: success {wins}/{seeds}, steps {np.mean(steps):.1f}, "
          f"tissue damage {np.mean(damage):.3g} (SI), max deviation from reference "
          f"{1000 * np.max(deviation):.2f} mm, reset {np.mean(reset_ms):.1f} ms")


def random_steps_per_second(env_id: str, reference: str, n: int = 5000) -> None:
    env = gym.make(env_id, reference=reference)
    env.reset(seed=0)
    env.action_space.seed(0)
    resets, tic = 0, time.perf_counter()
    for _ in range(n):
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
            resets += 1
    print(f"  random actions, reference={reference}: {n / (time.perf_counter() - tic):,.0f} steps/s "
          f"({resets} resets)")
    env.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=50, help="scenarios per env")
    opts = parser.parse_args()
    for env_id in ENVS:
        planner_timing(env_id, opts.seeds)
        for reference in ("straight", "planner"):
            expert_run(env_id, reference, opts.seeds)
            random_steps_per_second(env_id, reference)


if __name__ == "__main__":
    main()
