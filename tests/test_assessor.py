"""The learned assessor and its features, on synthetic fixtures built here (never on JIGSAWS)."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.scoring import assessor as assessor_module
from surgsim.scoring.assessor import (
    AssessorError, evaluate_assessor, expert_novice_auc, fit_assessor, load_assessor, save_assessor,
)
from surgsim.scoring.calibrate import Measured
from surgsim.scoring.features import (
    gripper_cycles, session_features, spectral_centroid, tremor_fraction, uniform,
)
from surgsim.sessions.importers import read_jigsaws_kinematics
from surgsim.sessions.io import write_session
from surgsim.sessions.session import Session, Track

runner = CliRunner()
FS = 30.0


def sinusoid(freq: float, seconds: float = 20.0, amplitude: float = 0.002) -> tuple[np.ndarray, np.ndarray]:
    t = np.arange(int(seconds * FS)) / FS
    position = np.zeros((len(t), 3))
    position[:, 0] = amplitude * np.sin(2 * np.pi * freq * t)
    return t, position


# ------------------------------------------------------------------ features: known values
def test_tremor_band_power_of_pure_sinusoids():
    _, fast = sinusoid(8.0)
    _, slow = sinusoid(1.0)
    assert tremor_fraction(fast, FS) > 0.95
    assert tremor_fraction(slow, FS) < 0.05
    assert spectral_centroid(fast, FS) == pytest.approx(8.0, abs=0.3)
    assert spectral_centroid(slow, FS) == pytest.approx(1.0, abs=0.3)
    assert tremor_fraction(fast, 6.0) is None  # the band lies above Nyquist (3 Hz)


def test_gripper_cycles_count_closings_with_hysteresis():
    t = np.linspace(0, 10, 601)
    gripper = 0.4 + 0.4 * np.cos(2 * np.pi * 0.5 * t)  # opens and closes 5 times, starts open
    assert gripper_cycles(gripper) == 5
    rng = np.random.default_rng(0)
    jitter = 0.4 + 0.01 * rng.standard_normal(len(t))  # below the smallest range: never opens
    assert gripper_cycles(jitter) == 0
    # noise around the mid-point inside the hysteresis band adds no cycle
    assert gripper_cycles(gripper + 0.02 * rng.standard_normal(len(t))) == 5


def test_rotation_and_angular_speed_of_a_known_rotation():
    t = np.arange(91) / FS  # 3 s
    angles = 0.5 * t  # 0.5 rad/s about z: 1.5 rad in all
    orientation = Rotation.from_euler("z", angles[:, None]).as_quat()
    position = np.column_stack([0.01 * t, np.zeros_like(t), np.zeros_like(t)])
    features = session_features(Session(t, {"tool": Track(position, orientation)}))
    assert features["tool.rotation"] == pytest.approx(1.5, rel=1e-9)
    assert features["tool.angular_speed_median"] == pytest.approx(0.5, rel=1e-3)
    assert features["tool.rotation_per_length"] == pytest.approx(1.5 / 0.03, rel=1e-6)
    # a rotation sweeping -0.75 .. 0.75 rad uniformly: RMS angle from the mean 0.75 / sqrt(3)
    assert features["tool.orientation_spread"] == pytest.approx(0.75 / math.sqrt(3), rel=0.02)
    assert features["instruments.rotation"] == pytest.approx(1.5, rel=1e-9)  # one instrument: its own value
    assert features["tool.gripper_cycles_per_minute"] is None  # no gripper: not available, never 0
    assert features["bimanual_speed_correlation"] is None  # one hand


def test_bimanual_and_master_features():
    t = np.arange(300) / FS
    left = np.column_stack([0.02 * t, np.zeros_like(t), np.zeros_like(t)])
    right = left * 0.5 + np.array([0.0, 0.03, 0.0])  # half the path, starts 30 mm away
    tracks = {"left": Track(left), "right": Track(right),
              "master_left": Track(left * 2), "master_right": Track(right * 2)}
    features = session_features(Session(t, tracks))
    assert features["hand_balance"] == pytest.approx(0.5)
    assert features["motion_scale"] == pytest.approx(0.5)
    assert features["tool_distance_mean"] == pytest.approx(np.mean(np.hypot(0.01 * t, 0.03)))
    assert features["both_moving_fraction"] == pytest.approx(1.0)  # 20 and 10 mm/s: both above 5 mm/s
    assert features["completion_time"] == pytest.approx(t[-1])
    assert features["master.path_length"] == pytest.approx(2 * features["instruments.path_length"])


def test_uniform_resamples_an_irregular_session_onto_its_grid():
    t = np.array([0.0, 0.1, 0.3, 0.35, 1.0])
    track = Track(np.column_stack([t, 2 * t, np.zeros_like(t)]), Rotation.from_euler("z", t[:, None]).as_quat(), t.copy())
    out = uniform(Session(t, {"tool": track}))
    np.testing.assert_allclose(out.time, np.linspace(0, 1, 5))
    np.testing.assert_allclose(out.tracks["tool"].position[:, 1], 2 * out.time)
    np.testing.assert_allclose(Rotation.from_quat(out.tracks["tool"].orientation).as_euler("xyz")[:, 2], out.time)


def test_jigsaws_master_arms_are_imported_only_when_asked(tmp_path):
    rng = np.random.default_rng(1)
    frames = 20
    rows = np.zeros((frames, 76))
    for arm in range(4):
        start = 19 * arm
        rows[:, start:start + 3] = np.round(rng.normal(size=(frames, 3)) * 0.01, 6)
        rows[:, start + 3:start + 12] = np.eye(3).ravel()
        rows[:, start + 18] = arm
    path = tmp_path / "Suturing_B001.txt"
    path.write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in rows))
    assert sorted(read_jigsaws_kinematics(path).tracks) == ["left", "right"]
    session = read_jigsaws_kinematics(path, master=True)
    assert sorted(session.tracks) == ["left", "master_left", "master_right", "right"]
    np.testing.assert_allclose(session.tracks["master_right"].position, rows[:, 19:22])
    np.testing.assert_allclose(session.tracks["master_left"].gripper, 0.0)


# ------------------------------------------------------------------ the assessor
def planted(n_trainees: int = 6, per: int = 5, seed: int = 0) -> list[Measured]:
    """Sessions whose grs is 20 + 3 f1 - 2 f2 (+ small noise); f3..f5 are noise."""
    rng = np.random.default_rng(seed)
    sessions = []
    for k in range(n_trainees):
        for j in range(per):
            f = rng.normal(size=5)
            grs = 20 + 3 * f[0] - 2 * f[1] + 0.1 * rng.normal()
            values = {f"f{i + 1}": float(v) for i, v in enumerate(f)}
            meta = {"trainee": f"t{k}", "trial": j + 1,
                    "labels": {"grs": grs, "time_and_motion": 3 + f[0], "skill": "NIE"[k % 3]}}
            sessions.append(Measured(f"s{k}-{j}", values, meta))
    return sessions


def test_fit_recovers_a_planted_linear_relation_and_explains_it():
    sessions = planted()
    model = fit_assessor(sessions, "grs", task="demo")
    assert model.features == ("f1", "f2", "f3", "f4", "f5")
    assert set(model.targets) == {"grs", "time_and_motion", "skill"}
    # weights are per SD of the feature: 3 and -2 times the features' SDs, others near 0
    sd = np.array(model.scale)
    weights = np.array(model.targets["grs"].weights) / sd
    np.testing.assert_allclose(weights[:2], [3, -2], atol=0.15)
    assert np.abs(weights[2:]).max() < 0.15
    probe = {"f1": 1.0, "f2": -1.0, "f3": 0.0, "f4": 0.0, "f5": 0.0}
    grade = model.grade(probe)
    assert grade.predictions["grs"] == pytest.approx(25.0, abs=0.5)
    assert grade.predictions["time_and_motion"] == pytest.approx(4.0, abs=0.2)
    assert grade.level in ("novice", "intermediate", "expert")
    # the explanation sums to the prediction and leads with the features that carry it
    assert sum(c.points for c in grade.contributions) + model.targets["grs"].intercept == pytest.approx(
        grade.predictions["grs"])
    assert {c.feature for c in grade.contributions[:2]} == {"f1", "f2"}
    assert model.explain(probe, top=1)[0].startswith("f1 = 1 (")
    result = evaluate_assessor(sessions, "grs", "louo")
    assert result.folds == 6 and result.n == 30
    assert result.spearman > 0.95
    assert result.targets["time_and_motion"] > 0.95
    assert len(result.alphas["grs"]) == 6


def trainee_fingerprints(n_trainees: int = 8, per: int = 4, seed: int = 0) -> list[Measured]:
    """Labels that only a model which has seen the trainee can know: a one-hot trainee code and a
    random grade per trainee. Without leakage nothing predicts a held-out trainee."""
    rng = np.random.default_rng(seed)
    grades = rng.permutation(np.arange(n_trainees, dtype=float) * 3 + 6)
    sessions = []
    for k in range(n_trainees):
        for j in range(per):
            values = {f"code{i}": float(i == k) for i in range(n_trainees)}
            values["noise"] = float(rng.normal())
            meta = {"trainee": f"t{k}", "labels": {"grs": grades[k] + 0.1 * rng.normal()}}
            sessions.append(Measured(f"s{k}-{j}", values, meta))
    return sessions


def test_nested_cv_never_sees_the_held_out_trainee(monkeypatch):
    sessions = trainee_fingerprints()
    leaky = fit_assessor(sessions, "grs")  # fitted on every trainee: it knows each one's grade
    from scipy import stats
    seen = stats.spearmanr([leaky.grade(s.values).predictions["grs"] for s in sessions],
                           [s.label("grs") for s in sessions]).statistic
    assert seen > 0.9
    fitted_on: list[set[str]] = []
    real_fit = assessor_module.fit_assessor

    def spy(train, label, **kwargs):
        fitted_on.append({s.meta["trainee"] for s in train})
        return real_fit(train, label, **kwargs)

    monkeypatch.setattr(assessor_module, "fit_assessor", spy)
    result = evaluate_assessor(sessions, "grs", "louo")
    # each fold's fit (its inner penalty selection included) saw every trainee but the held-out one
    assert sorted(len(s) for s in fitted_on) == [7] * 8
    assert {frozenset({f"t{k}" for k in range(8)} - s) for s in fitted_on} == {frozenset({f"t{k}"}) for k in range(8)}
    assert result.spearman < 0.3  # nothing leaked: the codes say nothing about a trainee never seen


def test_inner_selection_standardises_within_its_folds():
    # one group far off in x: standardising with its rows in would give other errors
    x = np.array([0.0, 1.0, 2.0, 3.0, 1.0, 2.0, 40.0, 42.0])
    y = np.array([1.0, 2.0, 2.0, 4.0, 1.5, 3.0, 5.0, 9.0])
    groups = np.array(["a", "a", "b", "b", "c", "c", "d", "d"])
    squared = 0.0
    for group in "abcd":  # the expected errors, by hand: 1-D ridge on each fold's own standardisation
        train = groups != group
        z = (x[train] - x[train].mean()) / x[train].std()
        weight = np.dot(z, y[train] - y[train].mean()) / (np.dot(z, z) + 2.0)
        predicted = y[train].mean() + weight * (x[~train] - x[train].mean()) / x[train].std()
        squared += ((predicted - y[~train]) ** 2).sum()
    alpha, rmse = assessor_module.select_alpha(x[:, None], y, groups, alphas=(2.0,))
    assert alpha == 2.0
    assert rmse == pytest.approx(math.sqrt(squared / len(y)), rel=1e-12)


def test_expert_novice_auc():
    assert expert_novice_auc([3, 2, 1, 0], ["E", "E", "N", "N"]) == 1.0
    assert expert_novice_auc([0, 1, 1, 3], ["E", "N", "E", "N"]) == pytest.approx(0.125)
    assert expert_novice_auc([1, 2], ["E", "I"]) is None


def test_save_load_round_trip(tmp_path):
    sessions = planted()
    model = fit_assessor(sessions, "grs", task="demo")
    path = save_assessor(model, tmp_path / "model.json")
    loaded = load_assessor(path)
    assert loaded == model
    probe = sessions[0].values
    assert loaded.grade(probe).predictions == model.grade(probe).predictions


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("label"), "label: Field required"),
        (lambda d: d.update(scale=[1.0] * 4), "5 features but 5 centers and 4 scales"),
        (lambda d: d["targets"]["grs"].update(alpha=-1), "targets.grs.alpha: Input should be greater than 0"),
        (lambda d: d.update(format="rubric"), "format: Input should be 'surgsim-assessor'"),
        (lambda d: d["targets"]["grs"]["weights"].pop(), "target 'grs' has 4 weights for 5 features"),
    ],
)
def test_bad_model_files_name_file_and_field(tmp_path, edit, message):
    data = json.loads(save_assessor(fit_assessor(planted(), "grs"), tmp_path / "m.json").read_text())
    edit(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(AssessorError, match="bad.json") as info:
        load_assessor(bad)
    assert message in str(info.value)
    bad.write_text('{"format": NaN}')
    with pytest.raises(AssessorError, match="bad.json: not a JSON assessor model"):
        load_assessor(bad)


def test_grading_a_session_of_another_kind_is_refused():
    model = fit_assessor(planted(), "grs", task="demo")
    with pytest.raises(AssessorError, match=r"s9: has 1 of the 5 features"):
        model.grade({"f1": 1.0, "other": 2.0}, "s9")
    with pytest.raises(AssessorError, match="needs >= 4 sessions with a numeric labels.osats"):
        fit_assessor(planted(), "osats")


# ------------------------------------------------------------------ CLI
def write_cohort(folder, n_trainees: int = 4, per: int = 3) -> None:
    """Two-hand sessions: better trainees move faster and with less tremor (grs known)."""
    rng = np.random.default_rng(2)
    t = np.arange(240) / FS
    for k in range(n_trainees):
        for j in range(per):
            skill = k + 0.3 * j
            tracks = {}
            for hand, phase in (("left", 0.0), ("right", 1.0)):
                slow = 0.01 * (1 + skill) * np.sin(0.5 * t + phase)
                tremor = 0.001 * (4 - skill) * np.sin(2 * np.pi * 9 * t)
                position = np.column_stack([slow + tremor, np.cos(0.4 * t + phase) * 0.01, 0.001 * rng.normal(size=len(t))])
                orientation = Rotation.from_euler("z", 0.2 * (1 + skill) * np.sin(t)[:, None]).as_quat()
                gripper = 0.5 + 0.4 * np.sign(np.sin((1 + k) * t))
                tracks[hand] = Track(position, orientation, gripper)
            meta = {"task": "Demo", "trainee": f"t{k}", "trial": j + 1,
                    "labels": {"grs": 10 + 3 * k + j, "skill": "NNIE"[k]}}
            write_session(Session(t, tracks, {}, meta), folder / f"t{k}-{j}.parquet")


def test_cli_calibrate_and_evaluate_an_assessor(tmp_path):
    write_cohort(tmp_path / "s")
    model = tmp_path / "model.json"
    result = runner.invoke(app, ["score", "calibrate", str(tmp_path / "s"), "--label", "grs", "--model", "assessor",
                                 "--out", str(model), "--no-progress", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "task Demo" in result.output
    loaded = load_assessor(model)
    assert loaded.task == "Demo" and loaded.label == "grs" and "skill" in loaded.targets
    out = tmp_path / "eval.json"
    result = runner.invoke(app, ["score", "evaluate", str(tmp_path / "s"), "--label", "grs", "--cv", "louo",
                                 "--model", "assessor", "--out", str(out), "--no-progress", "-j", "1"])
    assert result.exit_code == 0, result.output
    data = json.loads(out.read_text())
    assert data["folds"] == 4 and data["n"] == 12 and data["cv"] == "louo"
    assert -1 <= data["spearman"] <= 1
    assert f"{data['spearman']:.3f}" in result.output
    assert {p["group"] for p in data["predictions"]} == {"t0", "t1", "t2", "t3"}


@pytest.mark.parametrize(
    "args, message",
    [
        (["--model", "forest", "--label", "grs"], "--model must be rubric or assessor, got 'forest'"),
        (["--model", "assessor"], "--model assessor needs --label"),
        (["--model", "assessor", "--label", "osats"], "needs >= 4 sessions with a numeric labels.osats, got 0"),
    ],
)
def test_cli_assessor_usage_errors_exit_2(tmp_path, args, message):
    write_cohort(tmp_path / "s", n_trainees=2, per=2)
    result = runner.invoke(app, ["score", "calibrate", str(tmp_path / "s"), "--out", str(tmp_path / "m.json"),
                                 "--no-progress", "-j", "1", *args])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m.json").exists()
