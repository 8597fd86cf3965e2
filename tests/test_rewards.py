"""Reward structure: named terms in info, their sum, potential-based progress, sparse, HER goals."""

from __future__ import annotations

import numpy as np
import pytest
from simhelpers import ALL_IDS, CONTINUOUS_IDS, GOAL_IDS, INFO_KEYS, REWARD_TERMS, expert, push

MM = 1e-3


def _mixed_policy(seed: int):
    """Expert most of the time, random otherwise: reaches successes, failures and shaped steps."""
    rng = np.random.default_rng(seed)

    def policy(env):
        if rng.random() < 0.7:
            return env.unwrapped.expert_action()
        return env.action_space.sample()

    return policy


#: a push that ends each task in a failure (the mixed policy alone fails only on Incision)
FAILING = {
    "surgsim/NeedleReach-v0": push(1.0, 0.0, 0.0),  # out of the workspace
    "surgsim/SurgicalPath-v0": push(0.0, 0.0, 1.0),  # insertion along the misaligned start line
    "surgsim/Incision-v0": push(0.0, 0.0, -1.0),  # down into the critical layer
}


def _rollout(env, policy, seeds, steps_per_seed=400):
    """(previous info, reward, info) triples over a few episodes."""
    triples = []
    for seed in seeds:
        env.action_space.seed(seed)
        _, previous = env.reset(seed=seed)
        for _ in range(steps_per_seed):
            _, reward, terminated, truncated, info = env.step(policy(env))
            triples.append((previous, reward, info))
            previous = info
            if terminated or truncated:
                break
    return triples


@pytest.mark.parametrize("env_id", ALL_IDS)
def test_info_has_every_key_on_reset_and_step(make_env, env_id):
    env = make_env(env_id)
    _, info = env.reset(seed=0)
    assert set(INFO_KEYS) <= set(info)
    assert all(info[f"reward_{t}"] == 0.0 for t in REWARD_TERMS)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert set(INFO_KEYS) <= set(info)
    assert isinstance(info["is_success"], bool) and isinstance(info["is_failure"], bool)
    assert info["failure_reason"] in (
        None,
        "critical_structure",
        "depth_limit",
        "off_path",
        "workspace",
    )
    assert np.shape(info["tip_position"]) == (3,) and np.shape(info["tip_orientation"]) == (4,)
    assert np.linalg.norm(info["tip_orientation"]) == pytest.approx(1.0)
    for key in ("distance_to_target", "clearance", "depth", "tissue_damage"):
        assert isinstance(info[key], float) and not np.isnan(info[key])
    assert np.allclose(info["tip_position"], env.unwrapped.task.tool.tip)


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_step_reward_is_the_sum_of_the_terms_and_progress_is_potential_based(make_env, env_id):
    env = make_env(env_id)
    spec = env.unwrapped.task_spec
    gamma, scale, weight = spec.gamma, spec.progress_scale_mm * MM, spec.reward.progress
    triples = _rollout(env, _mixed_policy(0), range(6)) + _rollout(env, FAILING[env_id], [6])
    outcomes = set()
    for previous, reward, info in triples:
        assert reward == pytest.approx(sum(info[f"reward_{t}"] for t in REWARD_TERMS), abs=1e-12)
        # the potential's distance: to the target, or still to go along a planned reference
        distance = "distance_to_target" if env.unwrapped.reference == "straight" else "distance_to_go"
        phi_before = -previous[distance] / scale
        phi_after = -info[distance] / scale
        assert info["reward_progress"] == pytest.approx(
            weight * (gamma * phi_after - phi_before), abs=1e-9
        )
        assert info["reward_time"] == -spec.reward.time
        assert info["reward_success"] == (spec.reward.success if info["is_success"] else 0.0)
        assert info["reward_failure"] == (-spec.reward.failure if info["is_failure"] else 0.0)
        assert info["is_failure"] == (info["failure_reason"] is not None)
        assert not (info["is_success"] and info["is_failure"])
        outcomes.add("success" if info["is_success"] else info["failure_reason"])
    assert "success" in outcomes  # the rollouts covered the success bonus
    assert outcomes - {"success", None}, outcomes  # ... and the failure penalty


def test_progress_rewards_moving_towards_the_target(make_env):
    env = make_env("surgsim/NeedleReach-v0")
    env.reset(seed=0)
    action = env.unwrapped.expert_action()
    *_, info_towards = env.step(action)
    env.reset(seed=0)
    *_, info_away = env.step(-action)
    assert info_towards["reward_progress"] > 0 > info_away["reward_progress"]


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_sparse_reward_has_only_success_and_failure(make_env, env_id):
    env = make_env(env_id, reward_type="sparse")
    spec = env.unwrapped.task_spec
    triples = _rollout(env, _mixed_policy(1), range(6)) + _rollout(env, FAILING[env_id], [6])
    outcomes = set()
    for _, reward, info in triples:
        for term in ("progress", "time", "proximity", "damage"):
            assert info[f"reward_{term}"] == 0.0
        expected = (spec.reward.success if info["is_success"] else 0.0) - (
            spec.reward.failure if info["is_failure"] else 0.0
        )
        assert reward == expected
        outcomes.add(reward)
    assert outcomes == {0.0, spec.reward.success, -spec.reward.failure}


def test_dense_and_sparse_agree_on_the_trajectory(make_env):
    dense, sparse = (
        make_env("surgsim/SurgicalPath-v0"),
        make_env("surgsim/SurgicalPath-v0", reward_type="sparse"),
    )
    for env in (dense, sparse):
        env.reset(seed=5)
    for _ in range(40):
        a = dense.unwrapped.expert_action()
        obs_d, _, term_d, _, info_d = dense.step(a)
        obs_s, r_s, term_s, _, info_s = sparse.step(a)
        np.testing.assert_array_equal(obs_d, obs_s)
        assert info_d["reward_success"] == info_s["reward_success"]
        assert term_d == term_s
        if term_d:
            break
    assert term_d and info_d["is_success"]
    assert r_s == sparse.unwrapped.task_spec.reward.success


# ------------------------------------------------------------------ goal obs
def _goal_rollout(env, steps=60, seed=0):
    env.action_space.seed(seed)
    policy = _mixed_policy(seed)
    obs, _ = env.reset(seed=seed)
    records = []
    for _ in range(steps):
        obs, reward, terminated, truncated, info = env.step(policy(env))
        records.append((obs["achieved_goal"], obs["desired_goal"], info, reward))
        if terminated or truncated:
            obs, _ = env.reset()
    return records


@pytest.mark.parametrize("reward_type", ["dense", "sparse"])
@pytest.mark.parametrize("env_id", GOAL_IDS)
def test_goal_obs_compute_reward_matches_step_reward(make_env, env_id, reward_type):
    env = make_env(env_id, obs_type="goal", reward_type=reward_type)
    obs, _ = env.reset(seed=0)
    assert set(obs) == {"observation", "achieved_goal", "desired_goal"}
    via_wrapper = env.get_wrapper_attr("compute_reward")
    via_unwrapped = env.unwrapped.compute_reward
    records = _goal_rollout(env)
    for achieved, desired, info, reward in records:
        assert np.allclose(achieved, info["tip_position"], atol=1e-6)
        for compute in (via_wrapper, via_unwrapped):
            value = compute(achieved, desired, info)
            assert np.shape(value) == ()
            assert float(value) == reward  # exactly, as HER and SB3's check_env require

    # vectorised: (B, 3) goals and an array of info dicts
    achieved = np.stack([r[0] for r in records])
    desired = np.stack([r[1] for r in records])
    infos = np.array([r[2] for r in records], dtype=object)
    rewards = np.array([r[3] for r in records])
    batch = via_wrapper(achieved, desired, infos)
    assert batch.shape == (len(records),)
    np.testing.assert_array_equal(batch, rewards.astype(np.float32))
    batch_list = env.unwrapped.compute_reward(achieved, desired, [r[2] for r in records])
    np.testing.assert_array_equal(batch_list, batch)
    # relabelling with the achieved goal as the desired one reaches the goal
    relabelled = via_wrapper(achieved, achieved, infos)
    costs = np.array([r[2]["goal_independent_reward"] for r in records])
    np.testing.assert_allclose(relabelled, costs, atol=1e-6)
    assert np.all(relabelled >= batch - 1e-6)
    if reward_type == "sparse":
        assert set(np.unique(np.round(rewards - costs, 6))) <= {-1.0, 0.0}


@pytest.mark.parametrize("env_id", GOAL_IDS)
def test_goal_obs_sparse_reward_is_exact(make_env, env_id):
    env = make_env(env_id, obs_type="goal", reward_type="sparse")
    compute = env.get_wrapper_attr("compute_reward")
    records = _goal_rollout(env)
    assert [float(compute(a, d, i)) for a, d, i, _ in records] == [r for *_, r in records]


@pytest.mark.parametrize("env_id", GOAL_IDS)
def test_goal_obs_dense_reward_is_exact(make_env, env_id):
    env = make_env(env_id, obs_type="goal", reward_type="dense")
    compute = env.get_wrapper_attr("compute_reward")
    records = _goal_rollout(env)
    mismatches = [(float(compute(a, d, i)), r) for a, d, i, r in records if compute(a, d, i) != r]
    assert not mismatches, f"{len(mismatches)}/{len(records)} steps differ, e.g. {mismatches[:3]}"


@pytest.mark.parametrize("env_id", GOAL_IDS)
def test_expert_solves_goal_obs_envs(make_env, env_id):
    env = make_env(env_id, obs_type="goal")
    for seed in range(5):
        env.reset(seed=seed)
        for _ in range(500):
            obs, _, terminated, truncated, info = env.step(expert(env))
            if terminated or truncated:
                break
        assert info["is_success"]
        assert (
            np.linalg.norm(obs["achieved_goal"] - obs["desired_goal"])
            <= env.unwrapped.task.tolerance + 1e-6
        )
