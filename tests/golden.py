"""Golden traces: seeded episodes of every id (rigid tissue), recorded so that a refactoring can prove it changed nothing.

Each trace holds, per step, the observation, reward, termination flags and every info entry of
a fixed set of episodes (the scripted expert and seeded random actions, at two difficulties).
``tests/test_golden.py`` replays them and asks for the same numbers bit for bit.

Rewrite the traces only when a change of behaviour is intended, and say so in the commit:

    python tests/golden.py --write
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

import surgsim

TRACES = Path(__file__).with_name("data") / "golden_traces.npz"

#: (policy, difficulty, seed) of the episodes traced for every id
EPISODES = (("expert", "medium", 0), ("random", "medium", 1), ("expert", "hard", 2))


def trace(env_id: str) -> dict[str, np.ndarray]:
    """Every step of the :data:`EPISODES` of ``env_id``, as named arrays (key ``<field>/<episode>``)."""
    arrays: dict[str, np.ndarray] = {}
    for index, (policy, difficulty, seed) in enumerate(EPISODES):
        env = gym.make(env_id, difficulty=difficulty, tissue="rigid")
        env.action_space.seed(seed)
        obs, info = env.reset(seed=seed)
        rows: dict[str, list[Any]] = {"obs": [obs], "reward": [0.0], "terminated": [False], "truncated": [False]}
        _append_info(rows, info)
        done = False
        while not done:
            action = env.unwrapped.expert_action() if policy == "expert" else env.action_space.sample()
            obs, reward, terminated, truncated, info = env.step(action)
            done = terminated or truncated
            for key, value in (("obs", obs), ("reward", reward), ("terminated", terminated), ("truncated", truncated)):
                rows[key].append(value)
            _append_info(rows, info)
        env.close()
        lengths = {len(v) for v in rows.values()}
        assert len(lengths) == 1, f"{env_id}: info keys differ between steps"
        for key, values in rows.items():
            arrays[f"{key}/{index}"] = np.asarray(values)
    return arrays


def _append_info(rows: dict[str, list[Any]], info: dict[str, Any]) -> None:
    for key, value in info.items():
        rows.setdefault(f"info.{key}", []).append("" if value is None else value)


def load() -> dict[str, dict[str, np.ndarray]]:
    """The stored traces: env id -> named arrays."""
    traces: dict[str, dict[str, np.ndarray]] = {}
    with np.load(TRACES, allow_pickle=False) as data:
        for name in data.files:
            env_id, key = name.split("|", 1)
            traces.setdefault(env_id, {})[key] = data[name]
    return traces


def write() -> None:
    arrays = {f"{env_id}|{key}": value for env_id in surgsim.REGISTERED for key, value in trace(env_id).items()}
    TRACES.parent.mkdir(exist_ok=True)
    np.savez_compressed(TRACES, **arrays)
    print(f"written: {TRACES} ({len(surgsim.REGISTERED)} ids, {TRACES.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="record the traces again (intended changes only)")
    if parser.parse_args().write:
        write()
    else:
        parser.print_help()
