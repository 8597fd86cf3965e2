"""Failure modes and the physics behind them: vessels (whole shaft), depth, path, workspace,
tissue damage and proximity."""

from __future__ import annotations

import numpy as np
import pytest
from simhelpers import expert, push, run_episode

from surgsim.scene import Part, Sphere, vec3
from surgsim.sim.instruments import trocar_angles

MM = 1e-3
SEEDS = range(5)


def _steer_to_angles(env, yaw: float, pitch: float) -> list[dict]:
    """Turn the trocar tool to (yaw, pitch) with actions only, insertion unchanged."""
    task = env.unwrapped.task
    infos = []
    for _ in range(200):
        d_yaw, d_pitch = yaw - task.tool.yaw, pitch - task.tool.pitch
        if max(abs(d_yaw), abs(d_pitch)) < 1e-9:
            return infos
        action = np.clip([d_yaw / task.angle_step, d_pitch / task.angle_step, 0.0], -1, 1)
        *_, terminated, _, info = env.step(action.astype(np.float32))
        infos.append(info)
        assert not terminated, f"ended while re-aiming outside the organ: {info['failure_reason']}"
    raise AssertionError("could not steer to the requested angles")


def _aim_at_vessel(env, seed: int) -> np.ndarray:
    """Reset, then steer the tool (actions only) to point at the nearest point of a vessel."""
    env.reset(seed=seed)
    task = env.unwrapped.task
    vessel = next(name for name in task.critical if name.startswith("vessel"))
    point = np.array(task.world.closest(task.tool.body, vessel, 1.0).point_b)
    direction = (point - task.port) / np.linalg.norm(point - task.port)
    _steer_to_angles(env, *trocar_angles(direction))
    return point


# ---------------------------------------------------------------- SurgicalPath
@pytest.mark.parametrize("seed", SEEDS)
def test_driving_into_a_vessel_fails_with_critical_structure(make_env, seed):
    env = make_env("surgsim/SurgicalPath-v0", tissue="rigid")
    _aim_at_vessel(env, seed)
    failure_weight = env.unwrapped.task_spec.reward.failure
    infos = []
    for _ in range(100):
        _, reward, terminated, truncated, info = env.step(np.array([0, 0, 1], np.float32))
        infos.append(info)
        if terminated or truncated:
            break
    assert terminated and not truncated
    assert info["failure_reason"] == "critical_structure"
    assert info["is_failure"] and not info["is_success"]
    assert info["clearance"] <= 0.0
    assert info["reward_failure"] == -failure_weight < 0
    assert reward <= -failure_weight + 1.0  # no shaping bonus offsets the failure penalty
    # every earlier step was clear of the structures
    assert all(i["clearance"] > 0 and i["failure_reason"] is None for i in infos[:-1])


def test_shaft_not_only_the_tip_collides_with_critical_structures(make_env):
    env = make_env("surgsim/SurgicalPath-v0", tissue="rigid")
    env.reset(seed=3)
    unwrapped = env.unwrapped
    task = unwrapped.task
    yaw_t, pitch_t = task.target_angles
    insertion = task.target_insertion - 10 * MM
    task.tool.set_config(yaw_t, pitch_t, insertion)  # the feasible straight line: clear
    before = task.measure()
    assert before.clearance >= task.required_clearance - 1e-6
    assert before.failure_reason is None

    # a small "vessel" beside the middle of the shaft, overlapping the 2.5 mm shaft by 1 mm
    direction = np.array(task.tool.direction)
    side = np.cross(direction, [0.0, 0.0, 1.0])
    side /= np.linalg.norm(side)
    radius = 2 * MM
    centre = task.port + 0.5 * insertion * direction + (2.5 * MM + radius - 1 * MM) * side
    probe = Part("probe_vessel", "critical", Sphere(vec3(centre), radius), (1, 0, 0, 1))
    task.show(task.scene.with_part(probe))
    tip_gap = np.linalg.norm(task.tool.tip - centre) - radius
    assert tip_gap > 0.03, "the probe must be far from the tip"

    m = task.measure()
    assert m.clearance <= 0.0
    assert m.clearance == pytest.approx(-1 * MM, abs=0.2 * MM)
    assert m.failure_reason == "critical_structure"
    _, _, terminated, _, info = env.step(np.zeros(3, np.float32))
    assert terminated and info["failure_reason"] == "critical_structure"
    assert info["reward_failure"] == -unwrapped.task_spec.reward.failure


@pytest.mark.parametrize("seed", SEEDS)
def test_pushing_past_the_target_fails_with_depth_limit(make_env, seed):
    env = make_env("surgsim/SurgicalPath-v0", reference="straight")  # the task's aim-then-advance expert
    env.reset(seed=seed)
    task = env.unwrapped.task
    # the expert aims (retract, re-aim outside the organ) until it starts to advance
    for _ in range(200):
        action = env.unwrapped.expert_action()
        if action[2] > 0:
            break
        *_, terminated, _, _ = env.step(action)
        assert not terminated
    yaw_t, pitch_t = task.target_angles
    assert (
        abs(task.tool.yaw - yaw_t) < task.angle_step
        and abs(task.tool.pitch - pitch_t) < task.angle_step
    )
    # Pushing straight from here passes through the lesion and succeeds first, so place the
    # aligned tip just past the success zone, then keep pushing the insertion.
    task.tool.set_config(yaw_t, pitch_t, task.target_insertion + task.tolerance + 1 * MM)
    overshoot = env.unwrapped.task_spec.params.overshoot_mm * MM
    for _ in range(20):
        _, _, terminated, _, info = env.step(np.array([0, 0, 1], np.float32))
        if terminated:
            break
    assert info["failure_reason"] == "depth_limit"
    assert not info["is_success"]
    assert (
        task.target_insertion + overshoot
        < info["depth"]
        <= task.target_insertion + overshoot + task.insertion_step
    )
    assert info["reward_failure"] == -env.unwrapped.task_spec.reward.failure


def test_insertion_through_the_lesion_on_the_aligned_line_succeeds(make_env):
    env = make_env("surgsim/SurgicalPath-v0")
    env.reset(seed=0)
    task = env.unwrapped.task
    task.tool.set_config(*task.target_angles, task.start_insertion)
    for _ in range(100):
        *_, terminated, _, info = env.step(np.array([0, 0, 1], np.float32))
        if terminated:
            break
    assert info["is_success"] and info["failure_reason"] is None
    assert info["distance_to_target"] <= task.tolerance


def test_proximity_term_inside_the_safety_margin(make_env):
    env = make_env("surgsim/SurgicalPath-v0")
    _aim_at_vessel(env, 0)
    unwrapped = env.unwrapped
    margin = unwrapped.task.safety_margin
    weight = unwrapped.task_spec.reward.proximity
    seen_inside = seen_outside = False
    for _ in range(100):
        *_, terminated, _, info = env.step(np.array([0, 0, 1], np.float32))
        clearance, term = info["clearance"], info["reward_proximity"]
        if clearance < margin:
            seen_inside = True
            assert term < 0
            assert term == pytest.approx(-weight * (1 - max(clearance, 0.0) / margin))
        else:
            seen_outside = True
            assert term == 0.0
        if terminated:
            break
    assert seen_inside and seen_outside
    assert info["reward_proximity"] == pytest.approx(-weight)  # penetrating: the full weight


# ------------------------------------------------------------ tissue damage
def _advance_into_organ(env, seed: int, inside: float = 15 * MM) -> None:
    """Expert until the shaft is ``inside`` deep in the organ (aligned with the lesion)."""
    env.reset(seed=seed)
    task = env.unwrapped.task
    for _ in range(200):
        *_, terminated, _, _ = env.step(env.unwrapped.expert_action())
        assert not terminated
        if task.tissue_length >= inside:
            return
    raise AssertionError("the expert never got the shaft into the organ")


@pytest.mark.parametrize("seed", [2, 3])
def test_lateral_sweep_inside_the_organ_damages_tissue(make_env, seed):
    env = make_env("surgsim/SurgicalPath-v0")
    _advance_into_organ(env, seed)
    unwrapped = env.unwrapped
    task = unwrapped.task
    damage_before = task.damage_total
    r_tip, inside = task.tool.insertion, task.tissue_length
    *_, info = env.step(np.array([1, 0, 0], np.float32))  # sweep the yaw by one step
    increment = info["tissue_damage"] - damage_before
    assert increment > 0
    # swept annulus sector: dtheta * (r_tip^2 - r_in^2) / 2, with dtheta one angle step
    r_in = r_tip - task.tissue_length
    expected = task.angle_step * (r_tip**2 - r_in**2) / 2
    assert increment == pytest.approx(expected, rel=0.2)
    assert inside > 0
    weight = unwrapped.task_spec.reward.damage
    assert info["reward_damage"] == pytest.approx(-weight * increment * 1e6)  # per mm^2
    assert info["reward_damage"] < 0
    # pure insertion along the shaft sweeps (next to) nothing: acos of a dot product of 1 - 1 ulp
    # reads as ~1e-8 rad, so allow 1e-3 mm^2, far below one angle step's ~50 mm^2
    *_, info2 = env.step(np.array([0, 0, 0.25], np.float32))
    assert info2["tissue_damage"] - info["tissue_damage"] < 1e-9
    assert info2["reward_damage"] > -1e-3 * weight


@pytest.mark.parametrize("seed", SEEDS)
def test_reaiming_with_the_tip_outside_the_organ_does_no_damage(make_env, seed):
    env = make_env("surgsim/SurgicalPath-v0")
    env.reset(seed=seed)
    task = env.unwrapped.task
    assert task.tissue_length == 0.0  # the start insertion is short of the organ
    infos = _steer_to_angles(env, *task.target_angles)
    assert len(infos) >= 3  # the start is misaligned by >= 10 degrees
    assert all(i["tissue_damage"] == 0.0 and i["reward_damage"] == 0.0 for i in infos)


def _sweep_deep_policy():
    """Bad technique: insert along the misaligned start line, then re-aim deep, then advance."""
    state = {"deep": False}

    def policy(env):
        task = env.unwrapped.task
        if not state["deep"]:
            if task.tool.insertion < 0.8 * task.target_insertion:
                return np.array([0, 0, 1], np.float32)
            state["deep"] = True
        yaw_t, pitch_t = task.target_angles
        d = np.array([yaw_t - task.tool.yaw, pitch_t - task.tool.pitch]) / task.angle_step
        if np.abs(d).max() > 0.5:
            return np.array([*np.clip(d, -1, 1), 0.0], np.float32)
        return env.unwrapped.expert_action()

    return policy


def test_expert_technique_damages_less_than_sweeping_deep(make_env):
    env = make_env("surgsim/SurgicalPath-v0")
    expert_damage, sweep_damage = [], []
    for seed in (2, 3, 4, 7, 9, 10):
        info, *_ = run_episode(env, expert, seed=seed)
        assert info["is_success"]
        expert_damage.append(info["tissue_damage"])
        info, *_ = run_episode(env, _sweep_deep_policy(), seed=seed)
        sweep_damage.append(info["tissue_damage"])
    # the expert re-aims outside the organ: next to no swept area (< 1 mm^2 per episode)
    assert max(expert_damage) < 1e-6
    assert min(sweep_damage) > 10e-6  # > 10 mm^2 each
    assert np.mean(sweep_damage) > 100 * np.mean(expert_damage) + 1e-6


# ------------------------------------------------------------------- Incision
@pytest.mark.parametrize("seed", SEEDS)
def test_incision_cutting_too_deep_hits_the_critical_layer(make_env, seed):
    env = make_env("surgsim/Incision-v0", tissue="rigid")
    info, _, _, infos = run_episode(env, push(0, 0, -1), seed=seed)
    assert info["failure_reason"] == "critical_structure"
    assert info["clearance"] <= 0.0
    assert info["reward_failure"] == -env.unwrapped.task_spec.reward.failure
    band_high = env.unwrapped.task.band[1]
    assert info["depth"] > band_high
    # on the way down, the depth grew with every step once the blade was in the tissue
    depths = [i["depth"] for i in infos]
    assert depths == sorted(depths)
    # closing in on the layer costs proximity before it fails
    margin = env.unwrapped.task.safety_margin
    assert any(0 < i["clearance"] < margin and i["reward_proximity"] < 0 for i in infos[:-1])


def _sink_into_band(env, seed: int) -> None:
    env.reset(seed=seed)
    task = env.unwrapped.task
    for _ in range(50):
        *_, terminated, _, info = env.step(env.unwrapped.expert_action())
        assert not terminated
        if task.band[0] <= info["depth"] <= task.band[1] and task.coverage > 0:
            return
    raise AssertionError("the expert never reached the depth band")


@pytest.mark.parametrize("seed", SEEDS)
def test_incision_straying_off_the_line_while_cutting_fails_off_path(make_env, seed):
    env = make_env("surgsim/Incision-v0")
    _sink_into_band(env, seed)
    task = env.unwrapped.task
    tangent = task.curve[1] - task.curve[0]
    normal = np.array([-tangent[1], tangent[0]]) / np.linalg.norm(tangent)
    for _ in range(20):
        *_, terminated, _, info = env.step(np.array([*normal, 0.0], np.float32))
        if terminated:
            break
    assert info["failure_reason"] == "off_path"
    assert info["depth"] > 0
    assert info["reward_failure"] == -env.unwrapped.task_spec.reward.failure


def test_incision_moving_off_the_line_above_the_tissue_is_allowed(make_env):
    env = make_env("surgsim/Incision-v0")
    env.reset(seed=0)
    task = env.unwrapped.task
    tangent = task.curve[1] - task.curve[0]
    normal = np.array([-tangent[1], tangent[0]]) / np.linalg.norm(tangent)
    lateral = task.max_deviation + 4 * task.max_step  # well beyond the off-path limit
    for _ in range(int(lateral / (task.max_step * np.abs(normal).max())) + 1):
        *_, terminated, _, info = env.step(np.array([*normal, 0.0], np.float32))
        assert not terminated, info["failure_reason"]
        assert info["depth"] == 0.0
        assert info["reward_damage"] == 0.0


# ---------------------------------------------------------------- NeedleReach
@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_needle_leaving_the_workspace_fails(make_env, seed, axis):
    env = make_env("surgsim/NeedleReach-v0")
    env.reset(seed=seed)
    task = env.unwrapped.task
    action = np.zeros(3, np.float32)
    action[axis] = -np.sign(task.target[axis] - task.tool.tip[axis]) or 1.0  # away from the target
    info, *_ = run_episode(env, lambda e: action, seed=seed)
    assert info["failure_reason"] == "workspace"
    assert not info["is_success"]
    tip = info["tip_position"]
    assert np.any(tip < task.low) or np.any(tip > task.high)
    assert info["reward_failure"] == -env.unwrapped.task_spec.reward.failure


@pytest.mark.parametrize("difficulty", ["easy", "medium", "hard"])
def test_every_generated_patient_is_feasible_with_the_stated_clearance(make_env, difficulty):
    """The straight shaft to the lesion keeps required_clearance_mm from every critical structure."""
    env = make_env("surgsim/SurgicalPath-v0", difficulty=difficulty)
    task = env.unwrapped.task
    counts = set()
    for seed in range(15):
        env.reset(seed=seed)
        counts.add(len(task.critical))
        task.tool.set_config(*task.target_angles, task.target_insertion)
        measured = task.measure()
        assert measured.success and measured.failure_reason is None
        for name in task.critical:
            assert task.world.distance(task.tool.body, name, 0.05) >= task.required_clearance - 1e-6
    vessels = task.params.vessels[difficulty]
    assert counts == {vessels + task.params.nerves}


def test_good_technique_pays_off(make_env):
    """Retract, re-aim outside the organ, advance (the expert) out-earns aiming while advancing."""
    env = make_env("surgsim/SurgicalPath-v0", tissue="rigid")
    task = env.unwrapped.task

    def naive():  # turn and push at once, sweeping the shaft through tissue
        yaw_t, pitch_t = task.target_angles
        t = task.tool
        return np.clip([(yaw_t - t.yaw) / task.angle_step, (pitch_t - t.pitch) / task.angle_step,
                        (task.target_insertion - t.insertion) / task.insertion_step], -1, 1)

    results = {}
    for name, policy in (("expert", env.unwrapped.expert_action), ("naive", naive)):
        returns, damage, hits = [], [], 0
        for seed in range(30):
            env.reset(seed=seed)
            total, done = 0.0, False
            while not done:
                _, reward, terminated, truncated, info = env.step(policy())
                total += reward
                done = terminated or truncated
            returns.append(total)
            damage.append(info["tissue_damage"])
            hits += info["failure_reason"] == "critical_structure"
        results[name] = (np.mean(returns), np.mean(damage), hits)
    assert results["expert"][0] > results["naive"][0] + 2.0
    assert results["expert"][1] < 0.1 * results["naive"][1]
    assert results["expert"][2] == 0 < results["naive"][2]
