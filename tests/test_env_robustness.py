"""No hang, no leak: bounded scenario samplers, impossible specs refused, memory flat over resets."""

from __future__ import annotations

import signal
from contextlib import contextmanager

import gymnasium as gym
import numpy as np
import pybullet as p
import pytest
import yaml

import surgsim.tasks.base
from surgsim._data import data_dir
from surgsim.sim import World
from surgsim.tasks import SpecError, load_spec
from surgsim.tasks.base import InfeasibleScenario

ENV_OF = {
    "needle_reach": "surgsim/NeedleReach-v0",
    "surgical_path": "surgsim/SurgicalPath-v0",
    "incision": "surgsim/Incision-v0",
}


def _spec_file(tmp_path, task: str, changes: dict[str, object]):
    """A copy of a shipped spec with ``changes`` ({"params.vessels": ...}) written to tmp_path."""
    data = yaml.safe_load((data_dir("envs") / f"{task}.yaml").read_text())
    for dotted, value in changes.items():
        *parents, key = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[key] = value
    path = tmp_path / f"{task}_changed.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@contextmanager
def _deadline(seconds: float):
    """Fail instead of hanging: a sampler that loops for ever is interrupted."""

    def expire(*_):
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


# ------------------------------------------------------------- spec validator
IMPOSSIBLE = [
    ("surgical_path", "params.vessel_radius_mm", [3.0, 3.0]),  # zero-width range
    ("surgical_path", "params.target_depth_mm", [110.0, 70.0]),  # inverted range
    ("incision", "params.start_height_mm", [5.0, 2.0]),
    ("incision", "params.incision_length_mm", [0.0, 80.0]),  # a zero-length incision
    ("surgical_path", "params.organ_radii_mm", [50.0, -40.0, 30.0]),  # negative size
    ("incision", "params.tissue_size_mm", [160.0, 0.0]),
    ("needle_reach", "params.target_half_range_mm", [50.0, -50.0, 40.0]),
    ("surgical_path", "params.vessels", {"easy": 1, "medium": 2}),  # 'hard' missing
    ("incision", "difficulty_scale", {"easy": 0.5, "hard": 1.5}),  # 'medium' missing
    ("surgical_path", "difficulty_scale", {"easy": 0.5, "medium": 1.0, "hard": 0.0}),
    ("needle_reach", "tolerance_mm", 80.0),  # tolerance wider than the workspace
    ("surgical_path", "tolerance_mm", 100.0),
    ("incision", "tolerance_mm", 90.0),
    ("surgical_path", "camera.far", 0.001),  # far < near
    ("needle_reach", "camera.far", 0.005),  # far == near
    ("incision", "camera.target", [0.0, -0.12, 0.12]),  # looking at its own eye
    ("needle_reach", "params.workspace_high", [0.1, -0.2, 0.15]),
    ("needle_reach", "params.start", [0.0, 0.0, 0.3]),  # outside the workspace
    ("incision", "params.incision_length_mm", [60.0, 200.0]),  # longer than the tissue
    ("surgical_path", "safety_margin_mm", float("inf")),  # .inf: no finite anatomy
    # scenario sampling fields: fractions in (0, 1], ranges of fractions, lengths > 0
    ("surgical_path", "params.lesion_angle_limit_frac", 0.0),
    ("surgical_path", "params.start_angle_limit_frac", 1.2),
    ("surgical_path", "params.lesion_inside_organ_frac", -0.1),
    ("surgical_path", "params.vessel_crossing_frac", [0.95, 0.55]),  # inverted
    ("surgical_path", "params.vessel_crossing_frac", [0.5, 0.5]),  # zero width
    ("surgical_path", "params.vessel_crossing_frac", [0.5, 1.5]),  # past the lesion
    ("surgical_path", "params.organ_radius_jitter_frac", 0.7),  # x 1.5 (hard): a radius <= 0
    ("surgical_path", "params.organ_centre_offset_frac", -0.3),
    ("surgical_path", "params.vessel_length_mm", 0.0),
    ("surgical_path", "params.wall_half_size_mm", -150.0),
    ("incision", "params.line_centre_offset_mm", -10.0),
    ("incision", "params.start_offset_mm", float("nan")),
    ("needle_reach", "params.target_min_distance_tolerances", -2.0),
]


@pytest.mark.parametrize(("task", "field", "value"), IMPOSSIBLE, ids=lambda v: str(v))
def test_impossible_anatomy_is_refused_naming_file_and_field(tmp_path, task, field, value):
    path = _spec_file(tmp_path, task, {field: value})
    for load in (lambda: load_spec(path), lambda: gym.make(ENV_OF[task], task_spec=str(path))):
        with pytest.raises(SpecError) as excinfo:
            load()
        message = str(excinfo.value)
        assert message.startswith(f"{path}: invalid spec: "), message
        assert f"field '{field}" in message, message
        assert "\n" not in message


def test_shipped_specs_name_their_file():
    path = data_dir("envs") / "surgical_path.yaml"
    assert load_spec(path).source == str(path)


# ------------------------------------------------------------- bounded samplers
def test_needle_reach_without_room_for_a_target_fails_instead_of_hanging(tmp_path):
    path = _spec_file(tmp_path, "needle_reach", {"params.target_half_range_mm": [0.0, 0.0, 0.0]})
    env = gym.make("surgsim/NeedleReach-v0", task_spec=str(path), difficulty="hard")
    with _deadline(10), pytest.raises(InfeasibleScenario) as excinfo:
        env.reset(seed=0)
    message = str(excinfo.value)
    assert isinstance(excinfo.value, ValueError)
    assert str(path) in message and "'hard'" in message and "tolerance_mm" in message, message
    env.close()


def test_surgical_path_with_no_feasible_start_fails_in_bounded_time(tmp_path):
    # a start pose 100 degrees off the lesion cannot exist inside a 40 degree angle limit
    path = _spec_file(tmp_path, "surgical_path", {"params.min_start_misalignment_deg": 100.0})
    env = gym.make("surgsim/SurgicalPath-v0", task_spec=str(path), difficulty="easy")
    with _deadline(20), pytest.raises(ValueError) as excinfo:
        env.reset(seed=0)
    message = str(excinfo.value)
    assert message.startswith("no feasible SurgicalPath scenario in 200 draws at difficulty 'easy'"), message
    assert str(path) in message and "min_start_misalignment_deg" in message, message
    env.close()


# ------------------------------------------------------------- memory
def _shapes_created(client: int) -> int:
    """How many collision shapes PyBullet holds: the id the next one gets (ids are never reused
    until the simulation is reset). Each shape of a removed body stays allocated until then."""
    return p.createCollisionShape(p.GEOM_SPHERE, radius=0.01, physicsClientId=client)


def test_resets_do_not_pile_up_pybullet_shapes():
    env = gym.make("surgsim/SurgicalPath-v0", difficulty="hard", reference="straight")
    env.reset(seed=0)
    client = env.unwrapped.world.client
    bodies = p.getNumBodies(physicsClientId=client)
    for _ in range(600):  # each reset draws >= 5 new bodies: ~3000 shapes if they piled up
        env.reset()
        assert p.getNumBodies(physicsClientId=client) == bodies
    assert _shapes_created(client) < 1000
    env.close()


def _episodes_with_clearing(monkeypatch, clear_after: int):
    """Six seeded hard SurgicalPath episodes (15 random steps each) when the world is cleared once
    ``clear_after`` bodies were removed: the reset observations, every step's (observation,
    reward, terminated, truncated), and how many times the world was cleared."""
    monkeypatch.setattr(surgsim.tasks.base, "_CLEAR_AFTER_REMOVALS", clear_after)
    clears = []
    real_clear = World.clear
    monkeypatch.setattr(World, "clear", lambda self: (clears.append(1), real_clear(self))[1])
    env = gym.make("surgsim/SurgicalPath-v0", difficulty="hard")
    actions = np.random.default_rng(0).uniform(-1, 1, (15, 3)).astype(np.float32)
    resets, steps = [], []
    for seed in range(6):
        resets.append(env.reset(seed=seed)[0])
        steps += [env.step(action)[:4] for action in actions]
    env.close()
    monkeypatch.setattr(World, "clear", real_clear)
    return resets, steps, len(clears)


def test_clearing_the_world_changes_nothing(monkeypatch):
    """Rebuilding the world (as happens every few dozen resets) gives the same episodes."""
    plain_resets, plain_steps, plain_clears = _episodes_with_clearing(monkeypatch, 10**9)  # never
    resets, steps, clears = _episodes_with_clearing(monkeypatch, 0)  # cleared at every reset
    assert (plain_clears, clears) == (0, 6)
    np.testing.assert_array_equal(np.array(resets), np.array(plain_resets))
    assert len(steps) == len(plain_steps) == 6 * 15
    for (obs, *flags), (plain_obs, *plain_flags) in zip(steps, plain_steps):
        np.testing.assert_array_equal(obs, plain_obs)
        assert flags == plain_flags  # reward, terminated, truncated


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


@pytest.mark.slow
def test_resident_memory_stays_flat_over_surgical_path_hard_resets():
    env = gym.make("surgsim/SurgicalPath-v0", difficulty="hard", reference="straight")
    env.reset(seed=0)
    for _ in range(100):
        env.reset()
    before = _rss_mb()
    for _ in range(2000):  # it grew ~65 KB per reset: ~130 MB
        env.reset()
    growth = _rss_mb() - before
    env.close()
    assert growth < 10.0, f"resident memory grew {growth:.1f} MB over 2000 resets"
