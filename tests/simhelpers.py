"""Plain helpers shared by the surgsim tests (imported as ``from simhelpers import ...``)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np

CONTINUOUS_IDS = ["surgsim/NeedleReach-v0", "surgsim/SurgicalPath-v0", "surgsim/Incision-v0"]
DISCRETE_IDS = [env_id.replace("-v0", "Discrete-v0") for env_id in CONTINUOUS_IDS]
ALL_IDS = CONTINUOUS_IDS + DISCRETE_IDS
GOAL_IDS = ["surgsim/NeedleReach-v0", "surgsim/SurgicalPath-v0"]

#: the reward terms of the default (elastic) tissue; rigid tissue has all but ``force``
REWARD_TERMS = ("progress", "time", "proximity", "damage", "success", "failure", "force")
INFO_KEYS = (
    "is_success",
    "is_failure",
    "failure_reason",
    *(f"reward_{term}" for term in REWARD_TERMS),
    "distance_to_target",
    "clearance",
    "depth",
    "tissue_damage",
    "tip_position",
    "tip_orientation",
    "tool_force",
    "tool_force_vector",
    "critical_force",
    "critical_contact",
)


def run_episode(env, policy, seed=None, options=None, max_steps=10_000):
    """One episode with ``policy(env)`` as the actor: (last info, steps, return, infos)."""
    env.reset(seed=seed, options=options)
    infos, total = [], 0.0
    for steps in range(1, max_steps + 1):
        _, reward, terminated, truncated, info = env.step(policy(env))
        total += reward
        infos.append(info)
        if terminated or truncated:
            return info, steps, total, infos
    raise AssertionError(f"episode did not end within {max_steps} steps")


def expert(env):
    return env.unwrapped.expert_action()


def push(*action):
    """A policy that always takes the same continuous action."""
    a = np.array(action, dtype=np.float32)
    return lambda env: a


def quick_train_args(tmp_path, algo: str, env_id: str, n: int, **extra):
    """Arguments of a short seeded CPU training run in ``tmp_path``, evaluated once at the end."""
    from surgsim.rl.train import TrainArgs  # here, so that importing this module stays light

    return TrainArgs(
        algo=algo, env_id=env_id, n_timesteps=n, seed=0, log_folder=str(tmp_path), eval_freq=n,
        eval_episodes=10, device="cpu", progress_bar=False, **extra,
    )


_BLOCKER = """import sys
class _Block:
    def find_spec(self, name, path=None, target=None):
        if name.split('.')[0] in {blocked!r}:
            raise ImportError(f'{{name}} is blocked in this test')
sys.meta_path.insert(0, _Block())
"""


def run_python(code: str, blocked: tuple[str, ...] = (), timeout: float = 120) -> str:
    """Run ``code`` in a fresh interpreter where the ``blocked`` packages cannot be imported, as on
    a machine without them; return its stdout after checking that it exited with status 0."""
    prefix = _BLOCKER.format(blocked=tuple(blocked)) if blocked else ""
    done = subprocess.run([sys.executable, "-c", prefix + code], capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return done.stdout


def one_line_error(result) -> str:
    """The CLI result's single ``error:`` line, after checking there is exactly one and no traceback."""
    lines = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.output, result.output
    return lines[0]
