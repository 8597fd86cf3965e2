"""The elastic tissue model on cases with known answers (issue 13 point 6).

Unit level: :mod:`surgsim.sim.tissue` on a material with round numbers (no PyBullet). Env level:
the same laws seen through ``gym.make("surgsim/<Id>-v0")`` (puncture, the lesion carried by the
load and given back, critical structures, the force reward and failure, the observation).
"""

from __future__ import annotations

import math

import gymnasium as gym
import numpy as np
import pytest

from surgsim.errors import EnvError
from surgsim.sim import tissue
from surgsim.sim.instruments import trocar_angles
from surgsim.sim.tissue import Material, ShaftContact

MM = 1e-3
SURGICAL_PATH = "surgsim/SurgicalPath-v0"
INCISION = "surgsim/Incision-v0"
#: SurgicalPath seeds on which the expert punctures the organ and reaches the lesion
EXPERT_SEEDS = (0, 1, 2)
#: a shaft pointing into the tissue (unit length: 1 + 4 + 4 = 9), and one perpendicular to it
AXIS = np.array([1.0, -2.0, -2.0]) / 3.0
SIDE = np.array([2.0, 2.0, -1.0]) / 3.0
ENTRY = np.array([0.01, 0.02, 0.0])


def material(**changes: float) -> Material:
    """A material with round numbers, so that every expected force is easy to write down."""
    values = dict(
        young_modulus=6000.0, poisson_ratio=0.45,
        stiffness_linear=100.0, stiffness_quadratic=2.0e4, puncture_force=0.9,
        friction=20.0, cutting_force=0.2, drag_stiffness=500.0,
        lateral_stiffness=5000.0, lateral_yield=2 * MM,
        blade_force=300.0, blade_speed_factor=10.0,
        critical_stiffness=500.0, rupture_force=1.0, load_radius=5 * MM,
    )
    values.update(changes)
    return Material(**values)


def _insert(contact: ShaftContact, inside: float, previous: float) -> np.ndarray:
    """Move the tip along the shaft from ``previous`` to ``inside`` (m past the entry point)."""
    tip = ENTRY + inside * AXIS
    return np.array(contact.update(tuple(tip), tuple(AXIS), inside, inside - previous))


def _puncture(contact: ShaftContact, to: float, step: float = 0.5 * MM) -> float:
    """Insert in steps until punctured, then on to ``to``; the length inside at the end."""
    inside = 0.0
    while inside < to - 1e-12 or not contact.punctured:
        _insert(contact, inside + step, inside)
        inside += step
    return inside


def _lateral(force: np.ndarray) -> np.ndarray:
    """The part of a force perpendicular to the shaft."""
    return force - (force @ AXIS) * AXIS


# ------------------------------------------------------------ out of contact
def test_no_force_out_of_tissue_and_the_hole_closes():
    contact = ShaftContact(material())
    for inside in (0.0, -1 * MM):
        assert contact.update(tuple(ENTRY), tuple(AXIS), inside, 1 * MM) == (0.0, 0.0, 0.0)
    inside = _puncture(contact, 10 * MM)
    assert np.linalg.norm(_insert(contact, inside, inside)) > 0
    # pulled out: no force, and going in again meets the intact capsule (stiffness, not friction)
    assert contact.update(tuple(ENTRY), tuple(AXIS), 0.0, -inside) == (0.0, 0.0, 0.0)
    assert not contact.punctured
    m = contact.material
    d = 1 * MM
    dimple = m.stiffness_linear * d + m.stiffness_quadratic * d * d
    assert np.linalg.norm(_insert(contact, d, 0.0)) == pytest.approx(dimple)


# ------------------------------------------------------- puncture, friction
def test_stiffness_before_puncture_then_the_force_drops():
    m = material()
    contact = ShaftContact(m)
    inside, forces = 0.0, []
    for _ in range(40):
        force = _insert(contact, inside + 0.5 * MM, inside)
        inside += 0.5 * MM
        expected = m.stiffness_linear * inside + m.stiffness_quadratic * inside * inside
        if expected >= m.puncture_force:  # the first indentation that reaches the puncture force
            break
        assert not contact.punctured
        assert force == pytest.approx(-expected * AXIS, rel=1e-12)  # along the shaft, pushing out
        forces.append(np.linalg.norm(force))
    else:
        raise AssertionError("never reached the puncture force")
    assert len(forces) >= 5 and np.all(np.diff(forces) > 0)  # grows with the indentation
    assert contact.punctured
    after = m.friction * inside + m.cutting_force
    assert force == pytest.approx(-after * AXIS, rel=1e-12)
    assert np.linalg.norm(force) < forces[-1] - 0.3  # a clear drop (at 5 mm: 0.86 N -> 0.30 N)


def test_friction_grows_with_length_sticks_when_stopped_and_reverses_on_retraction():
    m = material()
    contact = ShaftContact(m)
    inside = _puncture(contact, 5 * MM)
    axial = []
    for _ in range(15):  # advancing steadily: slipping at the friction limit plus cutting
        force = _insert(contact, inside + 1 * MM, inside)
        inside += 1 * MM
        assert force @ AXIS == pytest.approx(-(m.friction * inside + m.cutting_force), rel=1e-12)
        axial.append(-(force @ AXIS))
    assert np.all(np.diff(axial) > 0)

    # stopped: the grip holds (same sign, no decay); the tip no longer cuts, so the friction
    # part stays
    for _ in range(3):
        force = _insert(contact, inside, inside)
        assert force @ AXIS == pytest.approx(-m.friction * inside, rel=1e-12)

    # retracting: the grip unloads, then slips the other way at the friction limit (no cutting)
    signs = []
    for _ in range(6):
        force = _insert(contact, inside - 0.5 * MM, inside)
        inside -= 0.5 * MM
        signs.append(np.sign(force @ AXIS))
    assert signs[0] < 0 < signs[-1]
    assert force @ AXIS == pytest.approx(m.friction * inside, rel=1e-12)


def test_stopping_without_cutting_keeps_the_whole_force():
    m = material(cutting_force=0.0)
    contact = ShaftContact(m)
    inside = _puncture(contact, 12 * MM)
    moving = _insert(contact, inside + 1 * MM, inside)
    inside += 1 * MM
    for _ in range(3):
        assert _insert(contact, inside, inside) == pytest.approx(moving, rel=1e-12)


# ------------------------------------------------------------------- lateral
def test_pure_insertion_along_the_axis_has_no_lateral_force():
    contact = ShaftContact(material())
    inside = 0.0
    for _ in range(60):
        force = _insert(contact, inside + 0.5 * MM, inside)
        inside += 0.5 * MM
        assert np.linalg.norm(_lateral(force)) < 1e-12
    assert contact.punctured


def test_sideways_shaft_is_pushed_back_to_its_track_up_to_the_yield():
    m = material()
    contact = ShaftContact(m)
    inside = _puncture(contact, 20 * MM)
    tip = ENTRY + inside * AXIS
    k = m.lateral_stiffness * inside  # N per m of offset of the whole inserted length
    sizes = []
    for offset in np.arange(1, 9) * 0.25 * MM:  # up to the yield (2 mm): elastic
        force = np.array(contact.update(tuple(tip + offset * SIDE), tuple(AXIS), inside, 0.0))
        lateral = _lateral(force)
        assert lateral == pytest.approx(-k * offset * SIDE, rel=1e-9, abs=1e-15)  # to the track
        sizes.append(np.linalg.norm(lateral))
    assert np.all(np.diff(sizes) > 0)
    bound = k * m.lateral_yield
    for offset in (3 * MM, 4 * MM, 6 * MM):  # beyond it the tissue tears: bounded
        force = np.array(contact.update(tuple(tip + offset * SIDE), tuple(AXIS), inside, 0.0))
        assert _lateral(force) == pytest.approx(-bound * SIDE, rel=1e-9)
    # the track followed the shaft: it now lies one yield behind the farthest offset (6 - 2 mm)
    force = np.array(contact.update(tuple(tip + 4 * MM * SIDE), tuple(AXIS), inside, 0.0))
    assert np.linalg.norm(_lateral(force)) < 1e-9 * bound


# ------------------------------------------------------------------ Kelvinlet
def _kelvin(m: Material, r: np.ndarray, f: np.ndarray) -> np.ndarray:
    """Kelvin's point-load solution u = [(3 - 4 nu) I + r^ r^T] f / (16 pi mu (1 - nu) |r|)."""
    mu, nu = m.shear_modulus, m.poisson_ratio
    size = np.linalg.norm(r)
    unit = r / size
    return ((3 - 4 * nu) * f + unit * (unit @ f)) / (16 * math.pi * mu * (1 - nu) * size)


def test_kelvinlet_far_from_the_load_is_kelvins_solution():
    # a load spread over 1 micrometre seen 20-60 mm away: the regularisation changes u by a
    # relative (e / r)^2 ~ 1e-9, so 1e-6 is a safe tolerance
    m = material(load_radius=1e-6)
    load_point = np.array([0.01, -0.02, -0.05])
    f = np.array([0.3, -0.5, 0.8])
    rng = np.random.default_rng(0)
    directions = rng.normal(size=(12, 3))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    r = directions * rng.uniform(0.02, 0.06, (12, 1))
    u = tissue.kelvinlet(m, load_point + r, tuple(load_point), tuple(f))
    for got, offset in zip(u, r):
        assert got == pytest.approx(_kelvin(m, offset, f), rel=1e-6)


def test_kelvinlet_solves_navier_cauchy_with_its_spread_load():
    """Near the load (where Kelvin's solution does not apply): the regularised Kelvinlet is the
    displacement of the load f spread as rho(r) = 15 e^4 / (8 pi (r^2 + e^2)^(7/2)), i.e.
    mu lap(u) + mu / (1 - 2 nu) grad(div u) = -rho f (de Goes and James 2017); checked by
    finite differences."""
    m = material(poisson_ratio=0.3)  # far from incompressible: grad(div u) is well conditioned
    mu, nu, e = m.shear_modulus, m.poisson_ratio, m.load_radius
    c, f = np.array([0.01, 0.02, -0.03]), np.array([0.3, -0.5, 0.8])
    h, eye = e / 200, np.eye(3)

    def u(p: np.ndarray) -> np.ndarray:
        return tissue.kelvinlet(m, p[None, :], tuple(c), tuple(f))[0]

    def second(x: np.ndarray, i: int, j: int) -> np.ndarray:
        if i == j:
            return (u(x + h * eye[i]) - 2 * u(x) + u(x - h * eye[i])) / h**2
        a, b = h * eye[i], h * eye[j]
        return (u(x + a + b) - u(x + a - b) - u(x - a + b) + u(x - a - b)) / (4 * h * h)

    for offset in ([0.0, 0.0, 0.0], [2 * MM, -1 * MM, 3 * MM], [10 * MM, 4 * MM, -6 * MM]):
        x = c + offset
        laplacian = sum(second(x, k, k) for k in range(3))
        grad_div = np.array([sum(second(x, i, j)[j] for j in range(3)) for i in range(3)])
        rho = 15 * e**4 / (8 * math.pi * (np.dot(offset, offset) + e * e) ** 3.5)
        assert mu * laplacian + mu / (1 - 2 * nu) * grad_div == pytest.approx(-rho * f, rel=1e-3)


def test_kelvinlet_is_linear_in_the_load_zero_without_it_and_moves_points_ahead_along_a_push():
    m = material()
    load_point = (0.0, 0.0, -0.05)
    rng = np.random.default_rng(1)
    points = np.array(load_point) + rng.uniform(-0.03, 0.03, (20, 3))
    f1, f2 = np.array([0.2, 0.0, -0.5]), np.array([-0.1, 0.4, 0.3])
    u1 = tissue.kelvinlet(m, points, load_point, tuple(f1))
    u2 = tissue.kelvinlet(m, points, load_point, tuple(f2))
    both = tissue.kelvinlet(m, points, load_point, tuple(2 * f1 - 3 * f2))
    assert both == pytest.approx(2 * u1 - 3 * u2, rel=1e-12, abs=1e-18)
    assert np.all(tissue.kelvinlet(m, points, load_point, (0.0, 0.0, 0.0)) == 0.0)
    # straight ahead of a push (and at the load point itself) the tissue moves along the push
    push = f1 / np.linalg.norm(f1)
    ahead = np.array(load_point) + np.outer([0.0, 1 * MM, 10 * MM, 40 * MM], push)
    for moved in tissue.kelvinlet(m, ahead, load_point, tuple(f1)):
        assert moved @ push > 0
        assert np.linalg.norm(np.cross(moved, push)) < 1e-12 * np.linalg.norm(moved)


# ---------------------------------------------------- blade, critical contact
def test_blade_force_opposes_motion_and_grows_with_depth_and_speed():
    m = material()
    direction = np.array([0.6, -0.8, 0.0])
    for depth in (1 * MM, 3 * MM):
        for speed in (0.01, 0.05):
            force = np.array(tissue.blade_force(m, depth, tuple(speed * direction)))
            expected = m.blade_force * depth * (1 + m.blade_speed_factor * speed)
            assert force == pytest.approx(-expected * direction, rel=1e-12)

    def size(depth: float, speed: float) -> float:
        return tissue.norm(tissue.blade_force(m, depth, tuple(speed * direction)))

    assert size(3 * MM, 0.02) > size(2 * MM, 0.02) > size(1 * MM, 0.02) > 0
    assert size(2 * MM, 0.04) > size(2 * MM, 0.02) > size(2 * MM, 0.001) > 0
    assert tissue.blade_force(m, 2 * MM, (0.0, 0.0, 0.0)) == (0.0, 0.0, 0.0)  # at rest
    for depth in (0.0, -1 * MM):  # above the surface
        assert tissue.blade_force(m, depth, (0.02, 0.0, 0.0)) == (0.0, 0.0, 0.0)


def test_critical_force_is_a_stiff_spring_along_the_normal():
    m = material()
    normal = (0.0, 0.6, 0.8)
    assert tissue.critical_force(m, 0.0, normal) == (0.0, 0.0, 0.0)
    assert tissue.critical_force(m, -1 * MM, normal) == (0.0, 0.0, 0.0)
    assert tissue.critical_force(m, 1.5 * MM, normal) == pytest.approx(
        tuple(m.critical_stiffness * 1.5 * MM * np.array(normal)), rel=1e-12)


# ============================================================ env level
def _expert_run(env, seed: int) -> tuple[list[np.ndarray], list[dict], list[float]]:
    """One expert episode: the actions, the step infos and the length of shaft in the organ."""
    env.reset(seed=seed)
    actions, infos, inside = [], [], []
    for _ in range(env.unwrapped.task_spec.max_episode_steps):
        action = env.unwrapped.expert_action()
        *_, terminated, truncated, info = env.step(action)
        actions.append(action)
        infos.append(info)
        inside.append(env.unwrapped.task.tissue_length)
        if terminated or truncated:
            break
    return actions, infos, inside


@pytest.mark.parametrize("seed", EXPERT_SEEDS)
def test_expert_punctures_and_the_lesion_is_carried_then_given_back(make_env, seed):
    env = make_env(SURGICAL_PATH)
    unwrapped = env.unwrapped
    task = unwrapped.task
    actions, infos, inside = _expert_run(env, seed)
    assert infos[-1]["is_success"], infos[-1]["failure_reason"]
    preop = task.lesion_preop.copy()

    forces = [info["tool_force"] for info in infos]
    first = next(i for i, force in enumerate(forces) if force > 0)
    for info in infos[:first]:  # clear of the organ: no force, nothing moves
        assert info["tool_force"] == 0.0 and not np.any(info["tool_force_vector"])
        assert np.array_equal(info["target_position"], preop)
    drops = [i for i in range(first + 1, len(forces)) if forces[i] < forces[i - 1] - 0.1]
    assert len(drops) == 1, f"one puncture expected: {np.round(forces, 3)}"
    # before it the dimple's force stays under the puncture force; at it, friction over the
    # length inside plus cutting (the expert's small re-aims may add a little lateral force)
    t = unwrapped.task_spec.tissue
    d = inside[first] / MM  # the first touch dimples the capsule: k1 d + k2 d^2 (d in mm)
    assert forces[first] == pytest.approx(t.stiffness_n_per_mm * d + t.stiffness_n_per_mm2 * d * d)
    assert max(forces[:drops[0]]) < t.puncture_force_n
    after = t.friction_n_per_mm * inside[drops[0]] / MM + t.cutting_force_n
    assert forces[drops[0]] == pytest.approx(after, abs=0.01)

    shift = infos[-1]["target_position"] - preop
    direction = np.array(task.tool.direction)
    assert 0.2 * MM <= shift @ direction and np.linalg.norm(shift) <= 5 * MM, shift

    # once more, stopping one step short, then pulled back out to the start depth
    start_depth = env.reset(seed=seed)[1]["depth"]
    for action in actions[:-1]:
        *_, terminated, _, info = env.step(action)
        assert not terminated
    assert not np.array_equal(info["target_position"], preop)
    reversed_seen = False
    for _ in range(100):
        *_, terminated, _, info = env.step(np.array([0.0, 0.0, -1.0], np.float32))
        assert not terminated, info["failure_reason"]
        if task.tissue_length > 0:  # still inside: the tissue holds the shaft back (reversed)
            reversed_seen |= info["tool_force_vector"] @ np.array(task.tool.direction) > 0
        if info["depth"] <= start_depth + 1e-12:
            break
    assert reversed_seen
    assert info["tool_force"] == 0.0
    assert np.abs(info["target_position"] - preop).max() <= 1e-9


def _steer_to_angles(env, yaw: float, pitch: float) -> None:
    """Turn the trocar tool to (yaw, pitch) with actions only, insertion unchanged."""
    task = env.unwrapped.task
    for _ in range(200):
        d_yaw, d_pitch = yaw - task.tool.yaw, pitch - task.tool.pitch
        if max(abs(d_yaw), abs(d_pitch)) < 1e-9:
            return
        action = np.clip([d_yaw / task.angle_step, d_pitch / task.angle_step, 0.0], -1, 1)
        *_, terminated, _, info = env.step(action.astype(np.float32))
        assert not terminated, info["failure_reason"]
    raise AssertionError("could not steer to the requested angles")


def _aim_at_vessel(env, seed: int) -> None:
    """Reset, then point the tool (actions only) at the nearest point of a vessel."""
    env.reset(seed=seed)
    task = env.unwrapped.task
    vessel = next(name for name in task.critical if name.startswith("vessel"))
    point = np.array(task.world.closest(task.tool.body, vessel, 1.0).point_b)
    _steer_to_angles(env, *trocar_angles((point - task.port) / np.linalg.norm(point - task.port)))


@pytest.mark.parametrize("seed", [0, 2])
def test_a_vessel_touched_below_rupture_holds_then_ruptures(make_env, seed):
    env = make_env(SURGICAL_PATH)
    _aim_at_vessel(env, seed)
    t = env.unwrapped.task_spec.tissue
    k = t.critical_stiffness_n_per_mm / MM
    clearance, touches = math.inf, []
    for _ in range(140):
        push = 1.0 if clearance > 3 * MM else 0.05  # 0.2 mm steps near the vessel
        *_, terminated, _, info = env.step(np.array([0.0, 0.0, push], np.float32))
        clearance = info["clearance"]
        if info["critical_contact"]:
            assert clearance <= 0
            assert info["critical_force"] == pytest.approx(-k * clearance, rel=1e-9)
            touches.append(info)
        else:
            assert info["critical_force"] == 0.0
        if terminated:
            break
    assert terminated and info["failure_reason"] == "critical_structure"
    first = touches[0]
    assert 0 < first["critical_force"] < t.rupture_force_n and first["failure_reason"] is None
    for touch in touches[:-1]:
        assert touch["failure_reason"] is None and touch["critical_force"] <= t.rupture_force_n
    assert touches[-1] is info and info["critical_force"] > t.rupture_force_n


@pytest.mark.parametrize("seed", [0, 1])
def test_blade_pushed_down_reaches_the_layer_below_and_bleeds(make_env, seed):
    env = make_env(INCISION)
    env.reset(seed=seed)
    down = np.array([0.0, 0.0, -1.0], np.float32)
    for _ in range(60):
        *_, terminated, truncated, info = env.step(down)
        if terminated or truncated:
            break
    assert terminated and info["failure_reason"] == "bleeding"
    assert info["critical_contact"] and info["critical_force"] > 0


# ------------------------------------------------ force reward and failure
def test_excessive_force_fails_and_the_force_term_penalises_above_the_safe_force(make_env):
    spec = make_env(SURGICAL_PATH).unwrapped.task_spec
    safe, limit = 0.3, 0.6  # below the 1.5 N puncture force: the capsule's dimple exceeds it
    small = spec.model_copy(update={"tissue": spec.tissue.model_copy(update={"safe_force_n": safe,
                                                                            "max_force_n": limit})})
    env = make_env(SURGICAL_PATH, task_spec=small)
    weights = small.reward
    between = 0
    for seed in EXPERT_SEEDS:
        env.reset(seed=seed)
        for _ in range(small.max_episode_steps):
            _, reward, terminated, truncated, info = env.step(env.unwrapped.expert_action())
            force = info["tool_force"]
            expected = -weights.force * (force - safe) / safe if force > safe else 0.0
            assert info["reward_force"] == pytest.approx(expected, rel=1e-12, abs=0.0)
            terms = [v for k, v in info.items() if k.startswith("reward_")]
            assert reward == pytest.approx(sum(terms))
            if terminated or truncated:
                break
            assert force <= limit
            between += force > safe
        assert terminated and info["failure_reason"] == "excessive_force"
        assert info["tool_force"] > limit
        assert info["reward_failure"] == -weights.failure < 0
    assert between > 0, "no step between the safe and the maximum force: the term was not seen"


# ------------------------------------------------------------ observation
@pytest.mark.parametrize("env_id", ["surgsim/NeedleReach-v0", SURGICAL_PATH, INCISION])
def test_elastic_observation_has_three_force_entries(make_env, env_id):
    elastic, _ = make_env(env_id).reset(seed=0)
    rigid, info = make_env(env_id, tissue="rigid").reset(seed=0)
    assert elastic.shape[0] == rigid.shape[0] + 3
    elastic_only = {"tool_force", "tool_force_vector", "critical_force", "critical_contact",
                    "target_position"}
    assert not elastic_only & info.keys()


@pytest.mark.parametrize("env_id, policy", [
    (SURGICAL_PATH, lambda env: env.unwrapped.expert_action()),
    (INCISION, lambda env: np.array([0.0, 0.0, -1.0], np.float32)),
])
def test_force_entries_are_the_tool_force_in_safe_force_units(make_env, env_id, policy):
    env = make_env(env_id)
    env.reset(seed=1)
    safe = env.unwrapped.task_spec.tissue.safe_force_n
    touched = 0
    for _ in range(60):
        obs, _, terminated, truncated, info = env.step(policy(env))
        np.testing.assert_allclose(obs[-3:], (info["tool_force_vector"] / safe).astype(np.float32),
                                   rtol=1e-6, atol=1e-7)
        touched += info["tool_force"] > 0
        if terminated or truncated:
            break
    assert touched >= 3


# ------------------------------------------------------------ determinism
def test_same_seed_and_actions_give_the_same_forces_and_lesion(make_env):
    first = make_env(SURGICAL_PATH)
    actions = _expert_run(first, seed=2)[0][:-1]  # into the organ, short of the lesion
    rng = np.random.default_rng(0)  # then wander: lateral loads and retraction too
    actions += [rng.uniform(-1, 1, 3).astype(np.float32) for _ in range(10)]
    runs = []
    for env in (first, make_env(SURGICAL_PATH)):
        env.reset(seed=2)
        trace = []
        for action in actions:
            *_, terminated, truncated, info = env.step(action)
            trace.append((info["tool_force"], info["tool_force_vector"].tolist(),
                          info["target_position"].tolist()))
            if terminated or truncated:
                break
        runs.append(trace)
    assert runs[0] == runs[1]
    assert any(force > 0 for force, *_ in runs[0])


# ---------------------------------------------------------------- bad value
def test_unknown_tissue_model_is_refused_by_name():
    with pytest.raises(EnvError, match="jelly"):
        gym.make(SURGICAL_PATH, tissue="jelly")


# ------------------------------------------------------------------- queries
def test_measure_is_a_query_that_moves_nothing(make_env):
    env = make_env(SURGICAL_PATH)
    actions = _expert_run(env, seed=0)[0][:-1]
    runs = []
    for query in (False, True):
        env.reset(seed=0)
        task = env.unwrapped.task
        for action in actions:  # into the organ, advancing: the grip holds friction plus cutting
            env.step(action)
        target = task.target.copy()
        if query:
            task.measure()  # as if the tool had not moved: friction only, a smaller load
            assert np.array_equal(task.target, target)
        *_, info = env.step(np.array([0.0, 0.0, 0.5], np.float32))
        runs.append((info["clearance"], info["target_position"].tolist()))
    assert runs[0] == runs[1]
