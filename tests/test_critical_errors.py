"""Critical errors: found in sessions with their times, stated per kind in rubrics, gates on the
grade that calibration keeps, and the first thing a report says."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.scoring.calibrate import Measured, fit_rubric
from surgsim.scoring.critical import GATED_METRICS, KINDS, CriticalError, CriticalEventError, detect_critical_errors
from surgsim.scoring.metrics import MetricSettings, compute_metrics
from surgsim.scoring.rubric import (
    DEFAULT_CRITICAL_ERRORS, CapRule, MetricReference, Rubric, RubricError, load_rubric, save_rubric,
)
from surgsim.scoring.history import attempt_record
from surgsim.scoring.report import error_effects, session_report
from surgsim.scoring.score import Graded, grade_session, score_metrics
from surgsim.scoring.synthetic import synthetic_cohort, synthetic_session
from surgsim.sessions import write_session
from surgsim.sessions.session import Session, Track

runner = CliRunner()
RATE = 20.0


def _session(n: int = 40, channels: dict | None = None, **meta) -> Session:
    """A straight 5 cm/s line sampled at 20 Hz, starting at t = 3 s (times in reports are from the start)."""
    time = 3.0 + np.arange(n) / RATE
    position = np.column_stack([0.05 * (time - 3.0), np.zeros(n), np.zeros(n)])
    return Session(time, {"tool": Track(position)}, channels or {}, {"task": "t", "complete": True, **meta})


def _flags(n: int, on: list[int]) -> np.ndarray:
    flags = np.zeros(n, dtype=bool)
    flags[on] = True
    return flags


# ------------------------------------------------------------------ detection
def test_contacts_are_found_at_each_onset_with_the_time_from_the_start() -> None:
    contact = _flags(40, [5, 6, 7, 20])  # two contacts: samples 5-7 and 20
    errors = detect_critical_errors(_session(channels={"critical_contact": contact}))
    assert errors == [
        CriticalError("critical_contact", 0.25, "contact with a critical structure"),
        CriticalError("critical_contact", 1.0, "contact with a critical structure"),
    ]
    assert errors[0].as_dict() == {"kind": "critical_contact", "time_s": 0.25, "what": "contact with a critical structure"}


def test_excessive_force_each_time_the_force_rises_above_the_threshold() -> None:
    force = np.zeros(40)
    force[10:14] = [2.5, 3.4, 2.9, 1.0]  # above 2 N for samples 10-12: 0.15 s, peak 3.4 N
    force[30] = 5.0
    force[39] = 2.5  # on the last sample: it lasts that sample's step, not 0 s
    errors = detect_critical_errors(_session(channels={"contact_force": force}))
    assert [(e.kind, round(e.time_s, 9)) for e in errors] == [("excessive_force", 0.5), ("excessive_force", 1.5),
                                                              ("excessive_force", 1.95)]
    assert errors[0].what == "contact force 3.4 N, above the 2 N limit for 0.15 s"
    assert errors[2].what == "contact force 2.5 N, above the 2 N limit for 0.05 s"
    assert detect_critical_errors(_session(channels={"contact_force": force}), MetricSettings(force_threshold=4.0)) == [
        CriticalError("excessive_force", 1.5, "contact force 5.0 N, above the 4 N limit for 0.05 s")]


def test_events_report_bleeding_and_contacts_once() -> None:
    contact = _flags(40, [17])
    events = [{"time": 3.85, "name": "critical_structure"},  # the recorder's event of the same contact
              {"time": 4.2, "name": "bleeding"}, {"time": 4.5, "name": "vessel_1"}]
    errors = detect_critical_errors(_session(channels={"critical_contact": contact}, events=events))
    assert [(e.kind, e.time_s) for e in errors] == [
        ("critical_contact", pytest.approx(0.85)), ("bleeding", pytest.approx(1.2)), ("critical_contact", 1.5)]
    assert errors[1].what == "bleeding (recorded event)"


@pytest.mark.parametrize(
    "meta, channels, expected",
    [
        ({"events": [{"time": 4.0, "name": "off_path"}]}, {}, [("failed", 1.0, "the attempt ended in failure: off path")]),
        ({"events": [{"time": 4.95, "name": "time_limit"}]}, {"success": np.zeros(40, bool)},
         [("failed", 1.95, "the attempt ended without success (time limit)")]),
        ({"success": False}, {}, [("failed", 1.95, "the attempt ended without success")]),
        ({"events": [{"time": 4.95, "name": "success"}]}, {"success": _flags(40, [39])}, []),
        ({}, {}, []),  # imported motion: nothing says how the attempt ended
        ({"complete": False, "events": [{"time": 4.95, "name": "stopped"}]}, {"success": np.zeros(40, bool)},
         [("incomplete", 1.95, "the recording stopped before the attempt ended (stopped)")]),
    ],
    ids=["failure-event", "time-limit", "meta-success", "success", "nothing-known", "incomplete"],
)
def test_how_the_attempt_ended(meta, channels, expected) -> None:
    errors = detect_critical_errors(_session(channels=channels, **meta))
    assert [(e.kind, pytest.approx(e.time_s), e.what) for e in errors] == expected


def test_an_ending_by_a_critical_contact_is_that_contact_not_also_a_failure() -> None:
    session = _session(channels={"critical_contact": _flags(40, [39]), "success": np.zeros(40, bool)},
                       events=[{"time": 4.95, "name": "critical_structure"}])
    assert [e.kind for e in detect_critical_errors(session)] == ["critical_contact"]


@pytest.mark.parametrize("events, where", [("no", "meta events: expected a list"),
                                           ([{"time": "late", "name": "bleeding"}], "meta events[0]"),
                                           ([{"time": 1.0}], "meta events[0]")])
def test_unreadable_events_are_an_error_not_silence(events, where) -> None:
    with pytest.raises(CriticalEventError, match=r"^" + where.replace("[", r"\[").replace("]", r"\]")):
        detect_critical_errors(_session(events=events))


# ------------------------------------------------------------------ rubric section
def _rubric(**kwargs) -> Rubric:
    metrics = {"path_length": MetricReference(weight=1.0, center=0.1, scale=0.01, better="lower")}
    return Rubric(task="t", metrics=metrics, **kwargs)


def test_rubric_without_the_section_gets_every_kind_with_its_default(tmp_path) -> None:
    rubric = _rubric()
    assert list(rubric.critical_errors) == list(KINDS)
    assert rubric.critical_errors["critical_contact"] == "fail"
    assert rubric.critical_errors["failed"] == "fail"  # an uncompleted task scores 0 (FLS)
    partial = _rubric(critical_errors={"failed": {"cap": 20}})  # a kind left out keeps its default
    assert partial.critical_errors["failed"] == CapRule(cap=20.0)
    assert partial.critical_errors["bleeding"] == DEFAULT_CRITICAL_ERRORS["bleeding"]
    path = save_rubric(partial, tmp_path / "r.yaml")
    written = yaml.safe_load(path.read_text())["critical_errors"]
    assert written == {"critical_contact": "fail", "excessive_force": {"cap": 50.0}, "bleeding": "fail",
                       "failed": {"cap": 20.0}, "incomplete": {"cap": 50.0}}
    assert load_rubric(path) == partial


def test_bad_section_names_file_field_and_value(tmp_path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"task": "t", "critical_errors": {"excessive_force": {"cap": -5}},
                                    "metrics": {"ldlj": {"weight": 1, "center": -6, "scale": 1, "better": "higher"}}}))
    with pytest.raises(RubricError) as info:
        load_rubric(path)
    message = str(info.value)
    assert message.startswith(f"{path}: field critical_errors: ")
    assert "excessive_force: expected fail or {cap: <score, at least 0 and below 100>}, got {'cap': -5}" in message


# ------------------------------------------------------------------ gates on the grade
def test_fail_zeroes_the_score_cap_caps_it_and_no_error_is_expert() -> None:
    rubric = _rubric(critical_errors={"failed": {"cap": 90}, "excessive_force": {"cap": 30}})
    values = {"path_length": 0.1}  # an expert's value: 100 without errors
    assert score_metrics(values, rubric).level == "expert"
    hit = score_metrics(values, rubric, [CriticalError("critical_contact", 1.0, "x")])
    assert (hit.score, hit.level, hit.metric_score) == (0.0, "fail", 100.0)
    forced = score_metrics(values, rubric, [CriticalError("excessive_force", 1.0, "x")])
    assert (forced.score, forced.level) == (30.0, "novice")
    # a cap above the expert threshold still keeps the level below expert
    failed = score_metrics(values, rubric, [CriticalError("failed", 2.0, "x")])
    assert (failed.score, failed.level) == (90.0, "intermediate")
    both = score_metrics(values, rubric, [CriticalError("failed", 2.0, "x"), CriticalError("excessive_force", 1.0, "x")])
    assert both.score == 30.0


def test_a_short_session_that_hits_a_vessel_is_graded_fail() -> None:
    session = _session(n=3, channels={"critical_contact": _flags(3, [2])})
    graded = grade_session(session, _rubric())
    assert graded.score is not None and (graded.score.score, graded.score.level) == (0.0, "fail")
    assert graded.reason.endswith("too short to grade its motion; a critical error fails it")
    assert graded.score.metrics == {}
    quiet = grade_session(_session(n=3), _rubric())  # too short, nothing failed: not gradable, as before
    assert quiet.score is None and "grading needs at least 4" in quiet.reason


@pytest.mark.parametrize("rules, meta, graded_fail", [
    ({}, {"events": [{"time": 3.1, "name": "off_path"}]}, True),  # failed: fail by default
    ({"failed": {"cap": 50}}, {"events": [{"time": 3.1, "name": "off_path"}]}, False),  # no motion to cap
    ({}, {"complete": False}, False),  # the recording stopped (incomplete: a cap)
])
def test_a_short_attempt_is_graded_fail_only_by_a_rule_that_fails_it(rules, meta, graded_fail) -> None:
    rubric = _rubric(critical_errors=rules)
    graded = grade_session(_session(n=3, **meta), rubric)
    assert len(graded.critical_errors) == 1
    if graded_fail:
        assert "too short to grade its motion" in graded.reason
        assert (graded.score.score, graded.score.level) == (0.0, "fail")
        report = session_report("s", _session(n=3, **meta), graded, rubric=rubric)
        assert report["metric_score"] is None and report["critical_errors"][0]["effect"] == "fail"
        assert attempt_record(dict(report, trainee="ann"), {}, "d")["metrics"] == {}  # no curve points
    else:
        assert graded.score is None and "grading needs at least 4" in graded.reason


def test_a_failed_attempt_scores_below_any_completed_one() -> None:
    values = {"path_length": 0.1}  # on the expert centre: 100 points of motion
    failed = score_metrics(values, _rubric(), [CriticalError("failed", 2.0, "the attempt ended in failure: off_path")])
    assert (failed.score, failed.level, failed.metric_score) == (0.0, "fail", 100.0)
    worst_completed = score_metrics({"path_length": 10.0}, _rubric())
    assert worst_completed.level != "fail" and failed.score <= worst_completed.score


# ------------------------------------------------------------------ calibration keeps them
def test_calibration_never_removes_or_weakens_the_gates() -> None:
    sessions = synthetic_cohort(np.random.default_rng(3), trainees=6, trials=2)
    for i, s in enumerate(sessions):  # every session records contacts, none of them hits: the metric never varies
        n = s.n_samples
        s.channels.update(critical_contact=np.zeros(n, bool), success=np.ones(n, bool))
        if i % 3 == 0:  # some do hit: still a gate, not a weight
            s.channels["critical_contact"] = _flags(n, [n // 2])
    measured = [Measured(f"s{i}", compute_metrics(s).combined, s.meta, tuple(detect_critical_errors(s)))
                for i, s in enumerate(sessions)]
    rubric = fit_rubric(measured, "synthetic", label="grs")
    assert not set(GATED_METRICS) & set(rubric.metrics)
    assert rubric.critical_errors == _rubric().critical_errors  # every kind, with its default rule
    hit = next(m for m in measured if m.critical_errors)
    assert score_metrics(hit.values, rubric, hit.critical_errors).level == "fail"


# ------------------------------------------------------------------ reports
def test_each_error_says_what_it_did_to_this_grade() -> None:
    rubric = _rubric(critical_errors={"excessive_force": {"cap": 50}, "incomplete": {"cap": 90}})
    force, stop = CriticalError("excessive_force", 0.5, "x"), CriticalError("incomplete", 1.9, "x")
    hit = CriticalError("critical_contact", 1.0, "x")
    capped = score_metrics({"path_length": 0.1}, rubric, [force, stop])  # motion 100 -> capped at 50
    assert error_effects([force, stop], rubric, capped) == [
        ("score capped at 50", True), ("score capped at 90 (superseded by the cap at 50)", False)]
    failed = score_metrics({"path_length": 0.1}, rubric, [force, hit])
    assert error_effects([force, hit], rubric, failed) == [
        ("score capped at 50 (superseded: the attempt fails)", False), ("fail", True)]
    poor = score_metrics({"path_length": 0.2}, rubric, [stop])  # motion under the cap already
    assert poor.metric_score < 90
    assert error_effects([stop], rubric, poor) == [
        (f"score capped at 90 (no effect: the motion scored {poor.metric_score:.1f})", False)]
    lenient = _rubric(critical_errors={"incomplete": {"cap": 99}})  # an expert motion score under the cap
    held = score_metrics({"path_length": 0.105}, lenient, [stop])  # motion 87.5: expert level
    assert (held.score, held.level) == (held.metric_score, "intermediate") and held.metric_score > 75
    assert error_effects([stop], lenient, held) == [(
        f"score capped at 99 (the motion scored {held.metric_score:.1f}, under it; the error keeps the level "
        "below expert)", True)]


def test_report_leads_with_the_errors_and_the_cli_says_fail(tmp_path) -> None:
    session = synthetic_session(np.random.default_rng(0), 0.0)
    n = session.n_samples
    session.channels["critical_contact"] = _flags(n, [n // 2])
    session.meta.update(events=[{"time": float(session.time[-1]), "name": "success"}])
    write_session(session, tmp_path / "in" / "hit.parquet")
    result = runner.invoke(app, ["score", str(tmp_path / "in"), "--out", str(tmp_path / "r"), "--no-progress", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "hit.parquet: 0.0 (fail), by its critical errors: the motion alone scored" in result.stdout
    report = json.loads((tmp_path / "r" / "hit.json").read_text())
    assert next(iter(report)) == "critical_errors"
    time_s = round(float(session.time[n // 2] - session.time[0]), 3)
    assert report["critical_errors"] == [{"kind": "critical_contact", "time_s": time_s,
                                          "what": "contact with a critical structure", "effect": "fail",
                                          "sets_grade": True}]
    assert report["score"] == 0.0 and report["level"] == "fail" and report["metric_score"] > 90
    assert (tmp_path / "r" / "hit.png").read_bytes()[:4] == b"\x89PNG"
    summary = (tmp_path / "r" / "summary.csv").read_text()
    assert f"critical_contact at {time_s:.2f} s" in summary
    assert "metric_score" in summary.splitlines()[0].split(",")


def test_the_figure_keeps_the_numbers_of_close_errors_apart(tmp_path, monkeypatch) -> None:
    import surgsim.scoring.report as report

    figures = []
    monkeypatch.setattr(report, "_save_png", lambda path, plt, figure: figures.append(figure) or path)
    session = synthetic_session(np.random.default_rng(0), 0.0)
    n = session.n_samples  # 100 Hz: contacts 0.1 s apart, and one far from both
    session.channels["critical_contact"] = _flags(n, [n // 2, n // 2 + 10, n - 5])
    graded = grade_session(session, any_task=True)
    report.session_figure(tmp_path / "f.png", session, graded.metrics, graded.score, [("fail", True)] * 3)
    speed_axis = figures[0].axes[1]
    heights = {t.get_text(): t.xy[1] for t in speed_axis.texts}
    assert heights["1"] != heights["2"] and heights["3"] == heights["1"]


def _record_one_action(env_id: str, folder, action: list[float]) -> tuple[str, Graded]:
    """One seed-0 episode of ``env_id`` repeating ``action``, recorded: its failure reason and grade."""
    import gymnasium as gym

    import surgsim  # noqa: F401
    from surgsim.sessions import SessionRecorder, read_session

    env = SessionRecorder(gym.make(env_id), folder, "t01")
    env.reset(seed=0)
    done = False
    while not done:
        *_, terminated, truncated, info = env.step(np.array(action, dtype=np.float32))
        done = terminated or truncated
    env.close()
    return info["failure_reason"], grade_session(read_session(env.written[0]))


def test_recorded_vessel_hit_fails_the_attempt(tmp_path) -> None:
    # seed 0: yawing left while inserting reaches a critical structure at step 17 (0.85 s)
    reason, graded = _record_one_action("surgsim/SurgicalPath-v0", tmp_path, [-1.0, 0.0, 1.0])
    assert reason == "critical_structure"
    assert [(e.kind, e.time_s) for e in graded.critical_errors] == [("critical_contact", 0.85)]
    assert (graded.score.score, graded.score.level) == (0.0, "fail")


def test_recorded_cut_into_the_vessel_layer_is_bleeding(tmp_path) -> None:
    # seed 0: pressing the blade straight down reaches the vessel layer at step 13 (0.65 s)
    reason, graded = _record_one_action("surgsim/Incision-v0", tmp_path, [0.0, 0.0, -1.0])
    assert reason == "bleeding"
    assert ("bleeding", 0.65) in [(e.kind, round(e.time_s, 6)) for e in graded.critical_errors]
    assert (graded.score.score, graded.score.level) == (0.0, "fail")
