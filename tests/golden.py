"""Golden traces: seeded episodes of every id and tissue model, recorded so that a refactoring can prove it changed nothing.

Each trace holds, per step, the observation, reward, termination flags and every info entry of
a fixed set of episodes (the scripted expert and seeded random actions, at two difficulties).
``tests/test_golden.py`` replays them and asks for the same numbers bit for bit.

Rewrite the traces only when a change of behaviour is intended, and say so in the commit:

    python tests/golden.py --write                                   # every case
    python tests/golden.py --write --cases "surgsim/Incision-v0[elastic]"  # one case
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
#: the traced cases: every id with rigid tissue (recorded before the elastic model existed, and
#: kept bit for bit since) and with the default elastic tissue, named ``<id>`` and ``<id>[elastic]``
CASES = {**{i: (i, "rigid") for i in surgsim.REGISTERED}, **{f"{i}[elastic]": (i, "elastic") for i in surgsim.REGISTERED}}


def trace(case: str) -> dict[str, np.ndarray]:
    """Every step of the :data:`EPISODES` of a case, as named arrays (key ``<field>/<episode>``)."""
    env_id, tissue = CASES[case]
    arrays: dict[str, np.ndarray] = {}
    for index, (policy, difficulty, seed) in enumerate(EPISODES):
        env = gym.make(env_id, difficulty=difficulty, tissue=tissue)
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
    """The stored traces: case -> named arrays."""
    traces: dict[str, dict[str, np.ndarray]] = {}
    with np.load(TRACES, allow_pickle=False) as data:
        for name in data.files:
            env_id, key = name.split("|", 1)
            traces.setdefault(env_id, {})[key] = data[name]
    return traces


def write(cases: list[str]) -> None:
    """Record ``cases`` again, keeping the stored traces of the others."""
    traces = load() if TRACES.exists() else {}
    for case in cases:
        traces[case] = trace(case)
    arrays = {f"{case}|{key}": value for case, named in traces.items() for key, value in named.items()}
    TRACES.parent.mkdir(exist_ok=True)
    np.savez_compressed(TRACES, **arrays)
    print(f"written: {TRACES} ({len(cases)} of {len(traces)} cases recorded, {TRACES.stat().st_size / 1e3:.0f} kB)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--write", action="store_true", help="record the traces again (intended changes only)")
    parser.add_argument("--cases", nargs="+", default=sorted(CASES), choices=sorted(CASES), metavar="CASE",
                        help="the cases to record (default: all): an env id (rigid) or '<id>[elastic]'")
    args = parser.parse_args()
    if args.write:
        write(args.cases)
    else:
        parser.print_help()
