"""The scorer never aborts a batch: extreme but valid sessions, bad rubrics, rubrics of another
task, sessions too short to grade, same-named files in two folders, file permissions."""

from __future__ import annotations

import csv
import json
import math
import os
import stat
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import yaml
from simhelpers import run_python
from typer.testing import CliRunner

from surgsim._files import atomic_write_text
from surgsim.cli import app
from surgsim.scoring import batch as batch_module
from surgsim.scoring import score as score_module
from surgsim.scoring.metrics import MetricSettings, compute_metrics
from surgsim.scoring.batch import find_sessions
from surgsim.scoring.rubric import RubricError, load_rubric, rubric_dir
from surgsim.scoring.score import NotGradable, score_session
from surgsim.scoring.synthetic import synthetic_session
from surgsim.sessions import verify_session, write_session
from surgsim.sessions.session import Session, Track

runner = CliRunner()


def _session(seed: int = 0, task: str | None = None, **meta) -> Session:
    session = synthetic_session(np.random.default_rng(seed), 0.3)
    session.meta.update(meta, trainee=f"t{seed}", trial=1)
    if task is not None:
        session.meta["task"] = task
    return session


def _scaled(session: Session, factor: float) -> Session:
    """The same motion with positions (and reference path) multiplied by ``factor``."""
    tracks = {name: replace(track, position=track.position * factor) for name, track in session.tracks.items()}
    meta = dict(session.meta, reference_path=(np.asarray(session.meta["reference_path"]) * factor).tolist())
    meta.pop("target", None)
    return Session(session.time, tracks, session.channels, meta)


def _score(*args: str):
    return runner.invoke(app, ["score", *args, "--no-progress", "--no-figures", "-j", "1"])


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path) as handle:
        return list(csv.DictReader(handle))


# ------------------------------------------------------------------ metrics
@pytest.mark.parametrize("factor", [1e200, 1e-300, 1e300, 2.0**-1070])
def test_extreme_positions_give_scaled_metrics_not_a_crash(factor) -> None:
    base = compute_metrics(_session()).combined
    extreme = compute_metrics(_scaled(_session(), factor)).combined
    assert all(v is None or math.isfinite(v) for v in extreme.values())
    if factor < 1e-308:  # subnormal positions keep a few bits: no crash is all there is to check
        return
    for name in ("ldlj", "sparc", "economy_of_motion"):  # dimensionless: the same at any scale
        assert extreme[name] == pytest.approx(base[name], rel=1e-9), name
    assert extreme["path_length"] == pytest.approx(base["path_length"] * factor, rel=1e-9)
    if factor > 1:  # (1e200 m)^3 is beyond 1e308: not available
        assert extreme["workspace_volume"] is None


@pytest.mark.parametrize(
    "position",
    [np.full((50, 3), 1e200), np.array([[0.0, 0, 0], [1e308, -1e308, 1e308]]), np.array([[0.0, 0, 0]]),
     np.array([[-1.7e308, 0, 0], [1.7e308, 0, 0], [-1.7e308, 1.7e308, 0], [0, 0, 1.7e308], [1, 1, 1]])],
    ids=["constant", "two-huge", "one", "max-float"],
)
def test_degenerate_sessions_have_metrics_or_not_available(position) -> None:
    n = len(position)
    session = Session(np.arange(n) * 0.5, {"tool": Track(position, np.tile([0, 0, 1e300, 1e300], (n, 1)))},
                      meta={"reference_path": [[0, 0, 0], [1, 0, 0]], "target": [1, 0, 0]}).validate()
    for values in (m := compute_metrics(session)).combined, *m.instruments.values():
        assert all(v is None or math.isfinite(v) for v in values.values()), values


def test_metric_settings_out_of_range_are_refused() -> None:
    with pytest.raises(ValueError, match="sparc_threshold must be between 0 and 1 .*got 2"):
        MetricSettings(sparc_threshold=2)
    with pytest.raises(ValueError, match=r"lowpass_hz must be in \(0, 100\] Hz, got nan"):
        MetricSettings(lowpass_hz=float("nan"))


def test_shipped_rubrics_and_30_hz_kinematics_are_within_the_setting_ranges() -> None:
    for path in rubric_dir().glob("*.yaml"):
        load_rubric(path).metric_settings()
    # JIGSAWS kinematics are sampled at 30 Hz: a cutoff at or above their 15 Hz Nyquist frequency
    # leaves the velocity unfiltered (the same metrics as any other such cutoff), never a crash
    n = 300
    time = np.arange(n) / 30.0
    position = np.column_stack([0.05 * np.sin(time), 0.02 * np.cos(3 * time), 0.001 * np.sin(40 * time)])
    session = Session(time, {"tool": Track(position)}).validate()
    unfiltered = compute_metrics(session, MetricSettings(lowpass_hz=15.0)).combined
    assert compute_metrics(session, MetricSettings(lowpass_hz=100.0)).combined == unfiltered
    filtered = compute_metrics(session, MetricSettings(lowpass_hz=6.0)).combined
    assert filtered["peak_speed"] < unfiltered["peak_speed"]


# ------------------------------------------------------------------ the batch
def test_extreme_session_is_graded_beside_the_others(tmp_path) -> None:
    write_session(_scaled(_session(2), 1.0), tmp_path / "in" / "good.parquet")
    write_session(_scaled(_session(2), 1e200), tmp_path / "in" / "huge.parquet")
    result = _score(str(tmp_path / "in"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    rows = {Path(r["file"]).name: r for r in _rows(tmp_path / "r" / "summary.csv")}
    assert rows["huge.parquet"]["gradable"] == "True" and 0 <= float(rows["huge.parquet"]["score"]) <= 100
    report = json.loads((tmp_path / "r" / "huge.json").read_text())
    good = json.loads((tmp_path / "r" / "good.json").read_text())
    assert report["metrics"]["path_length"]["value"] == pytest.approx(good["metrics"]["path_length"]["value"] * 1e200)
    # the generic rubric's scale-free metrics: the same motion 1e200 times larger costs the same points;
    # idle time is measured against an absolute speed (5 mm/s), so the huge motion is never idle
    for name in ("economy_of_motion", "ldlj", "sparc"):
        assert report["metrics"][name]["points_lost"] == pytest.approx(good["metrics"][name]["points_lost"], abs=1e-6)
    assert report["metrics"]["idle_fraction"]["value"] == 0.0 < good["metrics"]["idle_fraction"]["value"]


def test_unexpected_error_is_one_failed_file_and_the_summary_is_written(tmp_path, monkeypatch) -> None:
    for name in ("a", "b"):
        write_session(_session(), tmp_path / "in" / f"{name}.parquet")
    real = score_module.compute_metrics

    def broken(session, settings=None):
        if session.meta.get("trial") == 1 and not hasattr(broken, "done"):
            broken.done = True
            raise IndexError("index -1 is out of bounds")
        return real(session, settings)

    monkeypatch.setattr(score_module, "compute_metrics", broken)  # the batch grades with score.grade_session
    result = _score(str(tmp_path / "in"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 1, result.output
    assert "1 of 2 files failed" in result.stderr
    [failure] = _rows(tmp_path / "r" / "failures.csv")
    assert failure["file"].endswith("a.parquet")
    assert "unexpected error (IndexError: index -1 is out of bounds)" in failure["problem"]
    assert [Path(r["file"]).name for r in _rows(tmp_path / "r" / "summary.csv")] == ["b.parquet"]


def test_a_rubric_missing_a_field_says_so_without_dumping_the_file(tmp_path) -> None:
    data = yaml.safe_load((rubric_dir() / "generic.yaml").read_text())
    del data["task"]
    rubric = tmp_path / "notask.yaml"
    rubric.write_text(yaml.safe_dump(data))
    with pytest.raises(RubricError) as caught:
        load_rubric(rubric)
    assert str(caught.value) == f"{rubric}: field task: Field required"


@pytest.mark.parametrize(
    "edit, field",
    [
        ({"cap": float("inf")}, "field cap: Input should be a finite number"),
        ({"metrics.ldlj.center": float("nan")}, "field metrics.ldlj.center: Input should be a finite number"),
        ({"metrics.ldlj.weight": float("inf")}, "field metrics.ldlj.weight"),
        ({"metrics.ldlj.scale": 0}, "field metrics.ldlj.scale"),
        ({"levels": {"expert": 40.0, "intermediate": 60.0}}, "levels.intermediate (60.0) is above levels.expert"),
        ({f"metrics.{name}.weight": 0 for name in ("ldlj", "sparc", "economy_of_motion", "idle_fraction",
                                                   "bimanual_dexterity")},
         "needs at least one metric of weight > 0"),
        ({"max_share": 0.2}, "field metrics: Value error, economy_of_motion (group 'efficiency') hold"),
        ({"critical_errors": {"bleeding": "warn"}},
         "field critical_errors: Value error, bleeding: expected fail or {cap: <score, at least 0 and below 100>}, got 'warn'"),
        ({"critical_errors": {"failed": {"cap": 120}}}, "failed: expected fail or {cap: <score"),
        ({"critical_errors": {"slipped": "fail"}}, "unknown critical error kind(s) ['slipped']"),
        ({"cap": 0}, "field cap"),
        ({"metrics.ldlj.cap": -1}, "field metrics.ldlj.cap"),
        ({"settings": {"sparc_threshold": 2}}, "sparc_threshold must be between 0 and 1"),
        ({"settings": {"idle_speed": 0}}, "idle_speed must be in (0, 0.5] m/s"),
        ({"settings": {"lowpass_hz": -6}}, "lowpass_hz must be in (0, 100] Hz"),
        ({"settings": {"lowpass_hz": 1e9}}, "field settings: Value error, lowpass_hz must be in (0, 100] Hz, got 1000000000.0"),
        ({"settings": {"sparc_max_hz": 1e6}}, "sparc_max_hz must be in (0, 100] Hz"),
        ({"settings": {"force_threshold": 1e9}}, "force_threshold must be in [0, 1000] N"),
        ({"min_duration": -1}, "field min_duration"),
    ],
)
def test_bad_rubric_exits_2_naming_the_rubric_and_field(tmp_path, edit, field) -> None:
    data = yaml.safe_load((rubric_dir() / "generic.yaml").read_text())
    for key, value in edit.items():
        *parents, last = key.split(".")
        target = data
        for parent in parents:
            target = target[parent]
        target[last] = value
    rubric = tmp_path / "bad-rubric.yaml"
    rubric.write_text(yaml.safe_dump(data))
    write_session(_session(), tmp_path / "in" / "s.parquet")
    result = _score(str(tmp_path / "in"), "--out", str(tmp_path / "r"), "--rubric", str(rubric))
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: {rubric}: ") and field in result.stderr
    assert "Traceback" not in result.output and not (tmp_path / "r" / "failures.csv").exists()


def test_a_rubric_of_another_task_is_refused_unless_asked_for(tmp_path) -> None:
    write_session(_session(task="NeedleReach"), tmp_path / "in" / "reach.parquet")
    rubric = str(rubric_dir() / "SurgicalPath.yaml")
    # no session of the rubric's task at all: the wrong rubric (or a typo in its task:), said once
    result = _score(str(tmp_path / "in"), "--out", str(tmp_path / "r"), "--rubric", rubric)
    assert result.exit_code == 2, result.output
    assert result.stderr.startswith(f"error: --rubric {rubric} grades 'SurgicalPath' sessions, and none of these is one")
    assert "'NeedleReach'" in result.stderr and "--any-task" in result.stderr and "Traceback" not in result.output
    # some are: the others fail one by one
    write_session(_session(task="SurgicalPath"), tmp_path / "in" / "path.parquet")
    result = _score(str(tmp_path / "in"), "--out", str(tmp_path / "r"), "--rubric", rubric)
    assert result.exit_code == 1, result.output
    assert "reach.parquet: task 'NeedleReach', but the rubric grades 'SurgicalPath' sessions" in result.stderr
    assert "--any-task" in result.stderr
    (tmp_path / "in" / "path.parquet").unlink()
    result = _score(str(tmp_path / "in"), "--out", str(tmp_path / "r"), "--rubric", rubric, "--any-task")
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "reach.json").read_text())["rubric"] == "SurgicalPath"
    generic = str(rubric_dir() / "generic.yaml")  # made for any task
    assert _score(str(tmp_path / "in"), "--out", str(tmp_path / "g"), "--rubric", generic).exit_code == 0


def test_a_task_with_no_shipped_rubric_is_graded_by_the_generic_one_and_said_so(tmp_path) -> None:
    write_session(_session(task="Suturing"), tmp_path / "in" / "s.parquet")
    write_session(_session(1), tmp_path / "in" / "untasked.parquet")
    result = _score(str(tmp_path / "in"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "r" / "s.json").read_text())["rubric"] == "generic"
    assert "note: no shipped rubric for Suturing: graded by generic.yaml" in result.stdout
    assert "surgsim score calibrate" in result.stdout
    write_session(_session(task="NeedleReach"), tmp_path / "own" / "reach.parquet")
    assert "note:" not in _score(str(tmp_path / "own"), "--out", str(tmp_path / "r2")).stdout


def test_the_closing_line_names_only_the_files_written(tmp_path) -> None:
    short = Session(np.linspace(0.0, 0.1, 3), {"tool": Track(np.zeros((3, 3)))}, meta={"trainee": "t9"})
    write_session(short, tmp_path / "in" / "short.parquet")
    result = runner.invoke(app, ["score", str(tmp_path / "in"), "--out", str(tmp_path / "r"), "--no-progress", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "(summary.csv, failures.csv, per-session JSON)" in result.stdout
    assert not (tmp_path / "r" / "cohort.png").exists()


@pytest.mark.parametrize("samples, seconds", [(1, 0.0), (3, 3.0), (60, 0.59)])
def test_too_short_session_is_not_gradable_not_expert(tmp_path, samples, seconds) -> None:
    time = np.linspace(0.0, seconds, samples)
    position = np.column_stack([0.01 * time, np.zeros(samples), np.zeros(samples)])
    short = Session(time, {"tool": Track(position)}, meta={"trainee": "t9"})
    write_session(short, tmp_path / "in" / "short.parquet")
    write_session(_session(), tmp_path / "in" / "long.parquet")
    result = _score(str(tmp_path / "in"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "short.json").read_text())
    assert report["gradable"] is False and report["score"] is None and report["level"] is None
    assert ("sample(s); grading needs at least 4" if samples < 4 else "s or more") in report["reason"]
    assert "short.parquet: not gradable (" in result.stdout and "scored 1 session(s), 1 not gradable" in result.stdout
    rows = {Path(r["file"]).name: r for r in _rows(tmp_path / "r" / "summary.csv")}
    assert rows["short.parquet"]["gradable"] == "False" and rows["short.parquet"]["score"] == ""
    assert rows["long.parquet"]["gradable"] == "True" and rows["long.parquet"]["score"] != ""
    assert _rows(tmp_path / "r" / "failures.csv") == []
    with pytest.raises(NotGradable):
        score_session(short)


def test_same_file_names_in_two_inputs_get_two_reports(tmp_path) -> None:
    write_session(_session(1), tmp_path / "day1" / "s.parquet")
    write_session(_session(2), tmp_path / "day2" / "s.parquet")
    result = _score(str(tmp_path / "day1"), str(tmp_path / "day2"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    for day in ("day1", "day2"):
        assert json.loads((tmp_path / "r" / day / "s.json").read_text())["file"] == str(tmp_path / day / "s.parquet")
    files = [tmp_path / "day1" / "s.parquet", tmp_path / "day2" / "s.parquet"]
    result = _score(*map(str, files), str(files[0]), "--out", str(tmp_path / "f"))  # a file given twice: once
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "f").as_posix() for p in (tmp_path / "f").rglob("*.json")) == [
        "day1/s.json", "day2/s.json"]
    assert len(_rows(tmp_path / "f" / "summary.csv")) == 2


def test_report_names_keep_the_whole_file_name_and_never_collide(tmp_path) -> None:
    names = ["a.1", "a.2", "cohort", "summary", "failures"]
    for seed, name in enumerate(names):
        write_session(_session(seed), tmp_path / "in" / f"{name}.parquet")
    out = tmp_path / "r"
    result = runner.invoke(app, ["score", str(tmp_path / "in"), "--out", str(out), "--no-progress", "-j", "1"])
    assert result.exit_code == 0, result.output
    reports = {Path(json.loads(p.read_text())["file"]).name: p.name for p in out.glob("*.json")}
    assert reports == {"a.1.parquet": "a.1.json", "a.2.parquet": "a.2.json", "cohort.parquet": "cohort~2.json",
                       "summary.parquet": "summary.json", "failures.parquet": "failures.json"}
    assert sorted(p.name for p in out.glob("*.png")) == [
        "a.1.png", "a.2.png", "cohort.png", "cohort~2.png", "failures.png", "summary.png"]
    assert len(_rows(out / "summary.csv")) == 5 and _rows(out / "failures.csv") == []


def test_metadata_of_any_shape_is_graded_and_plotted(tmp_path) -> None:
    # meta is any JSON: a task that is not text gets the generic rubric, trials that are not numbers
    # come after the numbered ones in the cohort plot
    for name, meta in {"a": {"task": ["SurgicalPath"]}, "b": {"trial": "second"}, "c": {"trial": {"n": 3}}, "d": {}}.items():
        session = _session(4)
        session.meta.update(meta)
        write_session(session, tmp_path / "in" / f"{name}.parquet")
    out = tmp_path / "r"
    result = runner.invoke(app, ["score", str(tmp_path / "in"), "--out", str(out), "--no-progress", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "a.json").read_text())["rubric"] == "generic"
    assert (out / "cohort.png").read_bytes()[:4] == b"\x89PNG" and _rows(out / "failures.csv") == []


def test_no_two_sessions_share_a_report_path(tmp_path) -> None:
    for name in ("a", "a.parquet", "b.json/c.parquet", "b.parquet", "x/.parquet", "x/.parquet.parquet",
                 "cohort.png/d.parquet"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).touch()
    found, failures = find_sessions([tmp_path / "a", tmp_path])
    stems = {f.relative_to(tmp_path).as_posix(): stem.as_posix() for f, stem in found}
    assert stems == {"a": "a", "a.parquet": "a~2", "b.json/c.parquet": "b.json/c", "b.parquet": "b~2",
                     "x/.parquet": "x/.parquet", "x/.parquet.parquet": "x/.parquet~2"}
    [failure] = failures
    assert "cohort.png/d.parquet: its report folder 'cohort.png' has the name of a file the batch writes" in str(failure)


def test_measuring_writes_no_reports_so_a_batch_file_folder_name_is_no_failure(tmp_path) -> None:
    write_session(_session(1), tmp_path / "summary.csv" / "x.parquet")
    write_session(_session(2), tmp_path / "y.parquet")
    batch = batch_module.measure_folder([tmp_path], workers=1, progress=False)
    assert batch.failures == []
    assert sorted(Path(m.source).relative_to(tmp_path).as_posix() for m in batch.results) == [
        "summary.csv/x.parquet", "y.parquet"]
    _, failures = find_sessions([tmp_path])  # grading would write summary.csv there: it still refuses
    assert [Path(f.file).relative_to(tmp_path).as_posix() for f in failures] == ["summary.csv/x.parquet"]


def test_positions_near_1e307_give_null_shown_values_not_a_crash(tmp_path) -> None:
    write_session(_scaled(_session(3), 1e307), tmp_path / "in" / "far.parquet")
    write_session(_session(3), tmp_path / "in" / "near.parquet")
    verify_session(tmp_path / "in" / "far.parquet")
    result = _score(str(tmp_path / "in"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r" / "far.json").read_text())
    length = report["metrics"]["path_length"]  # about 3e306 m: finite in m, inf in mm
    assert length["value"] > 1e306 and length["shown"] is None and length["shown_unit"] == "mm"
    row = {Path(r["file"]).name: r for r in _rows(tmp_path / "r" / "summary.csv")}["far.parquet"]
    assert row["path_length_mm"] == "" and row["score"] != ""


@pytest.mark.parametrize("inputs", [["nonexistent"], ["IN", "nonexistent"]])
def test_a_missing_input_is_a_usage_error_and_nothing_is_written(tmp_path, monkeypatch, inputs) -> None:
    write_session(_session(), tmp_path / "IN" / "s.parquet")
    monkeypatch.chdir(tmp_path)
    for command in (["report"], ["calibrate", "--label", "grs"], ["evaluate", "--label", "grs"]):
        result = runner.invoke(app, ["score", *command, *inputs, "--out", "r", "--no-progress", "-j", "1"])
        assert result.exit_code == 2, (command, result.output)
        assert result.output == "error: nonexistent: no such file or folder\n", command
        assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_files_are_written_with_the_umask(tmp_path, umask) -> None:
    old = os.umask(umask)
    try:
        path = atomic_write_text(tmp_path / "x.txt", "hello")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask
    assert [p.name for p in tmp_path.iterdir()] == ["x.txt"]


@pytest.mark.slow
def test_every_command_runs_without_click() -> None:
    # typer >= 0.16 no longer depends on click: a plain `pip install .` may not have it
    code = (
        "from surgsim.cli import app\n"
        "for command in (['score', '--help'], ['score', 'report', '--help'], ['--help']):\n"
        "    try:\n"
        "        app(command)\n"
        "    except SystemExit as exc:\n"
        "        assert exc.code == 0, (command, exc.code)\n"
        "print('ok')\n"
    )
    assert run_python(code, blocked=("click",)).strip().endswith("ok")


def test_reusing_out_says_that_earlier_reports_are_still_there(tmp_path) -> None:
    write_session(_session(1), tmp_path / "day1" / "a.parquet")
    write_session(_session(2), tmp_path / "day2" / "b.parquet")
    assert "note:" not in _score(str(tmp_path / "day1"), "--out", str(tmp_path / "r")).stdout
    result = _score(str(tmp_path / "day2"), "--out", str(tmp_path / "r"))
    assert result.exit_code == 0, result.output
    assert "also holds 1 report(s) of sessions not in this run (e.g. a.json)" in result.stdout
    (tmp_path / "r" / "a.json").unlink()
    (tmp_path / "r" / "assessed.json").write_text('[{"file": "x", "index": 0.1}]')  # no session report
    assert "note:" not in _score(str(tmp_path / "day2"), "--out", str(tmp_path / "r")).stdout
