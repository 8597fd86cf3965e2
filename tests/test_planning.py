"""The reference path planner, path utilities, dataset generation and the env's reference paths."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import yaml

from surgsim._data import data_dir
from surgsim.errors import EnvError
from surgsim.planning import PlanningError, check_tip_path, plan
from surgsim.planning.dataset import generate, split_ranges
from surgsim.planning.paths import Polyline, densify, point_at, resample
from surgsim.scene import Part, Tube, vec3
from surgsim.sim import anatomy

MM = 1e-3
L_PATH = np.array([[0.0, 0.0, 0.0], [1.0, 0.0, 0.0], [1.0, 1.0, 0.0]])


# ------------------------------------------------------------------ path utilities
def test_resample_by_arc_length_keeps_the_ends():
    expected = [[0, 0, 0], [0.5, 0, 0], [1, 0, 0], [1, 0.5, 0], [1, 1, 0]]
    np.testing.assert_allclose(resample(L_PATH, 5), expected)
    with pytest.raises(ValueError, match="k >= 2"):
        resample(L_PATH, 1)
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        resample(np.zeros((4, 2)), 3)


def test_project_point_at_and_densify():
    s, distance = Polyline(L_PATH).project(np.array([0.5, 0.2, 0.0]))
    assert (s, distance) == pytest.approx((0.5, 0.2))
    s, distance = Polyline(L_PATH).project(np.array([1.3, 0.6, 0.0]))
    assert (s, distance) == pytest.approx((1.6, 0.3))
    np.testing.assert_allclose(point_at(L_PATH, 1.25), [1.0, 0.25, 0.0])
    dense = densify(L_PATH, 0.3)
    assert len(dense) == 1 + 4 + 4  # each unit segment in 4 pieces of 0.25
    assert np.linalg.norm(np.diff(dense, axis=0), axis=1).max() <= 0.3


# ------------------------------------------------------------------ planner
def _planned(env, seed):
    env.reset(seed=seed)
    task = env.unwrapped.task
    return task, plan(task)


@pytest.mark.parametrize("env_id, difficulty, seeds", [
    ("surgsim/SurgicalPath-v0", "medium", range(6)),
    ("surgsim/SurgicalPath-v0", "hard", range(3)),
    ("surgsim/NeedleReach-v0", "medium", range(2)),
    ("surgsim/Incision-v0", "medium", range(2)),
])
def test_plans_are_collision_free_in_pybullet_and_reach_the_target(make_env, env_id, difficulty, seeds):
    env = make_env(env_id, difficulty=difficulty)
    for seed in seeds:
        task, result = _planned(env, seed)
        check = check_tip_path(task, result.tips)
        assert check.collision_free and check.valid, (seed, check.reason)
        assert check.reaches_target and check.end_error < 1e-9
        np.testing.assert_allclose(result.tips[0], task.start_tip, atol=1e-9)
        # consecutive configurations are at most one action step apart, so an expert can follow
        assert (np.abs(np.diff(result.configs, axis=0)) <= task.tool.config_steps + 1e-12).all()
        assert result.min_clearance > 0.0


def test_trocar_plan_turns_outside_the_organ_with_the_safety_margin(make_env):
    env = make_env("surgsim/SurgicalPath-v0")
    for seed in range(4):
        task, result = _planned(env, seed)
        angles = result.configs[:, :2]
        turning = np.any(np.abs(angles - angles[-1]) > 1e-9, axis=1)  # before the final line
        tips = result.tips[turning]
        organ = task.scene.part("organ").shape
        inside = np.sum(((tips - organ.centre) / organ.radii) ** 2, axis=1) < 1.0
        assert not inside.any()
        assert result.clearance[turning].min() >= task.safety_margin
        # shorter than retracting to the start depth, turning there and then advancing
        assert result.length <= task.start_insertion * np.linalg.norm(
            np.array(task.start_tip - task.port) / task.start_insertion
            - (task.target - task.port) / task.target_insertion) + task.target_insertion - task.start_insertion + 1e-9


def test_planner_is_deterministic(make_env):
    a, b = make_env("surgsim/SurgicalPath-v0"), make_env("surgsim/SurgicalPath-v0")
    _, first = _planned(a, 7)
    _, again = _planned(a, 7)
    _, other = _planned(b, 7)
    for result in (again, other):
        assert np.array_equal(first.tips, result.tips) and np.array_equal(first.clearance, result.clearance)


def test_vessel_across_the_port_target_line_is_infeasible(make_env):
    env = make_env("surgsim/SurgicalPath-v0")
    env.reset(seed=0)
    task = env.unwrapped.task
    middle = task.port + 0.5 * (task.target - task.port)
    line = (task.target - task.port) / task.target_insertion
    across = np.cross(line, [0.0, 0.0, 1.0])
    across /= np.linalg.norm(across)
    points = anatomy.bent_tube(middle, across, np.cross(line, across), 0.06, 0.0)
    blocker = Part("blocker", "critical", Tube(tuple(map(vec3, points)), 0.003), (1, 0, 0, 1))
    task.show(task.scene.with_part(blocker))
    with pytest.raises(PlanningError, match="crosses blocker"):
        plan(task)
    check = check_tip_path(task, np.vstack([task.port + 0.03 * line, task.target]))
    assert not check.collision_free and check.reason.startswith("critical_structure")


def test_target_out_of_reach_is_infeasible(make_env):
    env = make_env("surgsim/SurgicalPath-v0")
    env.reset(seed=0)
    task = env.unwrapped.task
    lesion = task.scene.part("lesion")
    target = vec3(task.port + np.array([0.1, 0.0, -0.02]))  # about 79 degrees off vertical
    moved = dataclasses.replace(lesion, shape=dataclasses.replace(lesion.shape, centre=target))
    task.show(task.scene.with_part(moved))
    with pytest.raises(PlanningError, match="out of the tool's reach"):
        plan(task)


# ------------------------------------------------------------------ dataset
def test_split_ranges_partition_the_seeds():
    ranges = split_ranges(10, 50)
    seeds = [s for r in ranges.values() for s in r]
    assert sorted(seeds) == list(range(10, 60)) and len(ranges["val"]) == len(ranges["test"]) == 5


def test_generate_writes_shards_the_predictor_reads(tmp_path):
    from surgsim.predictor import load_split, read_meta

    root = generate("surgsim/SurgicalPath-v0", 10, tmp_path / "paths", workers=2, seed=50,
                    n_waypoints=6, progress=False)
    meta = read_meta(root)
    assert meta.task == "surgical_path" and meta.n_waypoints == 6
    seen = []
    for split in ("train", "val", "test"):
        data = load_split(root, split)
        seeds = data.seed.tolist()
        assert seeds == list(split_ranges(50, 10)[split])  # none infeasible here
        seen += seeds
        start, waypoints = data.start.numpy(), data.waypoints.numpy()
        np.testing.assert_allclose(waypoints[:, 0], start[:, 3:6], atol=1e-6)  # starts at the start tip
        np.testing.assert_allclose(waypoints[:, -1], data.target.numpy(), atol=1e-6)
        # the meta frame locates the target in the stored volume (voxel i spans origin + [i, i+1) * size)
        index = np.floor((data.target.numpy() - np.array(meta.origin)) / meta.voxel_size).astype(int)
        target = data.volume[:, meta.channels.index("target")].numpy()
        assert all(target[n][tuple(i)] > 127 for n, i in enumerate(index))
    assert sorted(seen) == list(range(50, 60)) and len(set(seen)) == 10
    assert json.loads((root / "meta.json").read_text())["infeasible"] == 0
    with pytest.raises(FileExistsError, match="not an empty folder"):
        generate("surgsim/SurgicalPath-v0", 3, root, progress=False)


def test_generate_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match="unknown env id 'surgsim/Nope-v0'"):
        generate("surgsim/Nope-v0", 3, tmp_path / "a", progress=False)
    with pytest.raises(ValueError, match=r"\['reference'\]"):
        generate("surgsim/SurgicalPath-v0", 3, tmp_path / "b", env_kwargs={"reference": "planner"}, progress=False)


# ------------------------------------------------------------------ env integration
@pytest.mark.parametrize("env_id", ["surgsim/SurgicalPath-v0", "surgsim/NeedleReach-v0", "surgsim/Incision-v0"])
def test_expert_follows_the_planned_reference_to_success(make_env, env_id):
    env = make_env(env_id, reference="planner")
    for seed in range(3):
        env.reset(seed=seed)
        unwrapped = env.unwrapped
        np.testing.assert_array_equal(unwrapped.reference_path(), plan(unwrapped.task).tips)
        for _ in range(unwrapped.task_spec.max_episode_steps):
            *_, terminated, truncated, info = env.step(unwrapped.expert_action())
            assert info["reference_deviation"] < 3 * MM
            if terminated or truncated:
                break
        assert info["is_success"], (seed, info["failure_reason"])


def test_planned_reference_drives_the_progress_reward(make_env):
    env = make_env("surgsim/SurgicalPath-v0", reference="planner")
    spec = env.unwrapped.task_spec
    _, previous = env.reset(seed=3)
    length = np.linalg.norm(np.diff(env.unwrapped.reference_path(), axis=0), axis=1).sum()
    assert previous["reference_deviation"] < 1e-9 and previous["distance_to_go"] == pytest.approx(length)
    rng = np.random.default_rng(0)
    for _ in range(15):
        action = env.unwrapped.expert_action() if rng.random() < 0.6 else env.action_space.sample()
        *_, terminated, truncated, info = env.step(action)
        expected = spec.reward.progress * (previous["distance_to_go"] - info["distance_to_go"]) / (spec.progress_scale_mm * MM)
        assert info["reward_progress"] == pytest.approx(expected, abs=1e-9)
        previous = info
        if terminated or truncated:
            break


def test_reference_obs_appends_the_next_waypoint(make_env):
    plain = make_env("surgsim/SurgicalPath-v0", reference="planner")
    env = make_env("surgsim/SurgicalPath-v0", reference="planner", reference_obs=True)
    assert env.observation_space.shape == (plain.observation_space.shape[0] + 3,)
    obs, _ = env.reset(seed=2)
    unwrapped = env.unwrapped
    task = unwrapped.task
    ahead = point_at(unwrapped.reference_path(), task.reference_lookahead)
    np.testing.assert_allclose(obs[-3:], (ahead - task.start_tip) / task.progress_scale, atol=1e-6)
    np.testing.assert_array_equal(obs[:-3], plain.reset(seed=2)[0])
    goal = make_env("surgsim/SurgicalPath-v0", obs_type="goal", reference_obs=True)
    assert goal.observation_space["observation"].shape == env.observation_space.shape


@pytest.mark.parametrize("kwargs, message", [
    ({"reference": "dream"}, "reference='dream' is not valid"),
    ({"reference": "predictor"}, "needs predictor=<checkpoint path>"),
    ({"predictor": "models/path.pt"}, "needs predictor=<checkpoint path>"),
    ({"reference_obs": True, "obs_type": "rgb"}, "reference_obs=True needs obs_type"),
])
def test_bad_reference_arguments(make_env, kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_env("surgsim/SurgicalPath-v0", **kwargs)


def test_predictor_reference_uses_the_checkpoint(make_env, tmp_path):
    import torch

    from surgsim.predictor import PathNet, PathPredictor, PredictorConfig
    from surgsim.predictor.predictor import PredictorError, save_checkpoint

    env = make_env("surgsim/SurgicalPath-v0")
    env.reset(seed=0)
    volume = env.unwrapped.preop_volume()
    config = PredictorConfig(
        task="surgical_path", env_id="surgsim/SurgicalPath-v0", resolution=volume.resolution,
        channels=list(volume.channels), n_waypoints=5, start_fields=list(env.unwrapped.task.start_fields),
        widths=[4], keypoints=2, hidden=8, frame_centre=[0.0, 0.0, -0.056], frame_half_extent=[0.064] * 3,
        volume_scale=1 / 255, start_mean=[0.0] * 6, start_std=[1.0] * 6,
    )
    torch.manual_seed(0)
    path = save_checkpoint(PathNet(config), config, tmp_path / "path.pt")
    ref = make_env("surgsim/SurgicalPath-v0", reference="predictor", predictor=str(path))
    ref.reset(seed=0)
    expected = PathPredictor.load(path).predict(volume.data, env.unwrapped.task.start_vector())
    np.testing.assert_allclose(ref.unwrapped.reference_path(), expected, atol=1e-6)
    ref.step(ref.unwrapped.expert_action())
    with pytest.raises(PredictorError, match="not 'needle_reach'"):
        make_env("surgsim/NeedleReach-v0", reference="predictor", predictor=str(path))
    # a checkpoint that does not fit the spec's volume is refused when the env is made ...
    spec = yaml.safe_load((data_dir("envs") / "surgical_path.yaml").read_text())
    spec["volume"]["resolution"] = volume.resolution // 2
    (tmp_path / "coarse.yaml").write_text(yaml.safe_dump(spec))
    with pytest.raises(EnvError, match=f"trained on {volume.resolution}\\^3 volumes"):
        make_env("surgsim/SurgicalPath-v0", task_spec=str(tmp_path / "coarse.yaml"), reference="predictor",
                 predictor=str(path))
    # ... and one that reads other channels (the same count) at the first patient
    swapped = config.model_copy(update={"channels": list(reversed(config.channels))})
    other = save_checkpoint(PathNet(swapped), swapped, tmp_path / "swapped.pt")
    env = make_env("surgsim/SurgicalPath-v0", reference="predictor", predictor=str(other))
    with pytest.raises(EnvError, match="the predictor reads channels"):
        env.reset(seed=0)
