"""Bad input: constructor arguments, actions and spec files fail loudly and say what is wrong."""

from __future__ import annotations

import re
import warnings

import gymnasium as gym
import numpy as np
import pytest
import yaml
from simhelpers import CONTINUOUS_IDS, DISCRETE_IDS

from surgsim._data import data_dir
from surgsim.actions import DiscreteActions
from surgsim.tasks import SpecError, load_spec


# ------------------------------------------------------------- constructor
def test_unknown_kwarg_raises_type_error_naming_it():
    with pytest.raises(TypeError, match="obs_typo"):
        gym.make("surgsim/NeedleReach-v0", obs_typo="state")


@pytest.mark.parametrize(
    ("kwarg", "value"),
    [
        ("action_type", "joystick"),
        ("obs_type", "pixels"),
        ("reward_type", "shaped"),
        ("difficulty", "nightmare"),
        ("render_mode", "ascii"),
    ],
)
def test_invalid_choice_raises_value_error_naming_the_value(kwarg, value):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # gymnasium warns about an unlisted render_mode first
        with pytest.raises(ValueError, match=re.escape(repr(value))) as excinfo:
            gym.make("surgsim/SurgicalPath-v0", **{kwarg: value})
    assert kwarg in str(excinfo.value)


def test_goal_obs_on_incision_is_refused():
    with pytest.raises(ValueError, match="goal") as excinfo:
        gym.make("surgsim/Incision-v0", obs_type="goal")
    assert "Incision" in str(excinfo.value)


# ------------------------------------------------------------------ actions
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_non_finite_actions_raise(make_env, env_id, bad):
    env = make_env(env_id)
    env.reset(seed=0)
    before = env.unwrapped.task.tool.tip.copy()
    with pytest.raises(ValueError, match="NaN or infinite"):
        env.step(np.array([0.0, bad, 0.0], np.float32))
    np.testing.assert_array_equal(env.unwrapped.task.tool.tip, before)  # nothing moved


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_out_of_range_actions_are_clipped(make_env, env_id):
    big, unit = make_env(env_id), make_env(env_id)
    for env in (big, unit):
        env.reset(seed=4)
    for big_action in ([5, 5, 5], [-7, 3, -2], [0.5, -100, 1e9]):
        big_action = np.array(big_action, np.float32)
        obs_big, r_big, *_, info_big = big.step(big_action)
        obs_unit, r_unit, *_, info_unit = unit.step(np.clip(big_action, -1, 1))
        np.testing.assert_array_equal(obs_big, obs_unit)
        np.testing.assert_array_equal(info_big["tip_position"], info_unit["tip_position"])
        assert r_big == r_unit


def test_clipped_action_moves_exactly_one_max_step(make_env):
    env = make_env("surgsim/NeedleReach-v0")
    env.reset(seed=0)
    task = env.unwrapped.task
    start = task.tool.tip.copy()
    *_, info = env.step(np.array([5, 5, 5], np.float32))
    np.testing.assert_allclose(info["tip_position"] - start, [task.max_step] * 3, rtol=1e-12)


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_wrong_action_shape_raises(make_env, env_id):
    env = make_env(env_id)
    env.reset(seed=0)
    with pytest.raises(ValueError, match="shape"):
        env.step(np.zeros(2, np.float32))


@pytest.mark.parametrize("bad", [7, -1, 100, 2.5, "1", None])
@pytest.mark.parametrize("env_id", DISCRETE_IDS)
def test_discrete_action_out_of_range_raises(make_env, env_id, bad):
    env = make_env(env_id)
    env.reset(seed=0)
    with pytest.raises(ValueError, match=rf"^discrete action .*{re.escape(repr(bad))}"):
        env.unwrapped.step(bad)


@pytest.mark.parametrize("env_id", DISCRETE_IDS)
def test_every_discrete_action_moves_one_degree_of_freedom(make_env, env_id):
    env = make_env(env_id)
    for k in range(env.action_space.n):
        env.reset(seed=0)
        unit = env.unwrapped._to_unit_action(np.int64(k))
        assert DiscreteActions(len(unit)).encode(unit) == k  # the codec's two ways agree
        assert np.count_nonzero(unit) == (0 if k == 0 else 1)
        assert unit.sum() == (0 if k == 0 else (1 if k % 2 else -1))
        if k:  # 1, 2 move axis 0 (+, -); 3, 4 axis 1; 5, 6 axis 2: every axis both ways
            assert np.flatnonzero(unit).tolist() == [(k - 1) // 2]


# --------------------------------------------------------------- spec files
def _spec_with(tmp_path, name: str, **changes):
    data = yaml.safe_load((data_dir("envs") / "needle_reach.yaml").read_text())
    data.update(changes)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data))
    return path


BAD_SPECS = [
    ("negative_steps.yaml", {"max_episode_steps": -3}, "max_episode_steps", "-3"),
    ("unknown_field.yaml", {"colour_scheme": "teal"}, "colour_scheme", "teal"),
    ("bad_task.yaml", {"task": "appendectomy"}, "task", "appendectomy"),
    ("bad_gamma.yaml", {"gamma": 1.5}, "gamma", "1.5"),
    ("bad_reward.yaml", {"reward": {"progress": -1.0}}, "reward.progress", "-1.0"),
]


@pytest.mark.parametrize(("name", "changes", "field", "value"), BAD_SPECS)
def test_invalid_spec_file_raises_spec_error_naming_file_field_value(
    tmp_path, name, changes, field, value
):
    path = _spec_with(tmp_path, name, **changes)
    for load in (
        lambda: load_spec(path),
        lambda: gym.make("surgsim/NeedleReach-v0", task_spec=str(path)),
    ):
        with pytest.raises(SpecError) as excinfo:
            load()
        message = str(excinfo.value)
        assert str(path) in message
        assert field in message
        assert value in message
    assert issubclass(SpecError, ValueError)


def test_bad_task_error_names_the_task_field_itself(tmp_path):
    path = _spec_with(tmp_path, "bad_task.yaml", task="appendectomy")
    with pytest.raises(SpecError) as excinfo:
        load_spec(path)
    assert re.search(r"field '(\w+\.)?task' = 'appendectomy'", str(excinfo.value)), str(
        excinfo.value
    )


def test_missing_spec_file_raises_spec_error_naming_it(tmp_path):
    missing = tmp_path / "no_such_spec.yaml"
    with pytest.raises(SpecError, match="no_such_spec.yaml"):
        load_spec(missing)
    with pytest.raises(SpecError, match="no_such_spec.yaml"):
        gym.make("surgsim/NeedleReach-v0", task_spec=str(missing))


def test_malformed_yaml_and_non_mapping_raise_spec_error(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: [unclosed\n")
    with pytest.raises(SpecError, match="broken.yaml"):
        load_spec(broken)
    listing = tmp_path / "listing.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(SpecError, match="listing.yaml.*mapping"):
        load_spec(listing)


def test_a_valid_custom_spec_is_used(make_env, tmp_path):
    path = _spec_with(tmp_path, "wide.yaml", tolerance_mm=12.0, description="custom")
    env = make_env("surgsim/NeedleReach-v0", task_spec=str(path))
    assert env.unwrapped.task.tolerance == pytest.approx(0.012)
    assert env.unwrapped.task_spec.description == "custom"
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)


@pytest.mark.parametrize("path", sorted(data_dir("envs").glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_specs_load(path):
    spec = load_spec(path)
    assert spec.max_episode_steps > 0 and spec.patients
