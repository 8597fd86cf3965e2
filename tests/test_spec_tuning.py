"""Scenario sampling is tuned in the spec: changing one sampling field changes the drawn patients
as that field says (the defaults, in envs/*.yaml, reproduce the golden traces)."""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest
import yaml

from surgsim._data import data_dir
from surgsim.tasks import load_spec
from surgsim.tasks.base import MM

ENV_OF = {
    "needle_reach": "surgsim/NeedleReach-v0",
    "surgical_path": "surgsim/SurgicalPath-v0",
    "incision": "surgsim/Incision-v0",
}
SEEDS = range(6)


def _tasks(tmp_path, task: str, difficulty: str = "medium", **params):
    """The task after reset with each of SEEDS, under the shipped spec with ``params`` changed."""
    data = yaml.safe_load((data_dir("envs") / f"{task}.yaml").read_text())
    data["params"].update(params)
    path = tmp_path / f"{task}_tuned.yaml"
    path.write_text(yaml.safe_dump(data))
    env = gym.make(ENV_OF[task], task_spec=str(path), difficulty=difficulty)
    try:
        for seed in SEEDS:
            env.reset(seed=seed)
            yield env.unwrapped.task
    finally:
        env.close()


def test_shipped_specs_write_every_sampling_field():
    """Each spec file shows its tuning numbers instead of leaning on the model's defaults."""
    for task in ENV_OF:
        path = data_dir("envs") / f"{task}.yaml"
        written = set(yaml.safe_load(path.read_text())["params"])
        assert written == set(type(load_spec(path).params).model_fields), path


@pytest.mark.parametrize("difficulty", ["easy", "hard"])
def test_zero_organ_jitter_draws_the_nominal_organ(tmp_path, difficulty):
    nominal = np.array([50.0, 40.0, 30.0]) * MM
    for task in _tasks(tmp_path, "surgical_path", difficulty, organ_radius_jitter_frac=0.0):
        assert np.array_equal(task.scene.part("organ").shape.radii, nominal)
    jittered = [task.scene.part("organ").shape.radii for task in _tasks(tmp_path, "surgical_path", difficulty)]
    assert not any(np.array_equal(radii, nominal) for radii in jittered)


def test_zero_organ_centre_offset_centres_the_organ_on_the_lesion_or_below_the_gap(tmp_path):
    for task in _tasks(tmp_path, "surgical_path", organ_centre_offset_frac=0.0):
        centre = np.array(task.scene.part("organ").shape.centre)
        assert np.array_equal(centre[:2], task.target[:2])  # only z may be pushed down
        assert centre[2] <= task.target[2]


def test_angle_fractions_bound_the_lesion_and_the_start_pose(tmp_path):
    limit = math.radians(40.0)
    for task in _tasks(tmp_path, "surgical_path", lesion_angle_limit_frac=0.4, start_angle_limit_frac=0.5):
        assert max(map(abs, task.target_angles)) <= 0.4 * limit
        assert max(map(abs, task.start_config[:2])) <= 0.5 * limit


def test_vessel_length_is_read_from_the_spec(tmp_path):
    for task in _tasks(tmp_path, "surgical_path", vessel_length_mm=40.0):
        for name in task.scene.critical:  # both ends bow alike: end to end is the length
            points = np.array(task.scene.part(name).shape.points)
            assert np.linalg.norm(points[-1] - points[0]) == pytest.approx(40.0 * MM, abs=1e-12)


def test_zero_start_offset_starts_the_blade_on_the_line(tmp_path):
    for task in _tasks(tmp_path, "incision", "hard", start_offset_mm=0.0, line_centre_offset_mm=0.0):
        assert np.array_equal(task.start_tip[:2], task.curve[0])
        # with no centre offset the chord's middle is the tissue centre
        assert np.allclose((task.curve[0] + task.curve[-1]) / 2, 0.0, atol=1e-12)


def test_target_min_distance_keeps_targets_away_from_the_start(tmp_path):
    tolerance = 5.0 * MM
    for task in _tasks(tmp_path, "needle_reach", target_min_distance_tolerances=8.0):
        assert np.linalg.norm(task.target - np.array(task.params.start)) > 8.0 * tolerance
