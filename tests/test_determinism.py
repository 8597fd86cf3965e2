"""Seeding: bit-identical replays, distinct patients, isolated worlds, named fixed patients."""

from __future__ import annotations

import numpy as np
import pytest
from simhelpers import CONTINUOUS_IDS

STEPS = 200

PATIENTS = {
    "surgsim/NeedleReach-v0": ["reach-01", "reach-02"],
    "surgsim/SurgicalPath-v0": ["liver-01", "liver-02", "liver-03"],
    "surgsim/Incision-v0": ["skin-01", "skin-02", "skin-03"],
}


def _actions(seed: int, n: int = STEPS) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1.0, 1.0, (n, 3)).astype(np.float32)


class _Runner:
    """Steps one env through a fixed action sequence, resetting when an episode ends."""

    def __init__(self, env, seed: int, actions: np.ndarray) -> None:
        self.env, self.actions, self.i = env, actions, 0
        obs, _ = env.reset(seed=seed)
        self.observations, self.rewards, self.flags = [obs], [], []
        self.tips = []

    def step(self) -> None:
        obs, reward, terminated, truncated, info = self.env.step(self.actions[self.i])
        self.i += 1
        self.observations.append(obs)
        self.rewards.append(reward)
        self.flags.append((terminated, truncated, info["failure_reason"], info["clearance"]))
        self.tips.append(info["tip_position"])
        if terminated or truncated:
            self.observations.append(self.env.reset()[0])  # unseeded: continues the env's RNG

    def run(self) -> _Runner:
        while self.i < len(self.actions):
            self.step()
        return self

    def assert_identical(self, other: _Runner) -> None:
        assert len(self.observations) == len(other.observations)
        for a, b in zip(self.observations, other.observations):
            np.testing.assert_array_equal(a, b)
        assert self.rewards == other.rewards  # bit-identical floats
        assert self.flags == other.flags
        np.testing.assert_array_equal(np.array(self.tips), np.array(other.tips))


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_same_seed_gives_bit_identical_sequences(make_env, env_id):
    actions = _actions(7)
    first = _Runner(make_env(env_id), 42, actions).run()
    second = _Runner(make_env(env_id), 42, actions).run()
    first.assert_identical(second)
    assert sum(t or tr for t, tr, *_ in first.flags) >= 1, "the 200 steps should cross a reset"
    # the same env, re-seeded after all that, replays it too
    again = _Runner(first.env, 42, actions).run()
    first.assert_identical(again)


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_different_seeds_give_different_patients(make_env, env_id):
    env = make_env(env_id)
    observations = [env.reset(seed=seed)[0] for seed in range(5)]
    for i in range(5):
        for j in range(i + 1, 5):
            assert not np.array_equal(observations[i], observations[j]), (i, j)
    if env_id != "surgsim/Incision-v0":
        targets = []
        for seed in range(5):
            env.reset(seed=seed)
            targets.append(env.unwrapped.task.target.copy())
        assert len({tuple(np.round(t, 9)) for t in targets}) == 5


@pytest.mark.parametrize(
    ("id_a", "id_b"),
    [
        ("surgsim/SurgicalPath-v0", "surgsim/SurgicalPath-v0"),
        ("surgsim/Incision-v0", "surgsim/Incision-v0"),
        ("surgsim/NeedleReach-v0", "surgsim/SurgicalPath-v0"),
        ("surgsim/SurgicalPath-v0", "surgsim/Incision-v0"),
    ],
)
def test_interleaved_envs_match_envs_stepped_alone(make_env, id_a, id_b):
    actions_a, actions_b = _actions(1), _actions(2)
    alone_a = _Runner(make_env(id_a), 10, actions_a).run()
    alone_b = _Runner(make_env(id_b), 20, actions_b).run()

    env_a, env_b = make_env(id_a), make_env(id_b)
    assert env_a.unwrapped.world.client != env_b.unwrapped.world.client
    inter_a = _Runner(env_a, 10, actions_a)
    inter_b = _Runner(env_b, 20, actions_b)
    for _ in range(STEPS):
        inter_a.step()
        inter_b.step()
    inter_a.assert_identical(alone_a)
    inter_b.assert_identical(alone_b)


def test_closing_one_env_leaves_another_running(make_env):
    env_a, env_b = make_env("surgsim/SurgicalPath-v0"), make_env("surgsim/SurgicalPath-v0")
    env_a.reset(seed=0)
    env_b.reset(seed=0)
    env_a.close()
    for _ in range(10):
        obs, *_ = env_b.step(env_b.unwrapped.expert_action())
    assert np.isfinite(obs).all()


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_named_patient_is_fixed_regardless_of_seed(make_env, env_id):
    env = make_env(env_id)
    patient = PATIENTS[env_id][-1]
    obs_1, info_1 = env.reset(seed=1, options={"patient": patient})
    env.step(env.action_space.sample())
    obs_2, info_2 = env.reset(seed=999, options={"patient": patient})
    obs_3, _ = make_env(env_id).reset(options={"patient": patient})
    np.testing.assert_array_equal(obs_1, obs_2)
    np.testing.assert_array_equal(obs_1, obs_3)
    np.testing.assert_array_equal(info_1["tip_position"], info_2["tip_position"])
    # and the fixed patients differ from each other
    others = [env.reset(options={"patient": name})[0] for name in PATIENTS[env_id][:-1]]
    assert all(not np.array_equal(obs_1, other) for other in others)


def test_named_patient_uses_its_own_difficulty(make_env):
    env = make_env("surgsim/SurgicalPath-v0", difficulty="easy")
    spec = env.unwrapped.task_spec
    for name, patient in spec.patients.items():
        env.reset(options={"patient": name})
        vessels = [c for c in env.unwrapped.task.critical if c.startswith("vessel")]
        assert len(vessels) == spec.params.vessels[patient.difficulty], name


def test_named_patient_does_not_disturb_the_seeded_sequence(make_env):
    env, reference = make_env("surgsim/NeedleReach-v0"), make_env("surgsim/NeedleReach-v0")
    env.reset(seed=3)
    reference.reset(seed=3)
    env.reset(options={"patient": "reach-01"})
    np.testing.assert_array_equal(env.reset()[0], reference.reset()[0])


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_unknown_patient_raises_value_error_naming_it(make_env, env_id):
    env = make_env(env_id)
    with pytest.raises(ValueError, match="liver-99x"):
        env.reset(seed=0, options={"patient": "liver-99x"})
    # the env is still usable afterwards
    obs, _ = env.reset(seed=0, options={"patient": PATIENTS[env_id][0]})
    assert env.observation_space.contains(obs)


def test_unknown_reset_option_raises(make_env):
    env = make_env("surgsim/NeedleReach-v0")
    with pytest.raises(ValueError, match="patinet"):
        env.reset(seed=0, options={"patinet": "reach-01"})
