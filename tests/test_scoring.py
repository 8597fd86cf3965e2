"""Rubric, composite score, calibration, cross-validation, reports and the `surgsim score` CLI."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import yaml
from simhelpers import run_python
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.scoring.calibrate import CalibrationError, Measured, evaluate, fit_rubric, limit_shares
from surgsim.scoring.metrics import compute_metrics
from surgsim.scoring.rubric import (
    GENERIC, MetricReference, Rubric, RubricError, group_shares, load_rubric, rubric_dir, save_rubric,
)
from surgsim.scoring.score import ScoreError, score_metrics, score_session
from surgsim.scoring.synthetic import synthetic_cohort, synthetic_session
from surgsim.sessions import read_session, write_session

runner = CliRunner()


def _measured(sessions) -> list[Measured]:
    return [Measured(f"s{i}", compute_metrics(s).combined, s.meta) for i, s in enumerate(sessions)]


@pytest.fixture(scope="module")
def cohort() -> list[Measured]:
    return _measured(synthetic_cohort(np.random.default_rng(1), trainees=9, trials=3))


def _hand_rubric() -> Rubric:
    return Rubric(
        task="hand",
        cap=4.0,
        metrics={
            "path_length": MetricReference(weight=1.0, center=0.2, scale=0.02, better="lower"),
            "ldlj": MetricReference(weight=3.0, center=-6.0, scale=1.0, better="higher"),
            "mean_speed": MetricReference(weight=0.0, center=0.05, scale=0.01, better="both"),
            "success": MetricReference(weight=2.0, center=1.0, scale=0.25, better="higher"),
        },
    )


def _lost(x: float) -> float:
    """The fraction of its points a metric loses at x = penalty / cap, written out by hand."""
    return x / (1 + x**4) ** 0.25


def test_composite_score_computed_by_hand() -> None:
    # path 3 SD longer than experts -> x = 3/4 of the cap; ldlj better than experts -> no penalty;
    # success unavailable -> left out, weights 1 + 3 renormalised: path costs 100 * 1/4 * f(3/4)
    graded = score_metrics({"path_length": 0.26, "ldlj": -4.0, "mean_speed": 0.2, "success": None}, _hand_rubric())
    assert graded.metrics["path_length"].points_lost == pytest.approx(25 * _lost(0.75))  # 17.50
    assert graded.metrics["ldlj"].points_lost == 0.0
    assert graded.score == pytest.approx(100 - 25 * _lost(0.75))
    assert graded.metric_score == graded.score and graded.critical_errors == []
    assert graded.level == "expert"
    assert graded.unavailable == ["success"]
    assert "mean_speed" not in graded.metrics  # weight 0: shown in the rubric, not graded
    [top] = graded.top_costs()
    assert top.explain() == "path length: 260 mm, 3.0 SD higher than experts (200 ± 20 mm); cost 17.5 points"
    # far beyond the cap a metric loses nearly all its points, never more
    capped = score_metrics({"path_length": 1.0, "ldlj": -30.0}, _hand_rubric())
    assert capped.score == pytest.approx(100 - 25 * _lost(10.0) - 75 * _lost(6.0))
    assert 0 < capped.score < 0.05
    assert capped.level == "novice"


def test_points_fall_smoothly_and_a_metric_cap_overrides_the_rubric_cap() -> None:
    rubric = _hand_rubric()
    scores = [score_metrics({"path_length": 0.2 + 0.02 * z, "ldlj": -6.0}, rubric).score for z in range(0, 13)]
    steps = -np.diff(scores)
    assert (steps > 0).all()  # every further SD costs more, with no cliff: the largest step is the first ones'
    assert steps.max() == pytest.approx(steps[0], rel=0.02) and steps[-1] > 0.001
    own_cap = rubric.metrics["path_length"].model_copy(update={"cap": 8.0})
    wide = rubric.model_copy(update={"metrics": {**rubric.metrics, "path_length": own_cap}})
    graded = score_metrics({"path_length": 0.26, "ldlj": -6.0}, wide)
    assert graded.metrics["path_length"].points_lost == pytest.approx(25 * _lost(3 / 8))


def test_both_directions_and_nothing_to_grade() -> None:
    rubric = Rubric(task="t", metrics={"mean_speed": MetricReference(weight=1, center=0.05, scale=0.01, better="both")})
    fast = score_metrics({"mean_speed": 0.07}, rubric)
    slow = score_metrics({"mean_speed": 0.03}, rubric)
    assert fast.score == pytest.approx(slow.score) == pytest.approx(100 * (1 - _lost(0.5)))
    with pytest.raises(ScoreError, match="mean_speed"):
        score_metrics({"mean_speed": None}, rubric)


@pytest.mark.parametrize("rubric_of", ["calibrated", "shipped generic"])
def test_synthetic_skill_orders_scores_and_levels(cohort, rubric_of) -> None:
    rubric = fit_rubric(cohort, "synthetic", label="grs") if rubric_of == "calibrated" else None
    rng = np.random.default_rng(2)
    scores, levels = {}, {}
    for impairment in (0.0, 0.5, 1.0):
        graded = [score_session(synthetic_session(rng, impairment), rubric)[1] for _ in range(3)]
        scores[impairment] = np.mean([g.score for g in graded])
        levels[impairment] = {g.level for g in graded}
    assert scores[0.0] > scores[0.5] > scores[1.0]
    assert levels[0.0] == {"expert"}
    assert levels[1.0] == {"novice"}


@pytest.mark.parametrize("cv", ["louo", "loso"])
def test_calibrate_then_evaluate_gives_positive_spearman(cohort, cv) -> None:
    result = evaluate(cohort, "grs", cv)
    assert result.folds == (9 if cv == "louo" else 3)
    assert result.n == len(cohort)
    assert result.spearman > 0.6
    assert result.level_accuracy is not None and result.level_accuracy > 0.5
    held_out = {p["group"] for p in result.predictions}
    assert len(held_out) == result.folds


def test_calibration_fits_expert_reference_and_weights(cohort) -> None:
    rubric = fit_rubric(cohort, "synthetic", label="grs", robust=False)
    experts = [m for m in cohort if m.skill == "E"]
    lengths = np.array([m.values["path_length"] for m in experts])
    assert rubric.metrics["path_length"].center == pytest.approx(lengths.mean())
    assert rubric.metrics["path_length"].scale == pytest.approx(max(lengths.std(ddof=1), 0.05 * lengths.mean()))
    assert sum(r.weight for r in rubric.metrics.values()) == pytest.approx(len(rubric.metrics), rel=1e-3)
    assert "critical_contacts" not in rubric.metrics  # no session has the channel
    assert rubric.levels.intermediate <= rubric.levels.expert


def test_share_limit_cuts_and_shares_out_the_excess(cohort) -> None:
    np.testing.assert_allclose(limit_shares(np.array([8.0, 1.0, 1.0]), 0.4), [0.4, 0.3, 0.3])
    np.testing.assert_allclose(limit_shares(np.array([6.0, 3.0, 1.0, 0.0]), 0.4), [0.4, 0.4, 0.2, 0.0])
    np.testing.assert_allclose(limit_shares(np.array([1.0, 0.0, 0.0, 0.0]), 0.4), [0.4, 0.2, 0.2, 0.2])
    rubric = fit_rubric(cohort, "synthetic", label="grs", max_share=0.3)
    assert max(group_shares(rubric.metrics).values()) <= 0.3 + 1e-3
    with pytest.raises(CalibrationError, match=r"max_share 0.4 needs at least 3 groups of metrics; ldlj, sparc make 1"):
        fit_rubric(cohort, "synthetic", label="grs", metrics=["ldlj", "sparc"])


def test_rubric_round_trip_and_errors(tmp_path) -> None:
    path = save_rubric(_hand_rubric(), tmp_path / "r.yaml", "made by hand\nfor a test")
    assert path.read_text().startswith("# made by hand\n# for a test\n")
    assert load_rubric(path) == _hand_rubric()
    data = yaml.safe_load(path.read_text())
    data["metrics"]["path_length"]["scale"] = -1
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(RubricError) as info:
        load_rubric(tmp_path / "bad.yaml")
    message = str(info.value)
    assert "bad.yaml" in message and "metrics.path_length.scale" in message and "(got -1)" in message
    data["metrics"]["path_length"]["scale"] = 0.02
    data["metrics"]["jerkiness"] = data["metrics"].pop("ldlj")
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(RubricError, match=r"bad.yaml: field metrics: .*unknown metric\(s\) \['jerkiness'\]"):
        load_rubric(tmp_path / "bad.yaml")
    with pytest.raises(RubricError, match="no such rubric file"):
        load_rubric(tmp_path / "missing.yaml")


def test_shipped_rubrics_say_how_they_were_made() -> None:
    import surgsim

    tasks = {env_id.split("/")[1].removesuffix("-v0") for env_id in surgsim.REGISTERED if "Discrete" not in env_id}
    for task in sorted(tasks) + [GENERIC]:
        path = rubric_dir() / f"{task}.yaml"
        rubric = load_rubric(path)
        assert rubric.task == task
        assert "surgsim.scoring.make_rubrics" in path.read_text().splitlines()[0]
        assert any(ref.weight > 0 for ref in rubric.metrics.values())


# ------------------------------------------------------------------ CLI
@pytest.fixture(scope="module")
def session_dir(tmp_path_factory) -> Path:
    """Labelled synthetic sessions of 6 trainees x 2 trials, in two subfolders."""
    folder = tmp_path_factory.mktemp("sessions")
    for s in synthetic_cohort(np.random.default_rng(5), trainees=6, trials=2):
        sub = "a" if s.meta["trainee"] < "s03" else "b"
        write_session(s, folder / sub / f"{s.meta['trainee']}-{s.meta['trial']:04d}.parquet")
    return folder


def test_cli_scores_a_folder_reports_bad_files_and_exits_non_zero(session_dir, tmp_path) -> None:
    sessions = tmp_path / "in"
    good = sorted(session_dir.rglob("*.parquet"))[:3]
    for f in good:
        (sessions / f.name).parent.mkdir(parents=True, exist_ok=True)
        (sessions / f.name).write_bytes(f.read_bytes())
    (sessions / "corrupt.parquet").write_bytes(b"PAR1 this is not a session")
    table = pq.read_table(good[0])  # one value edited after writing: the digest no longer matches
    x = table.column("tool_x").to_numpy().copy()
    x[10] += 1e-3
    pq.write_table(table.set_column(table.column_names.index("tool_x"), "tool_x", [x]), sessions / "tampered.parquet")
    out = tmp_path / "report"
    result = runner.invoke(app, ["score", str(sessions), "--out", str(out), "-j", "2", "--no-progress"])
    assert result.exit_code == 1, result.output
    assert "2 of 5 files failed" in result.stderr
    assert re.search(r"corrupt\.parquet: not a Parquet file", result.stderr)
    assert re.search(r"tampered\.parquet: integrity check failed", result.stderr)
    for f in good:
        report = json.loads((out / f.with_suffix(".json").name).read_text())
        assert report["file"] == str(sessions / f.name)
        # the batch gives each file the grade score_session gives it on its own
        _, expected = score_session(read_session(sessions / f.name))
        assert report["score"] == pytest.approx(expected.score, abs=0.005)
        assert report["level"] == expected.level
        assert report["top_costs"] == [m.explain() for m in expected.top_costs()]
        length = report["metrics"]["path_length"]
        assert length["unit"] == "m" and length["shown_unit"] == "mm"
        assert length["shown"] == pytest.approx(length["value"] * 1e3)
        assert report["metrics"]["critical_contacts"] == {"value": None, "unit": "count", "available": False}
        assert (out / f.with_suffix(".png").name).read_bytes()[:4] == b"\x89PNG"
        assert f"{f.name}: {report['score']:.1f} ({report['level']})" in result.stdout
    with open(out / "summary.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert sorted(r["file"] for r in rows) == sorted(str(sessions / f.name) for f in good)
    assert "path_length_mm" in rows[0] and rows[0]["critical_contacts"] == ""
    with open(out / "failures.csv") as handle:
        failed = [r["file"] for r in csv.DictReader(handle)]
    assert sorted(failed) == [str(sessions / "corrupt.parquet"), str(sessions / "tampered.parquet")]
    assert (out / "cohort.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_mirrors_subfolders_and_succeeds_on_good_input(session_dir, tmp_path) -> None:
    out = tmp_path / "report"
    result = runner.invoke(app, ["score", str(session_dir), "--out", str(out), "--no-figures", "-j", "1", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert (out / "a" / "s00-0001.json").is_file() and (out / "b" / "s05-0002.json").is_file()
    assert not list(out.rglob("*.png"))


def test_cli_calibrate_then_evaluate(session_dir, tmp_path) -> None:
    rubric = tmp_path / "rubric.yaml"
    result = runner.invoke(app, ["score", "calibrate", str(session_dir), "--label", "grs", "--out", str(rubric),
                                 "--no-progress", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert load_rubric(rubric).task == "synthetic"
    assert "labels.skill E" in rubric.read_text().splitlines()[1]
    result = runner.invoke(app, ["score", "evaluate", str(session_dir), "--label", "grs", "--cv", "louo",
                                 "--no-progress", "-j", "1", "--out", str(tmp_path / "eval.json")])
    assert result.exit_code == 0, result.output
    rho = float(re.search(r"Spearman rho \(score vs grs\): ([-\d.]+)", result.stdout).group(1))
    assert rho > 0.5
    assert json.loads((tmp_path / "eval.json").read_text())["folds"] == 6
    scored = runner.invoke(app, ["score", str(session_dir / "a"), "--rubric", str(rubric), "--out",
                                 str(tmp_path / "r"), "--no-figures", "--no-progress", "-j", "1"])
    assert scored.exit_code == 0, scored.output
    assert json.loads((tmp_path / "r" / "s00-0001.json").read_text())["rubric"] == "synthetic"


def test_cli_calibrate_says_when_no_session_can_grade_intermediate(session_dir, tmp_path, monkeypatch) -> None:
    import surgsim.scoring.calibrate as calibrate
    from surgsim.scoring.rubric import Levels

    fit = calibrate.fit_rubric
    monkeypatch.setattr(calibrate, "fit_rubric", lambda *a, **k: fit(*a, **k).model_copy(
        update={"levels": Levels(expert=93.0, intermediate=93.0)}))
    result = runner.invoke(app, ["score", "calibrate", str(session_dir), "--label", "grs", "--out",
                                 str(tmp_path / "r.yaml"), "--no-progress", "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "levels expert >= 93.0, intermediate >= 93.0" in result.stdout
    assert "note: the intermediate and expert thresholds coincide, so no session grades intermediate" in result.stdout


def test_cli_says_which_sessions_have_no_label_and_the_level_accuracy_floor(session_dir, tmp_path) -> None:
    import shutil

    folder = tmp_path / "s"
    shutil.copytree(session_dir, folder)
    unlabelled = synthetic_session(np.random.default_rng(7), 0.2, trainee="s77", trial=1)
    unlabelled.meta["labels"] = {"skill": "E"}
    write_session(unlabelled, folder / "s77-0001.parquet")
    result = runner.invoke(app, ["score", "evaluate", str(folder), "--label", "grs", "--no-progress", "-j", "1"])
    assert result.exit_code == 0, result.output
    total = len(list(folder.rglob("*.parquet")))
    assert f"note: 1 of {total} session(s) have no numeric labels.grs and are left out: s77-0001.parquet" in result.stdout
    calibrated = runner.invoke(app, ["score", "calibrate", str(folder), "--label", "grs", "--out", str(tmp_path / "r.yaml"),
                                     "--no-progress", "-j", "1"])  # an expert all the same: a reference, no weight
    assert "have no numeric labels.grs and weigh nothing (they still shape the expert references" in calibrated.stdout
    match = re.search(r"level accuracy: [\d.]+ \(calling every session the commonest level: ([\d.]+)\)", result.stdout)
    skills = [read_session(f).meta["labels"]["skill"] for f in folder.rglob("s[0-6]*.parquet")]
    assert match and float(match.group(1)) == pytest.approx(max(map(skills.count, set(skills))) / len(skills), abs=5e-4)


@pytest.mark.parametrize(
    "args, message",
    [
        (["score", "evaluate", "{dir}", "--label", "grs", "--cv", "kfold"], "--cv must be louo or loso, got 'kfold'"),
        (["score", "{empty}", "--out", "{tmp}/r"], "no session files (*.parquet) in"),
        (["score", "{dir}", "--out", "{tmp}/r", "--rubric", "{tmp}/nope.yaml"], "nope.yaml: no such rubric file"),
        (["score", "calibrate", "{dir}", "--label", "age", "--out", "{tmp}/x.yaml"], None),
        (["score", "evaluate", "{dir}", "{mixed}", "--label", "grs"], "the sessions are from several tasks"),
        (["score", "{dir}", "--out", "{tmp}/r", "--rubric", "{dir}"], "a folder, not a rubric file"),
        (["score", "{journal}", "--out", "{tmp}/r"], "1 unfinished recording journal(s) (*.partial, e.g. "),
        (["score", "evaluate", "{one}", "--label", "grs", "--cv", "loso"],
         "--cv loso leaves one trial index (meta trial, else episode) out at a time, and every session has the same "
         "one ('1'); it needs at least two; --cv louo may have them"),
    ],
)
def test_cli_errors_exit_2_with_a_clear_message(session_dir, tmp_path, args, message) -> None:
    (tmp_path / "empty").mkdir()
    other = synthetic_session(np.random.default_rng(1), 0.5, trainee="s99", trial=1)
    other.meta["task"] = "Incision"  # a session of another task than the synthetic ones
    write_session(other, tmp_path / "mixed" / "s99-0001.parquet")
    (tmp_path / "journal").mkdir()
    (tmp_path / "journal" / "t1-0001.parquet.partial").write_bytes(b"")
    for seed in range(4):  # four trainees, every session trial 1
        write_session(synthetic_session(np.random.default_rng(seed), seed / 4, trainee=f"t{seed}", trial=1),
                      tmp_path / "one" / f"t{seed}.parquet")
    args = [a.format(dir=session_dir, empty=tmp_path / "empty", tmp=tmp_path, mixed=tmp_path / "mixed",
                     journal=tmp_path / "journal", one=tmp_path / "one") for a in args]
    result = runner.invoke(app, [*args, "--no-progress"])
    if message is None:  # skill labels exist, so calibration works, but weights need the label
        assert result.exit_code == 2, result.output
        assert "labels.age" in result.stderr
    else:
        assert result.exit_code == 2, result.output
        assert message in result.stderr


def test_plan_from_a_folder_that_is_no_history_says_what_a_history_is(tmp_path) -> None:
    (tmp_path / "report").mkdir()
    result = runner.invoke(app, ["score", "plan", "t", "--history", str(tmp_path / "report"), "--out", str(tmp_path / "p")])
    assert result.exit_code == 2, result.output
    assert "no attempts of any trainee; a history folder is the one `surgsim score DIR" in result.stderr


@pytest.mark.slow
def test_scorer_never_imports_pybullet() -> None:
    # the scorer grades sessions recorded elsewhere, on machines without a simulator
    code = (
        "import sys\n"
        "import surgsim, surgsim.cli\n"
        "import surgsim.scoring.score, surgsim.scoring.calibrate, surgsim.scoring.batch, surgsim.scoring.report\n"
        "import surgsim.scoring.synthetic, surgsim.sessions\n"
        "assert 'pybullet' not in sys.modules, 'pybullet imported'\n"
        "print('ok')\n"
    )
    assert run_python(code).strip() == "ok"


def test_simulator_sessions_graded_by_their_task_rubric(tmp_path) -> None:
    from surgsim.scoring.make_rubrics import IMPAIRMENTS, record_task

    record_task("surgsim/NeedleReach-v0", tmp_path, range(100, 103))  # seeds not used to make the rubric
    graded = {}
    for path in sorted(tmp_path.glob("*.parquet")):
        session = read_session(path)
        graded.setdefault(session.meta["labels"]["impairment"], []).append(score_session(session)[1])
    assert set(graded) == set(IMPAIRMENTS)
    assert {g.task for gs in graded.values() for g in gs} == {"NeedleReach"}
    mean = {k: np.mean([g.score for g in gs]) for k, gs in graded.items()}
    assert mean[0.0] > mean[0.5] > mean[1.0]
    assert {g.level for g in graded[0.0]} == {"expert"}


def test_summary_puts_tissue_damage_in_its_task_unit_column() -> None:
    from surgsim.scoring.report import metric_columns, summary_row

    def report(task: str, shown: float | None) -> dict:
        item = {"value": None if shown is None else shown * 1e-3, "available": shown is not None, "shown": shown}
        return {"task": task, "top_costs": [], "critical_errors": [], "metrics": {"tissue_damage": item}}

    columns = metric_columns()
    assert {"tissue_damage_mm2", "tissue_damage_mm"} <= set(columns) and not any("si" in c.split("_") for c in columns)
    assert "relative_acceleration_per_s" in columns and not any("/" in c for c in columns)
    assert summary_row(report("SurgicalPath", 120.0))["tissue_damage_mm2"] == 120.0
    assert summary_row(report("Incision", 1.6))["tissue_damage_mm"] == 1.6
    assert not any(k.startswith("tissue_damage") for k in summary_row(report("NeedleReach", None)))
    # float residue of a zero swept area does not show; a meaningful value keeps its digits
    assert summary_row(report("SurgicalPath", 1.4e-13))["tissue_damage_mm2"] == 0.0
    assert str(summary_row(report("SurgicalPath", -1.4e-13))["tissue_damage_mm2"]) == "0.0"
    assert summary_row(report("SurgicalPath", 0.01234))["tissue_damage_mm2"] == 0.01234


def test_cohort_figure_orders_attempts_as_made_and_keeps_each_trainees_style(tmp_path, monkeypatch) -> None:
    import surgsim.scoring.report as report

    figures = []
    monkeypatch.setattr(report, "_save_png", lambda path, plt, figure: figures.append(figure) or path)

    def row(task, trainee, score, when, file, gradable=True):
        return {"task": task, "trainee": trainee, "score": score, "level": "novice", "gradable": gradable,
                "recorded_at": when, "trial": None, "file": file}

    rows = [  # bob improved; his later folder sorts first by name ("week10" < "week9")
        row("A", "bob", 90.0, "2026-01-09T10:00:00.000+00:00", "week10/bob-0001.parquet"),
        row("A", "bob", 20.0, "2026-01-02T10:00:00.000+00:00", "week9/bob-0001.parquet"),
        row("A", "amy", 50.0, "2026-01-02T11:00:00.000+00:00", "week9/amy-0001.parquet"),
        row("B", "bob", 60.0, "2026-01-02T12:00:00.000+00:00", "week9/bob-0002.parquet"),
        row("B", "bob", None, "2026-01-02T13:00:00.000+00:00", "week9/bob-0003.parquet", gradable=False),
    ]
    report.cohort_figure(tmp_path / "cohort.png", rows)
    panels = {ax.get_title().split(":")[0]: ax for ax in figures[0].axes}
    lines = {task: {ln.get_label(): ln for ln in ax.lines if not ln.get_label().startswith("_")}
             for task, ax in panels.items()}
    assert list(lines["A"]["bob"].get_ydata()) == [20.0, 90.0]
    for attribute in ("get_linestyle", "get_color"):  # bob looks the same in both panels
        assert getattr(lines["A"]["bob"], attribute)() == getattr(lines["B"]["bob"], attribute)()
    assert "1 session (1 more not gradable)" in panels["B"].get_title()


def test_summary_shows_each_metric_to_a_ten_thousandth_of_its_resolution() -> None:
    from surgsim.scoring.report import summary_row

    def item(shown: float) -> dict:
        return {"value": shown * 1e-3, "available": True, "shown": shown}

    row = summary_row({"task": "NeedleReach", "top_costs": [], "critical_errors": [],
                       "metrics": {"path_length": item(71.2345678), "workspace_volume": item(0.0151013)}})
    assert row["path_length_mm"] == 71.2346  # resolution 2 mm
    assert row["workspace_volume_cm3"] == 0.0151  # resolution 1 cm^3, far above a NeedleReach reach's volume
    cut = summary_row({"task": "Incision", "top_costs": [], "critical_errors": [],
                       "metrics": {"tissue_damage": item(4.7907956359)}})
    assert cut["tissue_damage_mm"] == 4.790796  # no more than 6 decimals


def test_explanations_show_counts_whole_and_small_departures_unrounded() -> None:
    from surgsim.scoring.rubric import MetricReference
    from surgsim.scoring.score import MetricScore, penalty

    ref = MetricReference(weight=1.0, center=12.0, scale=2.5, better="lower")
    z, pen = penalty(13.0, ref)
    assert MetricScore("movements", 13.0, z, pen, 1.0, ref).explain() == (
        "number of movements: 13, 0.4 SD higher than experts (12 ± 2.5); cost 1.0 points")
    ref = MetricReference(weight=1.0, center=0.2, scale=0.05, better="lower")
    z, pen = penalty(0.202, ref)  # z = 0.04: "0.0 SD higher" would read as no departure
    assert "0.04 SD higher than experts" in MetricScore("path_length", 0.202, z, pen, 0.2, ref).explain()
