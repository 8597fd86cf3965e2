"""Seeded evaluation episodes: success rate, failure reasons, return and length."""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import gymnasium as gym
import numpy as np

from surgsim.outcome import episode_outcome

Policy = Callable[[Any], Any]


@dataclass
class EvalResult:
    episodes: int
    success_rate: float
    #: episodes that ruptured a critical structure (``critical_structure``) or cut into one
    #: (``bleeding``)
    critical_failure_rate: float
    mean_return: float
    std_return: float
    mean_length: float
    outcomes: dict[str, int] = field(default_factory=dict)
    returns: list[float] = field(default_factory=list)
    #: episodes ended by ``excessive_force``
    force_failure_rate: float = 0.0
    #: each episode's peak tool force (N; elastic tissue only, else empty)
    peak_forces: list[float] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> str:
        """Success rate, each other ending with its count, return and length, for a terminal."""
        lines = [f"success rate: {self.success_rate:.1%}"]
        lines += [f"  ended by {outcome}: {count}" for outcome, count in self.outcomes.items() if outcome != "success"]
        lines.append(f"mean return: {self.mean_return:.2f} +- {self.std_return:.2f}   "
                     f"mean length: {self.mean_length:.1f} steps")
        return "\n".join(lines)


def run_episodes(
    env: gym.Env,
    policy: Policy,
    episodes: int,
    seed: int = 0,
    patient: str | None = None,
    on_episode: Callable[[int, dict], None] | None = None,
) -> EvalResult:
    """Run ``episodes`` episodes, episode ``i`` reset with seed ``seed + i``.

    An episode's outcome is ``success``, its ``failure_reason`` or ``time_limit``.
    """
    outcomes: Counter[str] = Counter()
    returns, lengths, peaks = [], [], []
    options = {"patient": patient} if patient else None
    for i in range(episodes):
        obs, info = env.reset(seed=seed + i, options=options)
        total, steps, done, peak = 0.0, 0, False, info.get("tool_force")
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(obs))
            total += float(reward)
            steps += 1
            done = terminated or truncated
            if peak is not None:
                peak = max(peak, info["tool_force"])
        if peak is not None:
            peaks.append(peak)
        outcomes[episode_outcome(info)] += 1
        returns.append(total)
        lengths.append(steps)
        if on_episode is not None:
            on_episode(i, info)
    return EvalResult(
        episodes=episodes,
        success_rate=outcomes["success"] / episodes,
        critical_failure_rate=(outcomes["critical_structure"] + outcomes["bleeding"]) / episodes,
        mean_return=float(np.mean(returns)),
        std_return=float(np.std(returns)),
        mean_length=float(np.mean(lengths)),
        outcomes=dict(outcomes.most_common()),
        returns=returns,
        force_failure_rate=outcomes["excessive_force"] / episodes,
        peak_forces=peaks,
    )


def model_policy(model, deterministic: bool = True, normalizer=None) -> Policy:
    """Wrap an SB3 model (and optional VecNormalize statistics) as ``obs -> action``."""

    def act(obs):
        if normalizer is not None:
            obs = normalizer.normalize_obs(obs)
        action, _ = model.predict(obs, deterministic=deterministic)
        return action

    return act
