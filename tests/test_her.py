"""Hindsight experience replay (HER) on the goal envs: compute_reward from the goals alone, SB3's
HerReplayBuffer with its defaults, the CLI's HER preset, and SAC + HER learning NeedleReach."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from simhelpers import GOAL_IDS, expert, push, quick_train_args
from stable_baselines3 import SAC, HerReplayBuffer

from surgsim.rl.evaluate import model_policy, run_episodes
from surgsim.rl.presets import load_preset
from surgsim.rl.train import TrainingError, load_run, train

ANATOMY_TERMS = ("reward_proximity", "reward_damage", "reward_failure")


def _transitions(env, episodes=6):
    """(achieved, desired, info, reward) of every step of episodes run by the expert, a random
    policy, and a push straight out of the workspace, in turn."""
    env.action_space.seed(0)
    policies = [expert, lambda e: e.action_space.sample(), push(1.0, 0.0, 0.0)]
    records = []
    for episode in range(episodes):
        env.reset(seed=episode)
        policy, done = policies[episode % len(policies)], False
        while not done:
            obs, reward, terminated, truncated, info = env.step(policy(env))
            records.append((obs["achieved_goal"], obs["desired_goal"], info, reward))
            done = terminated or truncated
    return records


@pytest.mark.parametrize("reward_type", ["dense", "sparse"])
@pytest.mark.parametrize("env_id", GOAL_IDS)
def test_compute_reward_needs_no_info(make_env, env_id, reward_type):
    """Without info, compute_reward is the step reward less the terms the anatomy decides; on
    NeedleReach (none: its only failure, leaving the workspace, depends on the tip) exactly it."""
    env = make_env(env_id, obs_type="goal", reward_type=reward_type)
    compute = env.get_wrapper_attr("compute_reward")
    records = _transitions(env)
    achieved = np.stack([r[0] for r in records])
    desired = np.stack([r[1] for r in records])
    rewards = np.array([r[3] for r in records])
    anatomy = np.array([sum(r[2][k] for k in ANATOMY_TERMS) for r in records])
    if env_id == "surgsim/NeedleReach-v0":
        assert any(r[2]["failure_reason"] == "workspace" for r in records)
        expected = rewards
    else:
        expected = rewards - anatomy
    single = np.array([float(compute(a, d, {})) for a, d, *_ in records])
    np.testing.assert_allclose(single, expected, atol=1e-5)
    # SB3 passes a list (or object array) of empty dicts, one per goal
    for infos in ([{} for _ in records], np.array([{} for _ in records]), {}, None):
        batch = compute(achieved, desired, infos)
        assert batch.shape == (len(records),)
        np.testing.assert_array_equal(batch, single.astype(np.float32))


def test_sb3_her_replay_buffer_with_its_defaults_trains(make_env):
    env = make_env("surgsim/NeedleReach-v0", obs_type="goal", reward_type="sparse")
    model = SAC("MultiInputPolicy", env, replay_buffer_class=HerReplayBuffer, learning_starts=100,
                batch_size=32, seed=0, device="cpu")
    model.learn(160)  # KeyError: 'goal_independent_reward' before compute_reward needed no info
    rewards = model.replay_buffer.sample(256).rewards.numpy()
    # the goal term (-1 or 0), plus the failure penalty (5) on leaving the workspace
    assert set(np.unique(rewards)) <= {0.0, -1.0, -5.0, -6.0}
    assert 0.0 in rewards  # relabelled goals are reached


@pytest.mark.parametrize("env_id", GOAL_IDS)
def test_goal_observations_pick_the_her_preset(env_id):
    preset = load_preset("sac", env_id, "goal")
    assert preset["replay_buffer_class"] == "HerReplayBuffer"
    assert preset["policy"] == "MultiInputPolicy"
    assert "replay_buffer_class" not in load_preset("sac", env_id)


def test_replay_buffer_class_is_looked_up_not_evaluated(tmp_path):
    args = quick_train_args(
        tmp_path, "sac", "surgsim/NeedleReach-v0", 100, env_kwargs={"obs_type": "goal"},
        hyperparams={"replay_buffer_class": "__import__('os').getcwd()"},
    )
    with pytest.raises(TrainingError, match="replay_buffer_class"):
        train(args)
    assert not (tmp_path / "sac").exists()


@pytest.mark.slow
def test_sac_her_learns_needle_reach_from_sparse_goal_rewards(tmp_path):
    """The CLI's route (train with obs_type goal picks the HER preset) on the sparse reward."""
    env_kwargs = {"obs_type": "goal", "reward_type": "sparse"}
    run = train(quick_train_args(tmp_path, "sac", "surgsim/NeedleReach-v0", 4000, env_kwargs=env_kwargs))
    model, normalizer, _ = load_run(run, device="cpu")
    assert model.replay_buffer_class is HerReplayBuffer
    env = gym.make("surgsim/NeedleReach-v0", **env_kwargs)
    env.action_space.seed(0)
    held_out = 20_000  # apart from the training seeds and the run's own evaluation seeds
    learned = run_episodes(env, model_policy(model, normalizer=normalizer), 50, seed=held_out)
    random = run_episodes(env, lambda obs: env.action_space.sample(), 50, seed=held_out)
    env.close()
    assert random.success_rate <= 0.1
    assert learned.success_rate >= 0.8, learned.outcomes
