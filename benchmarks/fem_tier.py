#!/usr/bin/env python
"""The ``fem`` tissue tier (issue 14) in the envs: speed, stability and determinism (the elastic
tier is checked against it by ``benchmarks/elastic_vs_fem.py``).

1. **Speed** (point 3, goal >= 20 env steps/s, the 20 Hz control rate): env steps per second of
   every task with ``tissue="fem"`` and its default mesh, resets included, with random actions
   and with the scripted expert (which presses, punctures and cuts).
2. **Stability** (point 2): ``--steps`` random-action steps on each of ``--seeds`` seeds per task
   (episodes reset as they end; ``--pressing``: each action's into-tissue component drawn towards
   the tissue): NaN anywhere (observation, reward, force, node positions), the largest node
   displacement seen (bounded: a diverging mesh runs away to metres) and the steps the tool
   spent in the tissue.
3. **Determinism** (point 2): two envs, same seed, ``--det-steps`` random steps: observations,
   rewards and forces compared bit for bit.

A measurement: exit code 0 whatever it finds.

    OMP_NUM_THREADS=1 python benchmarks/fem_tier.py                     # ~10 min on 2 cores
    OMP_NUM_THREADS=1 python benchmarks/fem_tier.py --steps 200 --seeds 2   # smoke run
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import time

import gymnasium as gym
import numpy as np

import surgsim  # noqa: F401  (registers the envs)

TASKS = ("surgsim/NeedleReach-v0", "surgsim/Incision-v0", "surgsim/SurgicalPath-v0")
#: the sign of the action component that moves each task's tool into its tissue (NeedleReach,
#: Incision: down; SurgicalPath: insertion)
INTO = {"surgsim/NeedleReach-v0": -1.0, "surgsim/Incision-v0": -1.0, "surgsim/SurgicalPath-v0": 1.0}
GOAL_STEPS_PER_S = 20.0


def _expert(env: gym.Env) -> np.ndarray:
    return env.unwrapped.expert_action()


def _random(env: gym.Env) -> np.ndarray:
    return env.action_space.sample()


def throughput(env_id: str, policy, steps: int, seed: int = 0) -> tuple[float, float]:
    """Env steps per second, resets included, and over the steps that end with the tool in the
    tissue alone (the slowest: the mesh is deformed; NaN if there were none)."""
    env = gym.make(env_id, tissue="fem")
    env.action_space.seed(seed)
    env.reset(seed=seed)
    task = env.unwrapped.task
    in_tissue, in_tissue_s = 0, 0.0
    start = time.perf_counter()
    for _ in range(steps):
        action = policy(env)
        before = time.perf_counter()
        _, _, term, trunc, _ = env.step(action)
        if task.fem.touching:
            in_tissue += 1
            in_tissue_s += time.perf_counter() - before
        if term or trunc:
            env.reset()
    rate = steps / (time.perf_counter() - start)
    env.close()
    return rate, in_tissue / in_tissue_s if in_tissue else math.nan


def stability(env_id: str, seed: int, steps: int, pressing: bool = False) -> tuple[bool, float, int, float, int]:
    """(any NaN, largest node displacement in m, episodes, peak force N, steps with the tool in
    the tissue) over random steps; ``pressing``: the into-tissue component of each action drawn
    in [0.2, 1] towards the tissue (uniform actions seldom reach NeedleReach's pad)."""
    env = gym.make(env_id, tissue="fem")
    env.action_space.seed(seed)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    nan, worst, episodes, peak, touching = not np.all(np.isfinite(obs)), 0.0, 0, 0.0, 0
    task = env.unwrapped.task
    for _ in range(steps):
        action = env.action_space.sample()
        if pressing:
            action[2] = INTO[env_id] * rng.uniform(0.2, 1.0)
        obs, reward, term, trunc, info = env.step(action)
        fem = task.fem
        disp = np.abs(fem.positions - fem.body.mesh.nodes)
        nan |= not (np.all(np.isfinite(obs)) and math.isfinite(reward) and np.all(np.isfinite(disp))
                    and math.isfinite(info["tool_force"]))
        worst = max(worst, float(np.nanmax(disp)))
        peak = max(peak, info["tool_force"])
        touching += fem.touching
        if term or trunc:
            episodes += 1
            obs, _ = env.reset()
    env.close()
    return nan, worst, episodes, peak, touching


def deterministic(env_id: str, seed: int, steps: int) -> bool:
    """Two envs, same seed and actions: the same observations, rewards and forces, bit for bit."""
    runs = []
    for _ in range(2):
        env = gym.make(env_id, tissue="fem")
        env.action_space.seed(seed)
        obs, _ = env.reset(seed=seed)
        trace = [obs.tobytes()]
        for _ in range(steps):
            obs, reward, term, trunc, info = env.step(env.action_space.sample())
            trace.append((obs.tobytes(), reward, info["tool_force"]))
            if term or trunc:
                obs, _ = env.reset()
        env.close()
        runs.append(trace)
    return runs[0] == runs[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--speed-steps", type=int, default=400, help="steps per throughput figure (0: skip)")
    ap.add_argument("--steps", type=int, default=1000, help="random steps per stability seed (0: skip)")
    ap.add_argument("--seeds", type=int, default=5, help="stability seeds per task")
    ap.add_argument("--first-seed", type=int, default=0, help="stability seeds start here")
    ap.add_argument("--pressing", action="store_true", help="stability: actions biased into the tissue")
    ap.add_argument("--det-steps", type=int, default=100, help="steps of the determinism check")
    ap.add_argument("--tasks", nargs="+", default=list(TASKS))
    args = ap.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    print(f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}\n")

    if args.speed_steps:
        speed(args.tasks, args.speed_steps)
    if args.steps:
        robustness(args.tasks, args.steps, range(args.first_seed, args.first_seed + args.seeds), args.det_steps,
                   args.pressing)


def speed(tasks: list[str], steps: int) -> None:
    print("## Speed (default mesh; env steps per second, resets included)\n")
    print("| env | random steps/s | expert steps/s | expert, steps in the tissue only | goal 20 steps/s |")
    print("|---|--:|--:|--:|---|")
    for env_id in tasks:
        rand, _ = throughput(env_id, _random, steps)
        expert, in_tissue = throughput(env_id, _expert, steps)
        verdict = "PASS" if min(rand, expert) >= GOAL_STEPS_PER_S else "FAIL"
        if in_tissue < GOAL_STEPS_PER_S:  # NaN (never in the tissue) compares False
            verdict += " (not in the tissue alone)"
        print(f"| {env_id} | {rand:.1f} | {expert:.1f} | {in_tissue:.1f} | {verdict} |", flush=True)


def robustness(tasks: list[str], steps: int, seeds: range, det_steps: int, pressing: bool) -> None:
    kind = "random steps pressing into the tissue" if pressing else "uniformly random steps"
    print(f"\n## Stability ({steps} {kind} x seeds {seeds.start}-{seeds.stop - 1} per task) and determinism\n")
    print("| env | NaN | largest node displacement (mm) | episodes | steps with the tool in tissue | "
          "peak force (N) | deterministic |")
    print("|---|---|--:|--:|--:|--:|---|")
    for env_id in tasks:
        start = time.perf_counter()
        results = [stability(env_id, seed, steps, pressing) for seed in seeds]
        same = deterministic(env_id, 0, det_steps)
        nan = any(r[0] for r in results)
        print(f"| {env_id} | {'yes' if nan else 'none'} | {max(r[1] for r in results) * 1e3:.1f} | "
              f"{sum(r[2] for r in results)} | {sum(r[4] for r in results)} | {max(r[3] for r in results):.2f} | "
              f"{'yes' if same else 'NO'} |  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
