"""Camera observations and renders: shapes, dtypes, not blank, depth in the camera range."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from simhelpers import CONTINUOUS_IDS


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_rgb_observation(make_env, env_id):
    env = make_env(env_id, obs_type="rgb")
    size = env.unwrapped.task_spec.image_size
    obs, _ = env.reset(seed=0)
    assert env.observation_space.shape == (size, size, 3)
    assert obs.shape == (size, size, 3) and obs.dtype == np.uint8
    assert env.observation_space.contains(obs)
    # a scene, not a blank frame (one or two colours); elastic Incision draws its skin flat-shaded
    assert len(np.unique(obs.reshape(-1, 3), axis=0)) > 5
    obs2, *_ = env.step(env.unwrapped.expert_action())
    assert obs2.shape == obs.shape and obs2.dtype == np.uint8


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_depth_observation(make_env, env_id):
    env = make_env(env_id, obs_type="depth")
    size = env.unwrapped.task_spec.image_size
    camera = env.unwrapped.task_spec.camera
    obs, _ = env.reset(seed=0)
    assert obs.shape == (size, size, 1) and obs.dtype == np.float32
    assert env.observation_space.contains(obs)
    assert np.isfinite(obs).all()
    assert len(np.unique(obs)) > 10
    assert obs.min() > camera.near
    assert obs.max() <= camera.far
    assert (obs < 0.99 * camera.far).mean() > 0.05  # something in view, not all background


def test_depth_sees_the_needle_move_closer(make_env):
    env = make_env("surgsim/SurgicalPath-v0", obs_type="depth")
    first, _ = env.reset(seed=0)
    second = first
    for _ in range(10):
        second, *_ = env.step(env.unwrapped.expert_action())
    assert not np.array_equal(first, second)


@pytest.mark.parametrize("env_id", CONTINUOUS_IDS)
def test_rgb_array_render(make_env, env_id):
    env = make_env(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    size = env.unwrapped.task_spec.render_size
    frame = env.render()
    assert frame.shape == (size, size, 3) and frame.dtype == np.uint8
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 5
    for _ in range(5):
        env.step(env.unwrapped.expert_action())
    assert not np.array_equal(env.render(), frame)  # the instrument moved in view


def test_render_without_render_mode_returns_none(make_env):
    env = make_env("surgsim/NeedleReach-v0")
    env.reset(seed=0)
    assert env.render() is None
    assert env.unwrapped.render() is None


def test_image_and_state_envs_run_the_same_simulation(make_env):
    state, rgb = (
        make_env("surgsim/SurgicalPath-v0"),
        make_env("surgsim/SurgicalPath-v0", obs_type="rgb"),
    )
    _, info_s = state.reset(seed=2)
    _, info_r = rgb.reset(seed=2)
    for _ in range(5):
        a = state.unwrapped.expert_action()
        *_, info_s = state.step(a)
        *_, info_r = rgb.step(a)
        np.testing.assert_array_equal(info_s["tip_position"], info_r["tip_position"])
        assert info_s["clearance"] == pytest.approx(info_r["clearance"], abs=1e-9)


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="DISPLAY semantics are X11's")
def test_human_render_mode_without_display_raises_instead_of_exiting():
    code = textwrap.dedent(
        """
        import gymnasium as gym
        import surgsim
        try:
            gym.make("surgsim/NeedleReach-v0", render_mode="human")
        except RuntimeError as exc:
            print("RAISED:", exc)
        """
    )
    environ = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    try:
        result = subprocess.run(
            [sys.executable, "-c", code],
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("gym.make(render_mode='human') hung without a display")
    assert result.returncode == 0, (
        f"interpreter exited with {result.returncode}: {result.stdout[-300:]}"
    )
    assert "RAISED:" in result.stdout


def _depth(env) -> np.ndarray:
    task = env.unwrapped.task
    return task.camera.rgbd(env.unwrapped.world, 160, 160)[1]


def test_the_incision_groove_is_cut_into_the_skin_in_depth_images(make_env):
    """Elastic tissue: after half the line is cut, the depth image is deeper along the cut (the
    groove) than the same scene drawn with the groove filled, and nowhere shallower."""
    env = make_env("surgsim/Incision-v0", render_mode="rgb_array")
    env.reset(seed=0)
    for _ in range(16):
        env.step(env.unwrapped.expert_action())
    task = env.unwrapped.task
    task.tool.set_tip(np.array([0.0, -0.07, 0.04]))  # the blade out of the view's way
    assert task.cut_depth.max() > 0.003
    cut = _depth(env)
    groove = task.cut_depth
    task.cut_depth = np.zeros_like(groove)
    task._carve()  # redrawn with nothing cut
    filled = _depth(env)
    task.cut_depth = groove
    deeper = cut - filled
    assert deeper.max() > 0.002  # the 3.5 mm groove, seen obliquely
    assert np.count_nonzero(deeper > 0.001) > 20
    assert deeper.min() > -1e-4


def test_the_organ_surface_dimples_under_the_tool_in_depth_images(make_env):
    """Elastic SurgicalPath: just before puncture the drawn organ surface near the tool is pushed
    in: the depth image is deeper there than the same scene drawn without the load."""
    env = make_env("surgsim/SurgicalPath-v0", render_mode="rgb_array")
    env.reset(seed=0)
    task = env.unwrapped.task
    force = 0.0
    while force < 1.0:  # into the capsule, short of puncture (1.5 N)
        _, _, terminated, _, info = env.step(env.unwrapped.expert_action())
        force = info["tool_force"]
        assert not terminated and not task._contact.punctured
    loaded = _depth(env)
    displacement = task._displacement
    task._displace(np.zeros_like(displacement))
    unloaded = _depth(env)
    task._displace(displacement)
    pushed = loaded - unloaded
    assert pushed.max() > 0.003
    assert np.count_nonzero(pushed > 0.001) > 10
