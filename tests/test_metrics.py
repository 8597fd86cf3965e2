"""Motion metrics on cases computable by hand; absent inputs are not available, never zero."""

from __future__ import annotations

import math

import numpy as np
import pytest

from surgsim.scoring.metrics import METRICS, compute_metrics, distance_to_polyline
from surgsim.scoring.synthetic import minimum_jerk
from surgsim.sessions.session import Session, Track

RATE = 100.0


def _session(position: np.ndarray, rate: float = RATE, **kwargs) -> Session:
    time = np.arange(len(position)) / rate
    tracks = kwargs.pop("tracks", None) or {"tool": Track(position, kwargs.pop("orientation", None), kwargs.pop("gripper", None))}
    return Session(time, tracks, kwargs.pop("channels", {}), kwargs.pop("meta", {}))


def _line(speed: float = 0.05, seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * RATE) + 1) / RATE
    return np.column_stack([speed * t, np.zeros_like(t), np.zeros_like(t)])


def _reach(distance: float = 0.1, seconds: float = 1.0) -> np.ndarray:
    return minimum_jerk(np.zeros(3), np.array([distance, 0.0, 0.0]), int(seconds * RATE) + 1)


def test_constant_speed_straight_line() -> None:
    meta = {"reference_path": [[0, 0, 0], [0.1, 0, 0]], "target": [0.1, 0, 0]}
    m = compute_metrics(_session(_line(0.05, 2.0), meta=meta)).combined
    assert m["completion_time"] == pytest.approx(2.0)
    assert m["path_length"] == pytest.approx(0.1)
    assert m["economy_of_motion"] == pytest.approx(1.0)
    assert m["mean_speed"] == pytest.approx(0.05)
    assert m["peak_speed"] == pytest.approx(0.05, rel=1e-6)
    assert m["idle_fraction"] == 0.0
    assert m["movements"] == 0.0  # constant speed has no peak
    assert m["relative_acceleration"] == pytest.approx(0.0, abs=1e-9)  # the velocity never changes
    assert m["deviation_max"] == pytest.approx(0.0, abs=1e-8)  # rounding: a few nm
    assert m["final_error"] == pytest.approx(0.0, abs=1e-12)
    assert m["workspace_volume"] == 0.0  # a line has no volume


def test_detour_halves_economy_and_parallel_offset_is_the_deviation() -> None:
    # there and back along the reference: twice its length
    there = _line(0.05, 2.0)
    back = there[::-1][1:]
    m = compute_metrics(_session(np.vstack([there, back]), meta={"reference_path": [[0, 0, 0], [0.1, 0, 0]]})).combined
    assert m["economy_of_motion"] == pytest.approx(0.5)
    offset = _line(0.05, 2.0) + [0.0, 0.002, 0.0]
    m = compute_metrics(_session(offset, meta={"reference_path": [[0, 0, 0], [0.1, 0, 0]]})).combined
    assert m["deviation_mean"] == pytest.approx(0.002)
    assert m["deviation_rms"] == pytest.approx(0.002)
    assert m["deviation_max"] == pytest.approx(0.002)


def test_ldlj_of_minimum_jerk_reach_and_with_tremor() -> None:
    # minimum jerk: peak speed 1.875 D/T, integral of jerk^2 = 720 D^2 / T^5 -> DLJ = 720 / 1.875^2;
    # sampled at 1 kHz so that finite differences and the 6 Hz low-pass barely change it
    expected = -math.log(720 / 1.875**2)
    rate = 1000.0
    reach = minimum_jerk(np.zeros(3), np.array([0.1, 0.0, 0.0]), 1001)
    smooth = compute_metrics(_session(reach, rate=rate)).combined["ldlj"]
    assert smooth == pytest.approx(expected, abs=0.05)
    # 0.5 s of rest either side doubles T: DLJ x 8 (jerk integral unchanged)
    rest = np.zeros((500, 3))
    padded = np.vstack([rest, reach, rest + reach[-1]])
    assert compute_metrics(_session(padded, rate=rate)).combined["ldlj"] == pytest.approx(
        expected - 3 * math.log(2), abs=0.15)
    t = np.arange(len(reach)) / rate
    tremor = reach + 0.0005 * np.sin(2 * np.pi * 4.0 * t)[:, None] * [0, 1, 1]
    assert compute_metrics(_session(tremor, rate=rate)).combined["ldlj"] < smooth - 1.0


@pytest.mark.parametrize("scale", [1.0, 1e-6])
def test_relative_acceleration_of_a_short_zigzag(scale) -> None:
    # 8 samples at 20 Hz (a NeedleReach episode): steps of 3 mm forward and 4 mm alternately left
    # and right, so the velocity (100 mm/s) changes by 160 mm/s at every sample: 160 / 100 x 20 Hz
    def zigzag(samples: int) -> np.ndarray:
        steps = np.array([[0.003, 0.004 * (-1) ** i, 0.0] for i in range(samples - 1)])
        return scale * np.vstack([np.zeros(3), np.cumsum(steps, axis=0)])

    assert compute_metrics(_session(zigzag(8), rate=20.0)).combined["relative_acceleration"] == pytest.approx(32.0)
    # the same velocity changes at the same speed for five times as long: no worse
    assert compute_metrics(_session(zigzag(36), rate=20.0)).combined["relative_acceleration"] == pytest.approx(32.0)


def test_sparc_orders_smooth_hesitant_and_tremulous() -> None:
    smooth = _reach(0.1, 1.0)
    half = minimum_jerk(np.zeros(3), np.array([0.05, 0, 0]), 51)
    rest = np.repeat(half[-1:], 30, axis=0)
    hesitant = np.vstack([half, rest, minimum_jerk(half[-1], np.array([0.1, 0, 0]), 51)[1:]])
    t = np.arange(len(smooth)) / RATE
    tremulous = smooth + 0.0005 * np.sin(2 * np.pi * 4.0 * t)[:, None] * [0, 1, 0]
    sparc = [compute_metrics(_session(p)).combined["sparc"] for p in (smooth, hesitant, tremulous)]
    assert sparc[0] > sparc[1]
    assert sparc[0] > sparc[2]
    assert -2.0 < sparc[0] < -1.2  # a single minimum-jerk reach: about -1.6 in the literature


def test_movements_and_idle_fraction() -> None:
    # three 1 s reaches, each followed by 1 s of rest: 3 movements, idle about half the time
    blocks, start = [], np.zeros(3)
    for k in range(3):
        end = start + [0.05, 0.0, 0.0]
        blocks += [minimum_jerk(start, end, 101)[1:], np.repeat(end[None], 100, axis=0)]
        start = end
    m = compute_metrics(_session(np.vstack([np.zeros((1, 3)), *blocks]))).combined
    assert m["movements"] == 3.0
    # a minimum-jerk reach of 50 mm in 1 s is below 5 mm/s for its first and last 8 % of the time
    assert m["idle_fraction"] == pytest.approx(0.5 + 0.5 * 0.16, abs=0.03)


def test_depth_gripper_workspace_and_channels() -> None:
    n = 9
    cube = np.array([[x, y, z] for x in (0, 0.01) for y in (0, 0.01) for z in (0, 0.01)] + [[0, 0, 0]], dtype=float)
    orientation = np.tile([0.0, 0.0, 0.0, 1.0], (n, 1))  # tool axis = z
    gripper = np.array([0.0, 0.5, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2, 0.2])
    channels = {
        "critical_contact": np.array([0, 1, 1, 0, 1, 0, 0, 0, 0], dtype=bool),
        "contact_force": np.array([0, 1, 3, 3, 0, 0, 5, 0, 0], dtype=float),
        "tissue_damage": np.linspace(0, 0.4, n),
        "success": np.array([0, 0, 0, 0, 0, 0, 0, 0, 1], dtype=bool),
    }
    m = compute_metrics(_session(cube, rate=10.0, orientation=orientation, gripper=gripper, channels=channels,
                                 meta={"task": "Incision"})).combined
    steps = np.diff(cube, axis=0)
    assert m["depth_perception"] == pytest.approx(np.abs(steps[:, 2]).sum())
    assert m["gripper_travel"] == pytest.approx(0.5 + 0.3)
    assert m["workspace_volume"] == pytest.approx(1e-6)
    assert m["critical_contacts"] == 2.0
    assert m["critical_contact_time"] == pytest.approx(0.3)  # 3 samples x 0.1 s
    assert m["contact_force_peak"] == 5.0
    assert m["contact_force_time"] == pytest.approx(0.3)  # 3 samples above 2 N
    assert m["tissue_damage"] == pytest.approx(0.4)
    assert m["success"] == 1.0
    # tissue damage has a unit in SurgicalPath (m^2) and Incision (m) only: elsewhere it is not available
    for meta in ({"task": "NeedleReach"}, {}):
        other = compute_metrics(_session(cube, rate=10.0, channels=channels, meta=meta)).combined
        assert other["tissue_damage"] is None and other["contact_force_peak"] == 5.0


def test_absent_inputs_are_not_available_never_zero() -> None:
    m = compute_metrics(_session(_line()))
    for name in ("depth_perception", "gripper_travel", "bimanual_dexterity", "critical_contacts",
                 "critical_contact_time", "contact_force_peak", "contact_force_time", "tissue_damage",
                 "deviation_mean", "deviation_rms", "deviation_max", "economy_of_motion", "final_error", "success"):
        assert m.combined[name] is None, name
    assert set(m.combined) == set(METRICS)
    assert m.instruments["tool"]["depth_perception"] is None


def test_bimanual_dexterity_and_combined_sums() -> None:
    reach = _reach(0.1, 1.0)
    same = {"left": Track(reach), "right": Track(reach * [-1, 1, 1])}
    m = compute_metrics(_session(reach, tracks=same)).combined
    assert m["bimanual_dexterity"] == pytest.approx(1.0)
    assert m["path_length"] == pytest.approx(0.2)
    still = {"left": Track(reach), "right": Track(np.vstack([reach[:1]] * len(reach)) + [0, 0.05, 0])}
    assert compute_metrics(_session(reach, tracks=still)).combined["bimanual_dexterity"] is None  # right never moves


@pytest.mark.parametrize("vertices, above", [(25, 1e-9), (400, 5e-5)])  # exact; dense: k-d tree, <= 0.05 mm high
def test_distance_to_polyline_matches_brute_force(vertices, above) -> None:
    rng = np.random.default_rng(3)
    points = rng.uniform(-0.05, 0.05, (3000, 3))
    polyline = rng.uniform(-0.05, 0.05, (vertices, 3))
    exact = np.full(len(points), np.inf)
    for a, b in zip(polyline[:-1], polyline[1:]):
        u = np.clip((points - a) @ (b - a) / ((b - a) @ (b - a)), 0, 1)
        exact = np.minimum(exact, np.linalg.norm(points - a - u[:, None] * (b - a), axis=1))
    found = distance_to_polyline(points, polyline)
    assert (found >= exact - 1e-9).all()
    assert (found <= exact + above).all()


def test_bad_reference_path_is_named() -> None:
    with pytest.raises(ValueError, match="reference_path"):
        compute_metrics(_session(_line(), meta={"reference_path": [[0, 0], [1, 1]]}))


def test_irregular_sampling_is_resampled_for_signal_metrics() -> None:
    # the same 0.05 m/s line, sampled at jittered times: speeds must not see the jitter
    rng = np.random.default_rng(0)
    time = np.sort(np.concatenate([[0.0, 2.0], rng.uniform(0.0, 2.0, 199)]))
    position = np.column_stack([0.05 * time, np.zeros_like(time), np.zeros_like(time)])
    m = compute_metrics(Session(time, {"tool": Track(position)})).combined
    assert m["mean_speed"] == pytest.approx(0.05)
    assert m["peak_speed"] == pytest.approx(0.05, rel=1e-6)
    assert m["idle_fraction"] == 0.0
    assert m["relative_acceleration"] == pytest.approx(0.0, abs=1e-6)
    assert m["path_length"] == pytest.approx(0.1)


def test_apart_from_shows_enough_decimals_to_tell_a_value_from_its_threshold() -> None:
    from surgsim.scoring.metrics import apart_from

    assert apart_from(3.4, 2.0) == "3.4"
    assert apart_from(2.012, 2.0) == "2.01"  # not "2.0 N, above the 2 N limit"
    assert apart_from(74.23, 74.2) == "74.23" and apart_from(74.17, 74.2) == "74.17"
    assert apart_from(75.0, 75.0) == "75.0"


def test_economy_credits_only_the_reference_covered() -> None:
    from surgsim.polyline import progress_along_polyline

    bend = np.array([[0, 0, 0], [0.1, 0, 0], [0.1, 0.1, 0]])
    np.testing.assert_allclose(progress_along_polyline(np.array([[0.05, 0.01, 0], [0.12, 0.05, 0], [0.2, 0.3, 0]]),
                                                       bend), [0.05, 0.15, 0.2])
    meta = {"reference_path": [[0, 0, 0], [0.1, 0, 0]]}
    halfway = _line(0.05, 1.0)  # 5 cm of a 10 cm reference, straight, then the attempt ends
    assert compute_metrics(_session(halfway, meta=meta)).combined["economy_of_motion"] == pytest.approx(1.0)  # not 2
    t = np.arange(41) / RATE
    in_place = np.column_stack([np.zeros_like(t), 0.01 * np.sin(2 * np.pi * t), np.zeros_like(t)])
    assert compute_metrics(_session(in_place, meta=meta)).combined["economy_of_motion"] == pytest.approx(0.0)


def test_progress_is_not_gained_by_hopping_across_a_bend_or_a_closed_loop() -> None:
    from surgsim.polyline import progress_along_polyline, total_length

    hairpin = np.array([[0, 0, 0], [0.1, 0, 0], [0.1, 0.005, 0], [0, 0.005, 0]])  # out 10 cm, 5 mm across, back
    hop = np.array([[0.0, 0, 0], [0.0, 0.004, 0]])  # 4 mm sideways at the start: the far end of the hairpin
    assert progress_along_polyline(hop, hairpin).max() <= 0.004 + 0.001 + 1e-12  # not 20 cm
    circle = np.column_stack([np.cos(np.linspace(0, 2 * np.pi, 65)), np.sin(np.linspace(0, 2 * np.pi, 65)),
                              np.zeros(65)]) * 0.05
    traced = progress_along_polyline(circle, circle)
    assert traced[0] == pytest.approx(0.0, abs=1e-9) and traced[-1] == pytest.approx(total_length(circle))
    dense = np.column_stack([np.linspace(0, 0.3, 1000), np.zeros(1000), np.zeros(1000)])  # k-d tree path
    walk = np.column_stack([np.linspace(0, 0.2, 50), np.full(50, 0.001), np.zeros(50)])
    np.testing.assert_allclose(progress_along_polyline(walk, dense), walk[:, 0], atol=1e-4)
