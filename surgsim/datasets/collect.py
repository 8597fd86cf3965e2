"""Roll a policy out in a surgsim env and keep every step: the episodes of a demonstration dataset."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from surgsim.datasets.policies import AgentPolicy, ExpertPolicy, Policy, RandomPolicy
from surgsim.datasets.store import DatasetError, Episode, check_free, dataset_id, info_row, write_dataset
from surgsim.errors import SurgsimError

#: episodes over which the random and expert reference scores are averaged
REF_EPISODES = 20


def rollout(env: gym.Env, policy: Policy, seed: int) -> Episode:
    """One episode reset with ``seed``, every observation, action, reward, ending and info kept."""
    policy.reset(seed)
    obs, info = env.reset(seed=seed)
    episode = Episode(seed, [obs], [], [], [], [], {})
    _add_info(episode.infos, info)
    done = False
    while not done:
        action = policy(obs)
        obs, reward, terminated, truncated, info = env.step(action)
        episode.observations.append(obs)
        episode.actions.append(action)
        episode.rewards.append(float(reward))
        episode.terminations.append(bool(terminated))
        episode.truncations.append(bool(truncated))
        _add_info(episode.infos, info)
        done = terminated or truncated
    return episode


def _add_info(infos: dict[str, list[Any]], info: dict[str, Any]) -> None:
    for key, value in info_row(info).items():
        infos.setdefault(key, []).append(value)


def make_env(env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """The env, or a :class:`DatasetError` naming the unknown id or the bad keyword argument."""
    if env_id not in gym.registry:
        raise DatasetError(f"unknown env id {env_id!r}; `surgsim envs` lists the registered ids")
    try:
        return gym.make(env_id, **env_kwargs)
    except (TypeError, SurgsimError) as exc:
        raise DatasetError(f"--env-kwargs {env_kwargs} for {env_id}: {exc}") from None


def mean_return(env: gym.Env, policy: Policy, seeds: range) -> float:
    return float(np.mean([rollout(env, policy, seed).total_return for seed in seeds]))


def collect(
    env_id: str, policy: str, episodes: int, root: str | Path, *, impairment: float = 0.0,
    name: str | None = None, seed: int = 0, env_kwargs: dict[str, Any] | None = None,
    ref_episodes: int = REF_EPISODES, progress: bool = True,
) -> Path:
    """Collect ``episodes`` episodes (episode ``i`` reset with seed ``seed + i``) of ``policy``
    ("expert" or a run folder) as dataset ``surgsim/<env>/<name>-v0`` under ``root``.

    The reference scores are the mean returns of uniform random actions and of the undegraded
    scripted expert over ``ref_episodes`` seeded episodes (seeds after the dataset's own).
    """
    env_kwargs = dict(env_kwargs or {})
    agent = None if policy == "expert" else AgentPolicy(policy, env_id)
    if agent is not None:
        env_kwargs = {**agent.env_kwargs, **env_kwargs}
    env = make_env(env_id, env_kwargs)
    try:
        actor: Policy = agent if agent is not None else ExpertPolicy(env, impairment)
        name = name or actor.name
        dataset = dataset_id(env_id, name)
        check_free(root, dataset)
        seeds = range(seed, seed + episodes)
        data = [rollout(env, actor, s) for s in tqdm(seeds, desc=f"collecting {dataset}", unit="episode",
                                                     disable=not progress)]
        ref_seeds = range(seed + episodes, seed + episodes + ref_episodes)
        ref_min = mean_return(env, RandomPolicy(env), ref_seeds)
        ref_max = mean_return(env, ExpertPolicy(env), ref_seeds)
        what = ("the scripted expert" if policy == "expert" and impairment == 0 else
                f"the scripted expert at impairment {impairment}" if policy == "expert" else
                f"the trained agent in {policy}")
        return write_dataset(
            root, dataset, data, env, algorithm=what,
            description=f"{episodes} episodes of {what} on {env_id} (seeds {seed}-{seed + episodes - 1}; "
                        f"env kwargs {env_kwargs or 'none'})",
            ref_min_score=ref_min, ref_max_score=ref_max, ref_episodes=ref_episodes,
        )
    finally:
        env.close()
