"""Policies that make demonstrations: the scripted expert (optionally degraded, as a less skilled
operator would be), a trained agent's run folder, and uniform random actions (the reference
minimum score)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import gymnasium as gym
import numpy as np

from surgsim.errors import SurgsimError
from surgsim.tasks.experts import within_one_step

#: action noise SD per unit of impairment (continuous actions, in units of a full step)
NOISE_PER_IMPAIRMENT = 0.6
#: probability per step and unit of impairment that the operator hesitates (the tool stops)
HESITATION_PER_IMPAIRMENT = 0.15
#: a hesitation lasts 1 to this many steps
HESITATION_MAX_STEPS = 6
#: the discrete no-op (see :class:`surgsim.actions.DiscreteActions`)
NO_OP = 0


class PolicyError(SurgsimError):
    """A policy that cannot be made: bad impairment, a run of another env."""


class Policy(Protocol):
    """Gives an action for an observation; ``reset`` is called with each episode's seed."""

    name: str

    def reset(self, seed: int) -> None: ...

    def __call__(self, obs: Any) -> Any: ...


class ExpertPolicy:
    """The env's scripted expert (``env.unwrapped.expert_action()``), degraded by ``impairment``
    in [0, 1]: Gaussian action noise (SD 0.6 x impairment; a noisy step longer than a full step
    is shortened with its direction kept, so the noise on an axis already at full step is not
    clipped away) and hesitations (with probability 0.15 x impairment per step the tool stops for
    1-6 steps).
    With discrete actions the noise is a random action taken with probability 0.6 x impairment,
    and a hesitation is the no-op (action 0, :mod:`surgsim.actions`). The degradation is seeded per episode,
    so a dataset is reproducible."""

    def __init__(self, env: gym.Env, impairment: float = 0.0) -> None:
        if not 0.0 <= impairment <= 1.0:
            raise PolicyError(f"--impairment must be in [0, 1], got {impairment}")
        self.env, self.impairment = env, float(impairment)
        self.name = "expert" if impairment == 0 else f"impaired{round(100 * impairment)}"
        self.discrete = isinstance(env.action_space, gym.spaces.Discrete)
        self._rng = np.random.default_rng(0)
        self._pause = 0

    def reset(self, seed: int, rng: np.random.Generator | None = None) -> None:
        """A new episode; ``rng`` degrades it (default: a generator seeded by ``seed`` and the
        impairment)."""
        self._rng = rng if rng is not None else np.random.default_rng([seed, round(1000 * self.impairment)])
        self._pause = 0

    def __call__(self, obs: Any) -> Any:
        action = self.env.unwrapped.expert_action()
        if self.impairment == 0.0:
            return action
        rng, space = self._rng, self.env.action_space
        if self._pause == 0 and rng.random() < HESITATION_PER_IMPAIRMENT * self.impairment:
            self._pause = int(rng.integers(1, HESITATION_MAX_STEPS + 1))
        if self.discrete:
            if self._pause:
                self._pause -= 1
                return NO_OP
            if rng.random() < NOISE_PER_IMPAIRMENT * self.impairment:
                return int(rng.integers(space.n))
            return action
        action = np.asarray(action, dtype=np.float64)
        if self._pause:
            self._pause -= 1
            action = np.zeros_like(action)
        noisy = action + rng.normal(0.0, NOISE_PER_IMPAIRMENT * self.impairment, action.shape)
        return within_one_step(noisy).astype(space.dtype)


class RandomPolicy:
    """Uniform random actions, seeded per episode: the reference minimum score."""

    name = "random"

    def __init__(self, env: gym.Env) -> None:
        self.space = env.action_space

    def reset(self, seed: int) -> None:
        self.space.seed(seed)

    def __call__(self, obs: Any) -> Any:
        return self.space.sample()


class AgentPolicy:
    """A trained run (``surgsim train`` or ``surgsim pretrain`` folder), acting deterministically
    on observations normalised as in training."""

    name = "agent"

    def __init__(self, run_dir: str | Path, env_id: str) -> None:
        from surgsim.rl.evaluate import model_policy
        from surgsim.rl.train import load_run

        model, normalizer, args = load_run(run_dir, device="cpu")
        if args.env_id != env_id:
            raise PolicyError(f"--policy {run_dir}: the run was trained on {args.env_id}, not {env_id}")
        self.env_kwargs = args.env_kwargs
        self._act = model_policy(model, normalizer=normalizer)

    def reset(self, seed: int) -> None:
        """The agent is deterministic: nothing to seed."""

    def __call__(self, obs: Any) -> Any:
        return self._act(obs)
