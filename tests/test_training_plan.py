"""Per-trainee history, proficiency-based progression, next exercise and the trainee report."""

from __future__ import annotations

import json
import os
import re
import threading
from pathlib import Path

import numpy as np
import pytest
from simhelpers import one_line_error, run_python
from typer.testing import CliRunner

import surgsim._files
import surgsim.scoring.plan as plan_module
from surgsim.cli import app
from surgsim.scoring.history import History, HistoryError, attempt_record, file_stem
from surgsim.scoring.metrics import METRICS
from surgsim.scoring.plan import (
    LADDER, SKILLS, PlanError, PlanSettings, load_settings, training_plan,
)
from surgsim.scoring.batch import grade_folder
from surgsim.scoring.rubric import load_rubric, rubric_dir
from surgsim.scoring.synthetic import synthetic_session
from surgsim.scoring.trainee_report import write_trainee_report
from surgsim.sessions import write_session

runner = CliRunner()
#: the pass marks the progression tests use (the README's example `default` marks)
FIXED_MARKS = {"easy": 60.0, "medium": 70.0, "hard": 80.0}


@pytest.fixture(autouse=True)
def fixed_pass_marks(monkeypatch):
    """Progression logic is tested against fixed marks (60 / 70 / 80), not the shipped rubrics'
    levels, which move whenever a rubric is re-made (test_pass_marks_follow_the_shipped_rubrics)."""
    monkeypatch.setattr(plan_module, "rubric_pass_marks", lambda exercise: FIXED_MARKS)


def test_pass_marks_follow_the_shipped_rubrics(monkeypatch) -> None:
    monkeypatch.undo()
    for task in ("NeedleReach", "SurgicalPath", "Incision"):
        levels = load_rubric(rubric_dir() / f"{task}.yaml").levels
        marks = {d: PlanSettings().mark(task, d) for d in LADDER}
        assert marks["easy"] == levels.intermediate and marks["hard"] == levels.expert  # hard asks for an expert
        assert marks["easy"] < marks["medium"] < marks["hard"]
    generic = load_rubric(rubric_dir() / "generic.yaml").levels  # what grades a task with no rubric of its own
    assert PlanSettings().mark("MyImportedTask", "hard") == generic.expert
    assert PlanSettings(pass_score={"default": {"hard": 95}}).mark("Incision", "hard") == 95  # settings first


def _worse_z(metric: str) -> float:
    """2 SD to the metric's worse side of the experts."""
    return -2.0 if METRICS[metric].better == "higher" else 2.0


def record(n: int, score: float, *, trainee: str = "ann", task: str = "NeedleReach",
           difficulty: str | None = "easy", critical: int = 0, costs: dict[str, float] | None = None) -> dict:
    """A history line as :func:`attempt_record` makes it; ``costs``: points lost per metric
    (z = 2 SD to the metric's worse side when it cost points, else 0)."""
    metrics = {name: {"shown": 1.0, "unit": METRICS[name].shown_unit, "z": _worse_z(name) if lost else 0.0,
                      "points_lost": lost} for name, lost in (costs or {}).items()}
    return {
        "digest": f"{trainee}-{n:04d}", "trainee": trainee, "file": f"/s/{trainee}-{n}.parquet", "task": task,
        "rubric": task, "difficulty": difficulty, "trial": n, "recorded_at": None, "score": score,
        "level": "expert" if score >= 80 else "intermediate", "metrics": metrics,
        "critical_errors": [{"kind": "critical_contact", "time_s": 1.0, "what": "vessel contact"}] * critical,
    }


def plan_of(scores, **kwargs):
    return training_plan([record(i, s, **kwargs) for i, s in enumerate(scores, 1)])


# ------------------------------------------------------------------ history store


def test_history_add_is_idempotent_keyed_by_digest(tmp_path) -> None:
    history = History(tmp_path / "h")
    first = history.add([record(1, 50.0), record(2, 60.0)])
    assert (first.new, first.updated, first.unchanged) == (2, 0, 0)
    again = history.add([record(1, 50.0), record(2, 60.0)])
    assert (again.new, again.updated, again.unchanged) == (0, 0, 2)
    regraded = history.add([record(2, 65.0)])  # the same session graded again (a new rubric)
    assert (regraded.new, regraded.updated) == (0, 1)
    assert [r["score"] for r in history.attempts("ann")] == [50.0, 65.0]
    assert len((tmp_path / "h" / "ann.jsonl").read_text().splitlines()) == 2


def test_history_survives_a_crash_while_writing(tmp_path, monkeypatch) -> None:
    history = History(tmp_path)
    history.add([record(1, 50.0)])
    before = (tmp_path / "ann.jsonl").read_bytes()

    def crash(*args):  # the new file is written, the process dies before the rename
        raise KeyboardInterrupt

    monkeypatch.setattr(surgsim._files.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        history.add([record(2, 70.0)])
    monkeypatch.undo()
    assert (tmp_path / "ann.jsonl").read_bytes() == before
    # a process killed outright leaves its temporary file: it is never read as history
    (tmp_path / ".ann.0a1b2c3d.partial.jsonl").write_text('{"digest": "half')
    assert [r["score"] for r in history.attempts("ann")] == [50.0]
    assert history.trainees() == ["ann"]


def test_attempt_record_from_a_session_report(tmp_path) -> None:
    session = synthetic_session(np.random.default_rng(1), 0.5, reaches=2, trainee="ann", trial=4)
    write_session(session, tmp_path / "a.parquet")
    grade_folder([tmp_path / "a.parquet"], tmp_path / "r", figures=False, progress=False)
    report = json.loads((tmp_path / "r" / "a.json").read_text())
    report.pop("critical_errors", None)  # a report without the field: no critical error
    meta = {**session.meta, "source": {"kind": "simulator", "difficulty": "hard"}}
    line = attempt_record(report, meta, "d1")
    assert (line["trainee"], line["trial"], line["score"], line["difficulty"]) == ("ann", 4, report["score"], "hard")
    assert line["critical_errors"] == []
    for name, item in report["metrics"].items():  # in report units; z and points lost where graded
        shown = {"shown": item.get("shown", item["value"]), "unit": item.get("shown_unit", item["unit"])}
        if "points_lost" in item:
            shown.update(z=item["z"], points_lost=item["points_lost"])
        assert line["metrics"].get(name) == (shown if item["value"] is not None else None)
    assert line["metrics"]["path_length"]["unit"] == "mm"
    assert any("points_lost" in item for item in line["metrics"].values())
    errors = [{"kind": "critical_contact", "time_s": 2.5, "what": "critical-structure contact"}]
    assert attempt_record({**report, "critical_errors": errors}, session.meta, "d1")["critical_errors"] == errors
    assert attempt_record(report, session.meta, "d1")["difficulty"] is None
    assert attempt_record({**report, "trainee": None}, meta, "d1") is None
    assert attempt_record({**report, "gradable": False, "score": None}, meta, "d1") is None


def test_concurrent_batches_lose_no_attempt(tmp_path) -> None:
    history = History(tmp_path)

    def add(start: int) -> None:
        for n in range(start, start + 15):
            History(tmp_path).add([record(n, 50.0)])

    threads = [threading.Thread(target=add, args=(start,)) for start in (0, 100)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(history.attempts("ann")) == 30


def test_attempts_in_the_order_made_and_odd_names_kept_apart(tmp_path) -> None:
    history = History(tmp_path)
    history.add([record(3, 30.0), record(1, 10.0), record(2, 20.0)])
    assert [r["score"] for r in history.attempts("ann")] == [10.0, 20.0, 30.0]
    names = ["Dr Who", ".hidden", "a/b", "ANN"]
    history.add([record(1, 40.0 + i, trainee=name) for i, name in enumerate(names)])
    assert file_stem("a/b") == "a%2Fb" and file_stem(".hidden") == "%2Ehidden"
    assert history.trainees() == sorted(["ann", *names])
    assert [r["score"] for r in history.attempts("a/b")] == [42.0]
    assert [r["score"] for r in history.attempts("ann")] == [10.0, 20.0, 30.0]


def test_attempts_recorded_in_the_same_instant_keep_their_file_order_whatever_the_grading_order(tmp_path) -> None:
    def same_instant(n: int, score: float) -> dict:
        return dict(record(n, score), trial=None, recorded_at="2026-12-01T23:35:35+00:00",
                    file=f"/s/inc/level6-{n:04d}.parquet")

    made = [same_instant(1, 10.0), same_instant(2, 20.0), same_instant(3, 30.0)]
    made[2]["file"] = "/s/inc/level6-10.parquet"  # numbers compare as numbers: 2 before 10
    made[1]["file"] = "/s/inc/level6-2.parquet"
    for order, folder in (([2, 0, 1], "a"), ([0, 1, 2], "b")):
        history = History(tmp_path / folder)
        history.add([made[i] for i in order])
        assert [r["score"] for r in history.attempts("ann")] == [10.0, 20.0, 30.0]


def test_history_errors_name_the_folder_and_problem(tmp_path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(HistoryError, match="not a folder"):
        History(tmp_path / "file")
    history = History(tmp_path / "h")
    history.add([record(1, 50.0)])
    with pytest.raises(HistoryError, match=r"no attempts of trainee 'bob' \(trainees: ann\)"):
        history.attempts("bob")
    (tmp_path / "h" / "cat.jsonl").write_text('{"digest": "x", "trainee": "cat", "score": 1}\n{oops\n')
    with pytest.raises(HistoryError, match=r"cat\.jsonl: line 2 is not valid JSON"):
        history.check()


# ------------------------------------------------------------------ progression


def test_three_passes_in_a_row_advance_to_the_next_difficulty() -> None:
    plan = plan_of([75, 75])
    assert plan.progress["NeedleReach"].completed == [] and plan.progress["NeedleReach"].current == "easy"
    plan = plan_of([75, 75, 75])
    assert plan.progress["NeedleReach"].completed == ["easy"]
    assert plan.progress["NeedleReach"].current == "medium"
    assert [a.why for a in plan.attempts] == ["passed: score 75.0 >= 60"] * 3


def test_a_fail_resets_the_streak() -> None:
    plan = plan_of([75, 75, 59.9, 75, 75])
    state = plan.progress["NeedleReach"]
    assert state.completed == [] and state.streak["easy"] == 2
    assert plan.attempts[2].why == "failed: score 59.9 below the pass mark 60"
    assert plan_of([75, 75, 59.9, 75, 75, 75]).progress["NeedleReach"].completed == ["easy"]


def test_an_attempt_with_a_critical_error_never_passes() -> None:
    records = [record(1, 95), record(2, 95), record(3, 99, critical=1), record(4, 95), record(5, 95)]
    plan = training_plan(records)
    assert not plan.attempts[2].passed and plan.attempts[2].why == "failed: 1 critical error(s): vessel contact"
    assert plan.progress["NeedleReach"].completed == []
    # and the next exercise goes back to where it happened, before any metric
    assert plan.next.exercise == "NeedleReach" and plan.next.difficulty == "easy"
    assert plan.next.reason.startswith(
        "1 of the last 5 NeedleReach attempt(s) had a critical error (latest: attempt 3: vessel contact); "
        "an attempt with one never passes, so practise NeedleReach at easy")


def test_ladder_climbs_to_hard_and_marks_are_per_exercise_and_difficulty(tmp_path) -> None:
    settings_file = tmp_path / "plan.yaml"
    settings_file.write_text("passes_to_advance: 2\npass_score:\n  default: {medium: 65}\n  NeedleReach: {hard: 90}\n")
    settings = load_settings(settings_file)
    assert settings.mark("NeedleReach", "hard") == 90 and settings.mark("NeedleReach", "medium") == 65
    assert settings.mark("Incision", "easy") == 60 and settings.mark("Incision", "hard") == 80
    scores = [(65, "easy"), (65, "easy"), (66, "medium"), (66, "medium"), (85, "hard"), (91, "hard"), (91, "hard")]
    records = [record(i, s, difficulty=d) for i, (s, d) in enumerate(scores, 1)]
    plan = training_plan(records, settings)
    assert plan.progress["NeedleReach"].completed == list(LADDER)
    assert plan.progress["NeedleReach"].current is None
    assert [a.passed for a in plan.attempts] == [True, True, True, True, False, True, True]


def test_the_plan_says_when_the_rung_to_practise_was_never_tried() -> None:
    plan = training_plan([record(i, 65, difficulty="medium", costs={"ldlj": 5.0}) for i in range(1, 4)])
    assert plan.progress["NeedleReach"].current == "easy"  # medium not completed (70 needed)
    assert plan.next.reason.endswith("practise it at easy; no attempt at easy yet; 3 passes in a row complete it "
                                     "(score 60 or more, no critical error)")


def test_missing_difficulty_counts_as_medium_and_proficiency_there_skips_easy() -> None:
    plan = plan_of([75, 75, 75], difficulty=None)
    assert all(a.difficulty == "medium" and a.difficulty_assumed for a in plan.attempts)
    assert plan.progress["NeedleReach"].completed == ["medium"]
    assert plan.progress["NeedleReach"].current == "hard"


# ------------------------------------------------------------------ next exercise


@pytest.mark.parametrize("metric, exercise", [
    ("ldlj", "NeedleReach"), ("deviation_max", "SurgicalPath"), ("depth_perception", "Incision"),
])
def test_next_exercise_trains_the_weakest_metric_and_says_so(metric, exercise) -> None:
    lost = [12.0, 12.0, 0.0, 12.0]  # within the expert range once: z 0 there
    plan = training_plan([record(i, 50, task="SurgicalPath", costs={"economy_of_motion": 4.0, metric: points})
                          for i, points in enumerate(lost, 1)])
    assert plan.weaknesses[0].metric == metric and plan.weaknesses[0].points_lost == 9.0
    assert plan.next.metric == metric and plan.next.exercise == exercise
    # the SDs are the mean over the attempts that graded it (2, 2, 0, 2); the side where it cost points
    assert plan.next.reason.startswith(
        f"{METRICS[metric].label} cost the most points in the last 4 attempt(s) "
        f"(9.0 points on average, 1.5 SD {'lower' if METRICS[metric].better == 'higher' else 'higher'} than "
        f"experts); {exercise} trains {SKILLS[metric][0]}")


def test_a_metric_within_the_expert_band_is_no_weakness_and_a_new_exercise_comes_next() -> None:
    settings = PlanSettings(passes_to_advance=1)
    mastered = [record(i, 95, difficulty=d, costs={"depth_perception": 0.3}) for i, d in enumerate(LADDER, 1)]
    for r in mastered:
        r["metrics"]["depth_perception"]["z"] = 0.8  # costs a little, inside the expert band (+-1 SD)
    plan = training_plan(mastered, settings)
    assert plan.weaknesses[0].metric == "depth_perception"  # listed as what cost the most ...
    assert (plan.next.exercise, plan.next.difficulty, plan.next.metric) == ("SurgicalPath", "easy", None)  # ... not trained
    assert plan.next.reason == ("every exercise practised is completed up to hard; SurgicalPath has not been "
                                "practised yet: start it at easy")


def test_one_outlying_attempt_does_not_make_a_weakness() -> None:
    records = [record(i, 70, costs={"movements": 2.0 if i == 5 else 0.0, "ldlj": 1.0}) for i in range(1, 6)]
    for r in records:
        r["metrics"]["ldlj"]["z"] = -0.5  # costs a little every time, inside the band
    plan = training_plan(records)
    assert [w.metric for w in plan.weaknesses] == ["ldlj", "movements"]
    assert plan.weaknesses[1].sd == pytest.approx(0.4)  # z 0, 0, 0, 0, -2: 0.4 SD on average, not 2
    assert plan.next.metric is None and plan.next.reason.startswith("no metric outside the expert band")


def test_next_exercise_skips_a_mastered_exercise_and_uses_only_recent_attempts() -> None:
    settings = PlanSettings(passes_to_advance=1, recent_attempts=1)  # each exercise's latest attempt
    old = [record(1, 20, task="SurgicalPath", costs={"deviation_mean": 50.0})]  # no longer recent: attempt 5 is
    mastered = [record(i, 95, difficulty=d, costs={"ldlj": 3.0}) for i, d in enumerate(LADDER, 2)]
    failed = [record(5, 50, task="SurgicalPath", costs={"success": 1.0})]
    plan = training_plan(old + mastered + failed, settings)
    assert [(w.metric, w.points_lost, w.exercise) for w in plan.weaknesses] == [
        ("ldlj", 3.0, "NeedleReach"), ("success", 1.0, "SurgicalPath")]
    # ldlj is trained by NeedleReach, completed up to hard; success by the exercise where it was lost
    assert plan.progress["NeedleReach"].current is None
    assert (plan.next.metric, plan.next.exercise, plan.next.difficulty) == ("success", "SurgicalPath", "easy")
    assert plan.next.reason.endswith("practise it at easy; 0 of 1 passes in a row so far (score 60 or more, "
                                     "no critical error)")


def test_an_exercise_practised_a_while_ago_keeps_its_recent_record() -> None:
    incision = [record(1, 90, task="Incision", critical=1, costs={"tissue_damage": 20.0})]
    reaches = [record(i, 95, costs={"ldlj": 1.0}) for i in range(2, 8)]  # six NeedleReach attempts since
    plan = training_plan(incision + reaches)
    assert plan.next.exercise == "Incision"  # its latest attempt had an error: not forgotten after 5 others
    assert plan.next.reason.startswith("1 of the last 1 Incision attempt(s) had a critical error (latest: attempt 1")
    assert "tissue_damage" in [w.metric for w in plan.weaknesses]


def test_an_error_on_the_way_to_completing_an_exercise_does_not_hold_the_trainee_there() -> None:
    settings = PlanSettings(passes_to_advance=3)
    ladder = [(95, "easy")] * 3 + [(95, "medium")] * 3 + [(95, "hard")]
    reaches = [record(i, s, difficulty=d) for i, (s, d) in enumerate(ladder, 1)]
    reaches += [record(8, 99, difficulty="hard", critical=1)] + [record(i, 95, difficulty="hard") for i in (9, 10, 11)]
    paths = [record(i, 95, task="SurgicalPath") for i in range(12, 32)]
    plan = training_plan(reaches + paths, settings)
    assert plan.progress["NeedleReach"].current is None  # completed up to hard, after the error
    assert plan.next.exercise == "SurgicalPath"


def test_attempts_better_than_experts_do_not_count_as_distance_from_them() -> None:
    records = [record(i, 90, costs={"economy_of_motion": 1.0 if i == 5 else 0.0}) for i in range(1, 6)]
    for r in records:
        r["metrics"]["economy_of_motion"]["z"] = -1.2 if r["trial"] == 5 else 3.0  # far better, then a bit worse
    (weakness,) = training_plan(records).weaknesses
    assert weakness.sd == pytest.approx(1.2 / 5) and weakness.side == "lower"
    assert training_plan(records).next.metric is None  # not a weakness to train


def test_skill_table_covers_every_metric() -> None:
    from surgsim.tasks.spec import DIFFICULTIES

    assert set(SKILLS) == set(METRICS)
    assert LADDER == DIFFICULTIES
    assert {exercise for _, exercise in SKILLS.values()} == {"NeedleReach", "SurgicalPath", "Incision", None}


def test_readme_states_the_skill_table_and_default_settings(tmp_path, monkeypatch) -> None:
    monkeypatch.undo()  # the example must load against the shipped rubrics' marks
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    section = readme[readme.index("### Training plans"):]
    rows = re.findall(r"^\| [^|]+ \| (`.+`) \| ([^|]+) \|$", section, re.MULTILINE)
    stated = {metric: None if exercise.startswith("the exercise") else exercise
              for metrics, exercise in rows for metric in re.findall(r"`(\w+)`", metrics)}
    assert stated == {metric: exercise for metric, (_, exercise) in SKILLS.items()}
    example = tmp_path / "plan.yaml"
    example.write_text(re.search(r"```yaml\n(passes_to_advance.*?)```", section, re.DOTALL).group(1))
    settings = load_settings(example)
    assert settings.model_dump(exclude={"pass_score"}) == PlanSettings().model_dump(exclude={"pass_score"})
    assert settings.pass_score["default"] == FIXED_MARKS


@pytest.mark.parametrize("text, message", [
    ("pass_score: {default: {hard: 120}}",
     "field pass_score.default.hard: Input should be less than or equal to 100 (got 120)"),
    ("pass_score: {Incision: {expert: 70}}", "field pass_score.Incision.expert"),
    ("passes_to_advance: 0", "field passes_to_advance: Input should be greater than or equal to 1 (got 0)"),
    ("passes_to_advance: 2.5", "field passes_to_advance"),
    ("pass_marks: {}", "field pass_marks: Extra inputs are not permitted"),
    ("pass_score: {Incision: {easy: 90, hard: 20}}",
     "pass_score: Incision would ask 90 at easy but 70 at medium"),
    ("pass_score: {SurgicalPath: {easy: 75}}", "pass_score: SurgicalPath would ask 75 at easy but 70 at medium"),
    ("pass_score: {default: {easy: .nan}}", "field pass_score.default.easy"),
    ("- 3", "expected a mapping"),
    ("a: [", "not valid YAML"),
])
def test_bad_settings_name_file_field_and_value(tmp_path, text, message) -> None:
    path = tmp_path / "plan.yaml"
    path.write_text(text)
    with pytest.raises(PlanError) as caught:
        load_settings(path)
    assert str(caught.value).startswith(f"{path}: ") and message in str(caught.value)


# ------------------------------------------------------------------ report and CLI


def test_figure_pass_mark_changes_in_steps(tmp_path, monkeypatch) -> None:
    import matplotlib.pyplot as plt

    closed = []
    monkeypatch.setattr(plt, "close", closed.append)
    history = History(tmp_path / "h")
    history.add([record(1, 95, difficulty="easy"), record(2, 40, task="Incision"), record(3, 95, difficulty="medium")])
    write_trainee_report(history, "ann", tmp_path / "out")
    marks = [ln for ln in closed[0].axes[0].lines if ln.get_linestyle() == ":"]
    assert marks and all(ln.get_drawstyle() == "steps-post" for ln in marks)


def test_trainee_report_json_and_figure(tmp_path) -> None:
    history = History(tmp_path / "h")
    history.add([record(1, 40, costs={"ldlj": 20.0}), record(2, 70, critical=1, costs={"ldlj": 10.0}),
                 record(3, 75, difficulty=None, task="Incision", costs={"tissue_damage": 5.0})])
    report, written = write_trainee_report(history, "ann", tmp_path / "out")
    assert written == [tmp_path / "out" / "ann.json", tmp_path / "out" / "ann.png"]
    assert json.loads(written[0].read_text()) == report
    assert written[1].read_bytes()[:4] == b"\x89PNG"
    assert [a["passed"] for a in report["attempts"]] == [False, False, True]
    assert report["attempts"][1]["critical_errors"] == [
        {"kind": "critical_contact", "time_s": 1.0, "what": "vessel contact"}]
    assert report["curves"] == ["ldlj", "tissue_damage"]
    assert report["progression"]["Incision"]["passes_in_a_row"]["medium"] == 1
    assert report["notes"] == ["1 of 3 attempt(s) have no difficulty (easy, medium, hard) in their session "
                               "metadata: counted as medium"]
    typo = PlanSettings(pass_score={"Incison": {"easy": 50}})
    report, _ = write_trainee_report(history, "ann", tmp_path / "typo", typo, figure=False)
    assert report["notes"][-1].startswith("settings pass_score names 'Incison', which is neither an exercise")


@pytest.fixture
def sessions(tmp_path) -> Path:
    folder = tmp_path / "sessions"
    rng = np.random.default_rng(3)
    for trial, impairment in enumerate([0.8, 0.4, 0.0, 0.0], 1):
        session = synthetic_session(rng, impairment, reaches=2, trainee="ann", trial=trial)
        write_session(session, folder / f"ann-{trial:04d}.parquet")
    return folder


def test_cli_keeps_history_across_batches_and_writes_the_plan(sessions, tmp_path) -> None:
    history, out = tmp_path / "history", tmp_path / "plan"
    args = ["score", str(sessions), "--history", str(history), "--no-figures", "--no-progress", "-j", "1"]
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r1")])
    assert result.exit_code == 0, result.output
    assert f"history {history}: 4 new attempt(s), 0 graded again, 0 unchanged" in result.stdout
    result = runner.invoke(app, [*args, "--out", str(tmp_path / "r2")])  # the same sessions again
    assert f"history {history}: 0 new attempt(s), 0 graded again, 4 unchanged" in result.stdout
    lines = [json.loads(line) for line in (history / "ann.jsonl").read_text().splitlines()]
    assert [line["trial"] for line in lines] == [1, 2, 3, 4]
    scores = [json.loads((tmp_path / "r1" / f"ann-{t:04d}.json").read_text())["score"] for t in range(1, 5)]
    assert [line["score"] for line in lines] == scores
    assert lines[0]["file"] == os.path.abspath(sessions / "ann-0001.parquet")

    result = runner.invoke(app, ["score", "plan", "ann", "--history", str(history), "--out", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads((out / "ann.json").read_text())
    assert (out / "ann.png").read_bytes()[:4] == b"\x89PNG"
    assert [a["score"] for a in report["attempts"]] == scores
    assert [a["passed"] for a in report["attempts"]] == [s >= 70 for s in scores]
    assert f"next: {report['next_exercise']['exercise']} at {report['next_exercise']['difficulty']}: " in result.stdout
    assert "note: 4 of 4 attempt(s) have no difficulty" in result.stdout


@pytest.mark.parametrize("case, message", [
    ("history is a file", "--history {tmp}/afile: not a folder"),
    ("unknown trainee", "no attempts of trainee 'zed' (trainees: ann)"),
    ("bad settings", "{tmp}/plan.yaml: field pass_score.default.hard: Input should be less than or equal to 100"),
])
def test_cli_plan_errors_exit_2_with_one_line(tmp_path, case, message) -> None:
    history = tmp_path / "history"
    History(history).add([record(1, 50.0)])
    (tmp_path / "afile").write_text("")
    (tmp_path / "plan.yaml").write_text("pass_score: {default: {hard: 120}}\n")
    args = {"history is a file": ["ann", "--history", str(tmp_path / "afile")],
            "unknown trainee": ["zed", "--history", str(history)],
            "bad settings": ["ann", "--history", str(history), "--settings", str(tmp_path / "plan.yaml")]}[case]
    result = runner.invoke(app, ["score", "plan", *args, "--out", str(tmp_path / "out")])
    assert result.exit_code == 2, result.output
    assert message.format(tmp=tmp_path) in one_line_error(result)
    assert not (tmp_path / "out").exists()


def test_cli_report_refuses_a_bad_history_before_grading(sessions, tmp_path) -> None:
    (tmp_path / "afile").write_text("")
    args = ["score", str(sessions), "--out", str(tmp_path / "r"), "--no-progress", "-j", "1", "--no-figures"]
    result = runner.invoke(app, [*args, "--history", str(tmp_path / "afile")])
    assert result.exit_code == 2, result.output
    assert str(tmp_path / "afile") in one_line_error(result)
    damaged = tmp_path / "h"
    damaged.mkdir()
    (damaged / "ann.jsonl").write_text("[1, 2]\n")
    result = runner.invoke(app, [*args, "--history", str(damaged)])
    assert result.exit_code == 2, result.output
    assert one_line_error(result) == (f"error: history {damaged / 'ann.jsonl'}: line 1 is not an attempt "
                                      "(needs digest, trainee and score)")
    assert not (tmp_path / "r").exists()


@pytest.mark.slow
def test_training_plan_never_imports_pybullet_or_torch() -> None:
    code = (
        "import sys\n"
        "import surgsim.cli, surgsim.scoring.history, surgsim.scoring.plan, surgsim.scoring.trainee_report\n"
        "print(sorted(m for m in ('pybullet', 'torch') if m in sys.modules))\n"
    )
    assert run_python(code).strip() == "[]"
