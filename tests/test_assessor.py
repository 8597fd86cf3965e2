"""The learned assessor and its features, on synthetic fixtures built here (never on JIGSAWS)."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.scoring import assessor as assessor_module
from surgsim.scoring.assessor import (
    AssessorError, evaluate_assessor, expert_novice_auc, fit_assessor, load_assessor, monotone_line, save_assessor,
)
from surgsim.scoring.calibrate import Measured
from surgsim.scoring.rubric import rubric_dir
from surgsim.scoring.features import (
    SKILL_DOMAINS, gripper_cycles, session_features, spectral_centroid, tremor_fraction, uniform,
)
from surgsim.sessions.importers import read_jigsaws_kinematics
from surgsim.sessions.io import read_session, write_session
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


def test_skill_domains_name_features_a_two_hand_session_has():
    t = np.arange(600) / FS
    tracks = {}
    for hand, phase in (("left", 0.0), ("right", 1.0)):
        position = 0.02 * np.column_stack([np.sin(t + phase), np.cos(0.7 * t + phase), np.sin(0.3 * t)])
        orientation = Rotation.from_euler("z", np.sin(t + phase)[:, None]).as_quat()
        tracks[hand] = Track(position, orientation, 0.5 + 0.4 * np.sin(0.5 * t + phase))
    features = session_features(Session(t, tracks))
    for signed in SKILL_DOMAINS.values():
        for name, sign in signed.items():
            assert features[name] is not None and math.isfinite(features[name]), name
            assert sign in (-1, 1)


# ------------------------------------------------------------------ the assessor
#: two domains: the first with two features, the second with one
DOMAINS = {"a": {"f1": +1, "f2": -1}, "b": {"f3": +1}}
#: the same with names a model file accepts: features surgsim measures (none log-transformed), skill domains
REAL_NAMES = ("instruments.mean_speed", "instruments.idle_fraction", "instruments.ldlj", "hand_balance")
FILE_DOMAINS = {"speed": {REAL_NAMES[0]: +1, REAL_NAMES[1]: -1}, "smoothness": {REAL_NAMES[2]: +1}}


def planted(n_trainees: int = 6, per: int = 5, seed: int = 0, names=("f1", "f2", "f3", "f4")) -> list[Measured]:
    """Sessions whose grs is 20 + 3 f1 - 2 f2 + 2 f3 (+ small noise); f4 is noise (f1..f4 named ``names``)."""
    rng = np.random.default_rng(seed)
    sessions = []
    for k in range(n_trainees):
        for j in range(per):
            f = rng.normal(size=4)
            grs = 20 + 3 * f[0] - 2 * f[1] + 2 * f[2] + 0.1 * rng.normal()
            values = {name: float(v) for name, v in zip(names, f)}
            meta = {"trainee": f"t{k}", "trial": j + 1,
                    "labels": {"grs": grs, "time_and_motion": 3 + f[0], "mistakes": 5 - f[0],
                               "skill": "NIE"[k % 3]}}
            sessions.append(Measured(f"s{k}-{j}", values, meta))
    return sessions


def index_by_hand(train: list[Measured], values: dict[str, float]) -> float:
    """The index of DOMAINS: mean over domains of the mean signed z (training mean and SD)."""
    z = {}
    for name in ("f1", "f2", "f3"):
        x = np.array([s.values[name] for s in train])
        z[name] = (values[name] - x.mean()) / x.std()
    return ((z["f1"] - z["f2"]) / 2 + z["f3"]) / 2


def test_fit_weighs_domains_equally_and_explains_the_index():
    sessions = planted()
    model = fit_assessor(sessions, "grs", task="demo", domains=DOMAINS)
    assert model.features == ("f1", "f2", "f3")  # f4 is in no domain: unused
    assert model.signs == (1, -1, 1) and model.weights == (0.25, 0.25, 0.5)
    assert set(model.targets) == {"grs", "time_and_motion", "mistakes", "skill"}
    probe = {"f1": 0.5, "f2": -0.5, "f3": 1.0, "f4": 9.0}
    grade = model.grade(probe)
    assert grade.index == pytest.approx(index_by_hand(sessions, probe), rel=1e-12)
    # each target is the least-squares line of it on the training index
    index = np.array([index_by_hand(sessions, s.values) for s in sessions])
    slope, intercept = np.polyfit(index, [s.label("grs") for s in sessions], 1)
    assert model.targets["grs"].slope == pytest.approx(slope, rel=1e-9)
    assert grade.predictions["grs"] == pytest.approx(intercept + slope * grade.index, rel=1e-9)
    # a target that falls as the index rises gets no slope: its training mean
    assert model.targets["mistakes"].slope == 0.0
    assert grade.predictions["mistakes"] == pytest.approx(np.mean([s.label("mistakes") for s in sessions]))
    assert grade.level in ("novice", "intermediate", "expert")
    # the contributions add up to the index (per domain too) and, x the slope, to grs points
    assert sum(c.index for c in grade.contributions) == pytest.approx(grade.index)
    assert sum(grade.domains.values()) == pytest.approx(grade.index)
    assert sum(c.points for c in grade.contributions) == pytest.approx(slope * grade.index)
    assert grade.contributions[0].feature == "f3"  # weight 0.5: the largest share
    assert model.explain(probe, top=1)[0].startswith("f3 = 1 (")
    assert "grs" in model.explain(probe, top=1)[0]


def test_predictions_stay_within_the_training_range():
    sessions = planted()
    model = fit_assessor(sessions, "grs", domains=DOMAINS)
    for name in ("grs", "time_and_motion", "skill"):
        labels = [s.label(name) for s in sessions]
        assert (model.targets[name].low, model.targets[name].high) == (min(labels), max(labels))
    best = model.grade({"f1": 50.0, "f2": -50.0, "f3": 50.0})  # far past every training session
    worst = model.grade({"f1": -50.0, "f2": 50.0, "f3": -50.0})
    for name in ("grs", "time_and_motion", "skill"):  # rising lines ("mistakes" is flat at its mean)
        target = model.targets[name]
        assert worst.predictions[name] == target.low and best.predictions[name] == target.high, name
    assert model.targets["grs"].intercept + model.targets["grs"].slope * worst.index < model.targets["grs"].low
    assert (worst.level, best.level) == ("novice", "expert")


def test_a_model_grades_sessions_of_its_own_task_only():
    sessions = planted()
    probe = sessions[0].values
    model = fit_assessor(sessions, "grs", task="Knot_Tying", domains=DOMAINS)
    with pytest.raises(AssessorError, match="s9: task 'Suturing', but the assessor grades 'Knot_Tying' sessions"):
        model.grade(probe, "s9", task="Suturing")
    with pytest.raises(AssessorError, match="task 'Suturing'"):
        model.explain(probe, task="Suturing")
    assert model.grade(probe, task="Knot_Tying") == model.grade(probe)  # no task: not checked
    for any_task in ("", "generic"):  # a model trained without a task grades any
        assert fit_assessor(sessions, "grs", task=any_task, domains=DOMAINS).grade(probe, task="Suturing")


def test_missing_values_count_as_average_and_rare_features_drop_with_their_domain():
    sessions = planted()
    for s in sessions[:10]:  # f3 missing in a third of the sessions: left out, and domain b with it
        s.values["f3"] = None
    model = fit_assessor(sessions, "grs", domains=DOMAINS)
    assert model.features == ("f1", "f2") and model.weights == (0.5, 0.5)
    grade = model.grade({"f1": None, "f2": model.center[1] + model.scale[1]})
    assert grade.index == pytest.approx(-0.5)  # f1 counts as average; f2 one SD up, sign -1
    assert grade.contributions[1].value is None
    assert "not available (counted as average)" in grade.contributions[1].explain("grs")


def test_evaluation_ranks_the_held_out_index_of_fits_on_the_others():
    sessions = planted()
    result = evaluate_assessor(sessions, "grs", "louo", domains=DOMAINS)
    assert result.folds == 6 and result.n == 30
    expected = {}
    for k in range(6):
        train = [s for s in sessions if s.meta["trainee"] != f"t{k}"]
        expected.update({s.source: index_by_hand(train, s.values) for s in sessions if s.meta["trainee"] == f"t{k}"})
    got = {p["source"]: p["score"] for p in result.predictions}
    assert got == pytest.approx(expected, rel=1e-9)
    from scipy import stats
    truth = [p["label"] for p in result.predictions]
    assert result.spearman == pytest.approx(stats.spearmanr([p["score"] for p in result.predictions], truth).statistic)
    assert result.spearman > 0.8  # the index follows 3 f1 - 2 f2 + 2 f3
    assert result.spearman_predicted == pytest.approx(
        stats.spearmanr([p["predicted"]["grs"] for p in result.predictions], truth).statistic)
    sub = {s.source: s.label("time_and_motion") for s in sessions}
    assert result.targets["time_and_motion"] == pytest.approx(stats.spearmanr(
        [p["predicted"]["time_and_motion"] for p in result.predictions],
        [sub[p["source"]] for p in result.predictions]).statistic)


def test_each_fold_fits_on_every_trainee_but_the_held_out_one(monkeypatch):
    sessions = planted(n_trainees=8, per=3)
    fitted_on: list[set[str]] = []
    real_fit = assessor_module.fit_assessor

    def spy(train, label, **kwargs):
        fitted_on.append({s.meta["trainee"] for s in train})
        return real_fit(train, label, **kwargs)

    monkeypatch.setattr(assessor_module, "fit_assessor", spy)
    evaluate_assessor(sessions, "grs", "louo", domains=DOMAINS)
    assert sorted(len(s) for s in fitted_on) == [7] * 8
    assert {frozenset({f"t{k}" for k in range(8)} - s) for s in fitted_on} == {frozenset({f"t{k}"}) for k in range(8)}


def test_monotone_line():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    assert monotone_line(x, 2 + 3 * x) == pytest.approx((2.0, 3.0))
    assert monotone_line(x, 5 - x) == pytest.approx((3.5, 0.0))  # falling: flat at the mean
    assert monotone_line(np.ones(4), x) == pytest.approx((1.5, 0.0))  # no spread in x


def test_expert_novice_auc():
    assert expert_novice_auc([3, 2, 1, 0], ["E", "E", "N", "N"]) == 1.0
    assert expert_novice_auc([0, 1, 1, 3], ["E", "N", "E", "N"]) == pytest.approx(0.125)
    assert expert_novice_auc([1, 2], ["E", "I"]) is None


def test_save_load_round_trip(tmp_path):
    sessions = planted(names=REAL_NAMES)
    model = fit_assessor(sessions, "grs", task="demo", domains=FILE_DOMAINS)
    path = save_assessor(model, tmp_path / "model.json")
    loaded = load_assessor(path)
    assert loaded == model
    probe = sessions[0].values
    assert loaded.grade(probe) == model.grade(probe)


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: d.pop("label"), "label: Field required"),
        (lambda d: d.update(scale=[1.0] * 2), "scale: 2 values for 3 features"),
        (lambda d: d.update(scale=[1.0, -1.0, 1.0]), "scale.1: Input should be greater than 0 (got -1.0)"),
        (lambda d: d["targets"]["grs"].update(slope=-1),
         "targets.grs.slope: Input should be greater than or equal to 0 (got -1)"),
        (lambda d: d["targets"]["grs"].update(low=40.0, high=10.0), "targets.grs.low: 40.0 is above high 10.0"),
        (lambda d: d["targets"].pop("grs"), "targets: none for the label 'grs'"),
        (lambda d: d["targets"]["skill"].update(low=-1.0, high=3.0),  # levels are 0 (N) to 2 (E)
         "targets.skill: range -1.0-3.0 is not within the levels' 0 (N) - 2 (E)"),
        (lambda d: d.update(format="rubric"), "format: Input should be 'surgsim-assessor' (got 'rubric')"),
        (lambda d: d.update(signs=[1, 2, 1]), "signs.1: Input should be -1 or 1 (got 2)"),
        (lambda d: d["features"].__setitem__(0, "instruments.mean_sped"),
         "features.0: 'instruments.mean_sped' is neither a feature nor a metric surgsim measures"),
        (lambda d: d["features"].__setitem__(2, "instruments.mean_speed"),
         "features.2: 'instruments.mean_speed' is listed twice"),
        (lambda d: d["domains"].__setitem__(0, "sped"),  # a misspelt domain makes a third one
         "weights.0: 0.25, but 3 domains with 1 feature(s) in 'sped' give 0.333333"),
        (lambda d: d.update(weights=[0.25, 0.25, 0.6]),
         "weights.2: 0.6, but 2 domains with 1 feature(s) in 'smoothness' give 0.5"),
        (lambda d: d.update(weights=[0.5, 0.0, 0.5]),
         "weights.1: 0.0, but 2 domains with 2 feature(s) in 'speed' give 0.25"),
    ],
)
def test_bad_model_files_name_file_field_and_value(tmp_path, edit, message):
    model = fit_assessor(planted(names=REAL_NAMES), "grs", task="Suturing", domains=FILE_DOMAINS)
    data = json.loads(save_assessor(model, tmp_path / "m.json").read_text())
    edit(data)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(data))
    with pytest.raises(AssessorError, match="bad.json: ") as info:
        load_assessor(bad)
    assert message in str(info.value)
    assert "'format'" not in str(info.value) and "Suturing" not in str(info.value)  # no dump of the whole model


@pytest.mark.parametrize(
    "text, message",
    [
        ('{"format": NaN}', "bad.json: not a JSON assessor model (NaN is not a number JSON allows"),
        ("[1, 2]", "bad.json: not a JSON assessor model (a JSON list, not an object)"),
    ],
)
def test_files_that_are_no_model_are_refused(tmp_path, text, message):
    bad = tmp_path / "bad.json"
    bad.write_text(text)
    with pytest.raises(AssessorError) as info:
        load_assessor(bad)
    assert message in str(info.value)


def test_a_model_of_an_older_version_asks_to_be_refitted(tmp_path):
    data = json.loads(save_assessor(fit_assessor(planted(names=REAL_NAMES), "grs", domains=FILE_DOMAINS),
                                    tmp_path / "m.json").read_text())
    data["version"] = 2
    for target in data["targets"].values():  # version 2 had no ranges
        del target["low"], target["high"]
    (tmp_path / "old.json").write_text(json.dumps(data))
    with pytest.raises(AssessorError, match=r"old.json: version: 2, but this surgsim reads version 3 models .*"
                                            r"refit it with `surgsim score calibrate --model assessor`"):
        load_assessor(tmp_path / "old.json")


def test_a_model_that_would_not_load_is_not_written(tmp_path):
    model = fit_assessor(planted(), "grs", domains=DOMAINS)  # features and domains of its own
    with pytest.raises(AssessorError, match="m.json: not written, it would not load: features.0: 'f1' is neither"):
        save_assessor(model, tmp_path / "m.json")
    assert not (tmp_path / "m.json").exists()


def test_grading_a_session_of_another_kind_is_refused():
    model = fit_assessor(planted(), "grs", task="demo", domains=DOMAINS)
    with pytest.raises(AssessorError, match=r"s9: has 1 of the 3 features"):
        model.grade({"f1": 1.0, "other": 2.0}, "s9")
    with pytest.raises(AssessorError, match="needs >= 4 sessions with a numeric labels.osats"):
        fit_assessor(planted(), "osats")
    with pytest.raises(AssessorError, match="none of the assessor's 3 features is available and varies"):
        fit_assessor(planted(), "grs", domains={"a": {"g1": 1, "g2": 1, "g3": -1}})


# ------------------------------------------------------------------ CLI
def write_cohort(folder, n_trainees: int = 4, per: int = 3) -> None:
    """Two-hand sessions along the same path: better trainees finish sooner, with less tremor and
    fewer grasps (grs known)."""
    rng = np.random.default_rng(2)
    for k in range(n_trainees):
        for j in range(per):
            skill = k + 0.3 * j
            duration = 12.0 / (1 + 0.3 * skill)
            t = np.arange(int(duration * FS)) / FS
            cycle = 2 * np.pi * t / duration  # one loop of the path, whatever the speed
            tracks = {}
            for hand, phase in (("left", 0.0), ("right", 1.0)):
                tremor = 0.001 * (4 - skill) * np.sin(2 * np.pi * 9 * t)
                position = np.column_stack([0.02 * np.sin(cycle + phase) + tremor, 0.02 * np.cos(cycle + phase),
                                            0.001 * rng.normal(size=len(t))])
                orientation = Rotation.from_euler("z", 0.3 * np.sin(cycle)[:, None]).as_quat()
                gripper = 0.5 + 0.4 * np.sign(np.sin((6 - k) * cycle))
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
    assert data["spearman"] > 0.5, data  # faster, steadier trainees have the higher grs
    assert f"{data['spearman']:.3f}" in result.output
    assert {p["group"] for p in data["predictions"]} == {"t0", "t1", "t2", "t3"}


def test_cli_assess_grades_sessions_with_a_fitted_model_and_explains_them(tmp_path):
    import csv

    write_cohort(tmp_path / "s")
    model = tmp_path / "model.json"
    assert runner.invoke(app, ["score", "calibrate", str(tmp_path / "s"), "--label", "grs", "--model", "assessor",
                               "--out", str(model), "--no-progress", "-j", "1"]).exit_code == 0
    other = read_session(tmp_path / "s" / "t0-0.parquet")
    other.meta["task"] = "Suturing"
    write_session(other, tmp_path / "s" / "other.parquet")
    out = tmp_path / "a"
    result = runner.invoke(app, ["score", "assess", str(tmp_path / "s"), "--model", str(model), "--out", str(out),
                                 "--top", "3", "--no-progress", "-j", "1"])
    assert result.exit_code == 1, result.output  # the Suturing session is refused, the others graded
    assert "other.parquet: task 'Suturing', but the assessor grades 'Demo' sessions" in result.stderr
    reports = json.loads((out / "assessed.json").read_text())
    assert len(reports) == 12 and all(len(r["explanation"]) == 3 for r in reports)
    index = {k: np.mean([r["index"] for r in reports if r["trainee"] == f"t{k}"]) for k in range(4)}
    assert index[3] > index[0]  # the faster, steadier trainee
    grs = [r["predictions"]["grs"] for r in reports]
    assert 10 <= min(grs) and max(grs) <= 21  # within the training labels' range
    with open(out / "assessed.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [float(r["predicted_grs"]) for r in rows] == grs and rows[0]["top_feature"] == reports[0]["explanation"][0]
    assert f"index {reports[0]['index']:+.2f}, grs {grs[0]:.1f}" in result.stdout


def test_cli_keeps_rubrics_and_assessor_models_apart(tmp_path):
    write_cohort(tmp_path / "s")
    calibrate = ["score", "calibrate", str(tmp_path / "s"), "--label", "grs", "--no-progress", "-j", "1"]
    result = runner.invoke(app, [*calibrate, "--model", "assessor", "--out", str(tmp_path / "m.yaml")])
    assert result.exit_code == 2 and "an assessor is written as JSON; name it *.json" in result.stderr
    result = runner.invoke(app, [*calibrate, "--out", str(tmp_path / "r.json")])
    assert result.exit_code == 2 and "a rubric is written as YAML; name it *.yaml" in result.stderr
    assert runner.invoke(app, [*calibrate, "--model", "assessor", "--out", str(tmp_path / "m.json")]).exit_code == 0
    result = runner.invoke(app, ["score", str(tmp_path / "s"), "--rubric", str(tmp_path / "m.json"), "--out",
                                 str(tmp_path / "r"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert "m.json: an assessor model, not a rubric; grade with it by `surgsim score assess" in result.stderr
    assess = ["score", "assess", str(tmp_path / "s"), "--out", str(tmp_path / "a"), "--no-progress", "-j", "1"]
    result = runner.invoke(app, [*assess, "--model", str(rubric_dir() / "NeedleReach.yaml")])
    assert result.exit_code == 2 and "a rubric (YAML), not an assessor model; grade with it by `surgsim score" in result.stderr
    model = load_assessor(tmp_path / "m.json")
    save_assessor(replace(model, task="Suturing"), tmp_path / "sut.json")
    result = runner.invoke(app, [*assess, "--model", str(tmp_path / "sut.json")])  # every session is Demo
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --model {tmp_path / 'sut.json'} grades 'Suturing' sessions, and none of these")
    result = runner.invoke(app, ["score", "evaluate", str(tmp_path / "s"), "--label", "grs", "--model", "assessor",
                                 "--out", str(tmp_path / "e.json"), "--no-progress", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "e.json").read_text())["commonest_level_accuracy"] == 0.5  # trainees N, N, I, E


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
