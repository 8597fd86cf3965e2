"""The pre-operative volume: channels, shape, world-aligned metric frame, partial-volume values,
and the analytic shaft model the planner searches with, against PyBullet's distances."""

from __future__ import annotations

import numpy as np
import pytest

from surgsim.env import SurgSimEnv, resolve_spec
from surgsim.planning import geometry as geo
from surgsim.planning.volume import partial_volume
from surgsim.tasks.spec import SpecError

MM = 1e-3


@pytest.fixture
def surgical(make_env):
    env = make_env("surgsim/SurgicalPath-v0")
    env.reset(seed=0)
    return env.unwrapped


def test_shape_channels_and_metric_frame(surgical):
    spec = surgical.task_spec.volume
    volume = surgical.preop_volume()
    r = spec.resolution
    assert volume.data.shape == (4, r, r, r) and volume.data.dtype == np.uint8
    assert volume.channels == ("tissue", "critical", "target", "port")
    assert volume.voxel_size == pytest.approx(spec.extent_mm * MM / r)
    centres = volume.centres()
    # voxel (i, j, k) is centred at origin + voxel_size * (i, j, k); the grid is centred on the spec's centre
    assert np.allclose(centres[3, 5, 7], volume.origin + volume.voxel_size * np.array([3, 5, 7]))
    assert np.allclose(centres.reshape(-1, 3).mean(axis=0), spec.centre)
    assert np.array_equal(volume.world_to_index(centres[3, 5, 7]), [3, 5, 7])


def test_lesion_vessel_and_outside_voxels(surgical):
    task = surgical.task
    volume = surgical.preop_volume()
    i, j, k = volume.world_to_index(task.target)
    centre = volume.centres()[i, j, k]
    # partial volume by hand: 255 * clip(0.5 - signed distance / voxel, 0, 1)
    d = np.linalg.norm(centre - task.target) - task.params.lesion_radius_mm * MM
    expected = int(np.rint(255 * np.clip(0.5 - d / volume.voxel_size, 0, 1)))
    assert volume.channel("target")[i, j, k] == expected > 127
    assert volume.channel("tissue")[i, j, k] == 255  # the lesion lies inside the organ
    assert volume.channel("critical")[i, j, k] == 0

    fine = surgical.preop_volume(resolution=64)  # 2 mm voxels: a centre lies within 1.8 mm of any point
    for part in task.scene.with_role("critical"):
        if part.name.startswith("vessel"):  # radius >= 2.5 mm
            points = part.shape.array
            index = tuple(fine.world_to_index(points[len(points) // 2]))
            assert fine.channel("critical")[index] > 127, part.name

    # the top corner lies above the body wall, far from every structure
    assert volume.centres()[0, 0, -1][2] > task.port[2]
    assert not volume.data[:, 0, 0, -1].any()


def test_partial_volume_grades_across_one_voxel():
    values = partial_volume(np.array([-1.0, -0.5, 0.0, 0.25, 0.5, 1.0]) * 4 * MM, 4 * MM)
    assert values.tolist() == [255, 255, 128, 64, 0, 0]


@pytest.mark.parametrize("env_id, channels", [
    ("surgsim/NeedleReach-v0", ("tissue", "critical", "target", "start")),
    ("surgsim/Incision-v0", ("tissue", "critical", "incision", "start")),
])
def test_other_tasks_export_volumes(make_env, env_id, channels):
    env = make_env(env_id)
    env.reset(seed=1)
    volume = env.unwrapped.preop_volume()
    assert volume.channels == channels
    index = tuple(volume.world_to_index(env.unwrapped.task.start_tip))
    assert volume.channel("start")[index] > 127


def test_spec_without_volume_block_is_a_clear_error():
    spec = resolve_spec("surgical_path.yaml").model_dump()
    spec.pop("volume")
    env = SurgSimEnv(task_spec=spec)
    try:
        env.reset(seed=0)
        with pytest.raises(SpecError, match="no 'volume' block"):
            env.preop_volume()
    finally:
        env.close()


def test_analytic_shaft_clearance_matches_pybullet(surgical):
    """The planner's closed-form shaft clearance against the env's own PyBullet query."""
    task = surgical.task
    rng = np.random.default_rng(0)
    tubes = geo.Tubes.from_parts(task.scene.with_role("critical"))
    configs = np.column_stack([rng.uniform(-0.5, 0.5, (40, 2)), rng.uniform(0.03, 0.12, 40)])
    tips = task.tool.config_to_tip(configs)
    back = (task.port - tips) / np.linalg.norm(task.port - tips, axis=1, keepdims=True)
    analytic, _ = geo.Shaft(*task.tool.shaft).clearance(tips, back, tubes, cap=task.clearance_range)
    pybullet, _ = task.check_poses(tips)
    close = pybullet < task.clearance_range - 1 * MM
    assert close.sum() >= 5  # the sample reaches near the vessels
    np.testing.assert_allclose(analytic[close], pybullet[close], atol=0.3 * MM)
