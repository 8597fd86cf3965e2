"""Registration, API conformance (gymnasium and SB3 checkers), spaces, and expert vs random."""

from __future__ import annotations

import warnings

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env as gym_check_env
from gymnasium.utils.passive_env_checker import env_render_passive_checker
from simhelpers import ALL_IDS, CONTINUOUS_IDS, DISCRETE_IDS, GOAL_IDS, expert, run_episode
from stable_baselines3.common.env_checker import check_env as sb3_check_env

import surgsim

# the obs types other than "state" checked on at least one id each
OBS_VARIANTS = [
    ("surgsim/NeedleReach-v0", "goal"),
    ("surgsim/SurgicalPath-v0", "goal"),
    ("surgsim/SurgicalPath-v0", "rgb"),
    ("surgsim/Incision-v0", "depth"),
]

def test_every_id_is_registered_and_listed():
    assert set(surgsim.REGISTERED) == set(ALL_IDS)
    for env_id in ALL_IDS:
        assert env_id in gym.registry
        assert surgsim.REGISTERED[env_id].strip()


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_spaces_match_the_action_type(make_env, env_id):
    env = make_env(env_id)
    n = 3
    if env_id in DISCRETE_IDS:
        assert env.action_space == gym.spaces.Discrete(2 * n + 1)
    else:
        assert env.action_space == gym.spaces.Box(-1.0, 1.0, (n,), np.float32)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    assert obs.dtype == np.float32 and obs.ndim == 1


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_gymnasium_check_env_state(make_env, env_id):
    env = make_env(env_id)
    with warnings.catch_warnings():
        # the flat state Box is unbounded by design; everything else must not warn
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=".*Box observation space m.*infinity.*")
        # "human" rendering needs a display: see test_rendering.py for that mode
        gym_check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize(("env_id", "obs_type"), OBS_VARIANTS)
def test_gymnasium_check_env_other_obs_types(make_env, env_id, obs_type):
    env = make_env(env_id, obs_type=obs_type)
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        warnings.filterwarnings("ignore", message=".*Box observation space m.*infinity.*")
        gym_check_env(env.unwrapped, skip_render_check=True)


@pytest.mark.parametrize("env_id", ["surgsim/NeedleReach-v0", "surgsim/Incision-v0"])
def test_gymnasium_render_checker_rgb_array(make_env, env_id):
    env = make_env(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    size = env.unwrapped.task_spec.render_size
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # the checker only warns about a bad frame
        frame = env_render_passive_checker(env.unwrapped)
    assert isinstance(frame, np.ndarray), type(frame)
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_sb3_check_env_state(make_env, env_id):
    sb3_check_env(make_env(env_id))


@pytest.mark.parametrize(
    ("env_id", "obs_type"), [("surgsim/SurgicalPath-v0", "rgb"), ("surgsim/Incision-v0", "depth")]
)
def test_sb3_check_env_images(make_env, env_id, obs_type):
    sb3_check_env(make_env(env_id, obs_type=obs_type))


# SB3's check_env calls env.compute_reward() on the object it is given, and gymnasium>=1.0
# wrappers do not forward attributes, so a goal env goes in unwrapped (SB3's own VecEnvs reach
# it through get_wrapper_attr). check_env steps with action_space.sample(): seed it, and try
# several seeds so that a reward mismatch in any sampled step shows.
@pytest.mark.parametrize("reward_type", ["sparse", "dense"])
@pytest.mark.parametrize("env_id", GOAL_IDS)
def test_sb3_check_env_goal(make_env, env_id, reward_type):
    env = make_env(env_id, obs_type="goal", reward_type=reward_type)
    for seed in range(10):
        env.action_space.seed(seed)
        sb3_check_env(env.unwrapped)


# ------------------------------------------------------------ expert vs random
@pytest.mark.parametrize("env_id", ALL_IDS)
def test_expert_succeeds_and_random_does_not(make_env, env_id):
    env = make_env(env_id)
    outcomes = []
    for seed in range(100):
        info, _, _, _ = run_episode(env, expert, seed=seed)
        outcomes.append(
            info["failure_reason"] or ("success" if info["is_success"] else "time limit")
        )
    expert_successes = outcomes.count("success")
    assert expert_successes >= 95, (
        f"expert on {env_id}: {expert_successes}/100; outcomes {outcomes}"
    )

    env.action_space.seed(1234)
    random_successes = sum(
        run_episode(env, lambda e: e.action_space.sample(), seed=10_000 + seed)[0]["is_success"]
        for seed in range(50)
    )
    assert random_successes <= 5, f"random on {env_id}: {random_successes}/50 successes"
    assert random_successes < expert_successes / 2


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_expert_action_lies_in_the_action_space(make_env, env_id):
    env = make_env(env_id)
    for seed in range(3):
        env.reset(seed=seed)
        for _ in range(20):
            action = env.unwrapped.expert_action()
            assert env.action_space.contains(action)
            *_, terminated, truncated, _ = env.step(action)
            if terminated or truncated:
                break


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_episodes_are_truncated_at_the_spec_limit(make_env, env_id):
    env = make_env(env_id)
    limit = env.unwrapped.task_spec.max_episode_steps
    assert env.spec.max_episode_steps is None  # the env owns its time limit: no TimeLimit wrapper
    env.reset(seed=0)
    for step in range(1, limit + 1):
        _, _, terminated, truncated, info = env.step(np.zeros(3, np.float32))  # stand still
        assert not terminated, info["failure_reason"]
        assert truncated == (step == limit)


@pytest.mark.parametrize("limit", [7, 80])  # shorter and longer than the built-in spec's 50
def test_custom_spec_max_episode_steps_is_honoured(make_env, tmp_path, limit):
    import yaml

    from surgsim._data import data_dir

    data = yaml.safe_load((data_dir("envs") / "needle_reach.yaml").read_text())
    assert data["max_episode_steps"] == 50
    data["max_episode_steps"] = limit
    path = tmp_path / "short.yaml"
    path.write_text(yaml.safe_dump(data))
    env = make_env("surgsim/NeedleReach-v0", task_spec=str(path))
    assert env.unwrapped.task_spec.max_episode_steps == limit
    env.reset(seed=0)
    steps = 0
    while True:
        steps += 1
        *_, terminated, truncated, _ = env.step(np.zeros(3, np.float32))
        if terminated or truncated or steps > 100:
            break
    assert truncated and steps == limit, f"truncated={truncated} after {steps} steps"
