"""Session recorder overhead: env steps/s bare versus wrapped in SessionRecorder, same run, same seeds.

    python benchmarks/recorder.py
"""

from __future__ import annotations

import tempfile
import time

import gymnasium as gym

import surgsim  # noqa: F401  (registers the ids)
from surgsim.sessions import SessionRecorder

STEPS = 3000


def steps_per_second(env: gym.Env, steps: int = STEPS) -> float:
    """Random actions, episodes reset (seeded) as they end."""
    env.action_space.seed(0)
    env.reset(seed=0)
    episode, tic = 0, time.perf_counter()
    for _ in range(steps):
        *_, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            episode += 1
            env.reset(seed=episode)
    rate = steps / (time.perf_counter() - tic)
    env.close()
    return rate


def main() -> None:
    for env_id in ("surgsim/NeedleReach-v0", "surgsim/SurgicalPath-v0"):
        bare = steps_per_second(gym.make(env_id))
        with tempfile.TemporaryDirectory() as folder:
            recorder = SessionRecorder(gym.make(env_id), folder, "bench")
            recorded = steps_per_second(recorder)
            sessions = len(recorder.written)
        print(f"{env_id}: bare {bare:,.0f} steps/s, recorded {recorded:,.0f} steps/s "
              f"({sessions} sessions written), ratio {recorded / bare:.2f}")


if __name__ == "__main__":
    main()
