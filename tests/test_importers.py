"""Importer round trips on fixtures written here: JIGSAWS kinematics (76 columns, meta file) and tracker CSV."""

from __future__ import annotations

import re

import numpy as np
import pytest
from scipy.spatial.transform import Rotation
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.sessions import ImportFailed, SessionError, import_csv, import_jigsaws, read_session
from surgsim.sessions.importers import JIGSAWS_SUBSCORES, UnmatchedTrials, read_jigsaws_meta

runner = CliRunner()
FRAMES = 12


def jigsaws_arms(seed: int) -> np.ndarray:
    """(FRAMES, 4, 19) arm values: position, rotation matrix (row-major), velocities, gripper."""
    rng = np.random.default_rng(seed)
    arms = np.zeros((FRAMES, 4, 19))
    arms[:, :, 0:3] = rng.uniform(-0.1, 0.1, (FRAMES, 4, 3))
    arms[:, :, 3:12] = Rotation.random(FRAMES * 4, random_state=seed).as_matrix().reshape(FRAMES, 4, 9)
    arms[:, :, 12:18] = rng.normal(size=(FRAMES, 4, 6))
    arms[:, :, 18] = rng.uniform(-0.5, 1.0, (FRAMES, 4))
    return arms


def write_jigsaws(root, trials: dict[str, np.ndarray], meta_lines: list[str]) -> None:
    """A JIGSAWS task folder: kinematics/AllGestures/<trial>.txt and meta_file_Suturing.txt."""
    kinematics = root / "kinematics" / "AllGestures"
    kinematics.mkdir(parents=True)
    for name, arms in trials.items():
        lines = ["     ".join(f"{v:.10e}" for v in frame.ravel()) for frame in arms]
        (kinematics / f"{name}.txt").write_text("\n".join(lines) + "\n")
    (root / "meta_file_Suturing.txt").write_text("\n".join(meta_lines) + "\n")


def test_jigsaws_round_trip(tmp_path):
    arms = {"Suturing_B001": jigsaws_arms(1), "Suturing_C003": jigsaws_arms(2)}
    # real meta files: tab-separated, CRLF, two empty columns; others may be separated by spaces
    write_jigsaws(tmp_path / "Suturing", arms, ["Suturing_B001\t\tN\t13\t\t2\t2\t2\t2\t3\t2\r",
                                                "Suturing_C003 E 27 5 4 5 4 5 4"])
    written = import_jigsaws(tmp_path / "Suturing", tmp_path / "out", progress=False)
    assert [p.name for p in written] == ["Suturing_B001.parquet", "Suturing_C003.parquet"]

    session = read_session(tmp_path / "out" / "Suturing_B001.parquet")
    np.testing.assert_allclose(session.time, np.arange(FRAMES) / 30.0)
    for track, column in (("left", 2), ("right", 3)):  # patient-side arms: columns 39-57 and 58-76
        values = arms["Suturing_B001"][:, column]
        got = session.tracks[track]
        np.testing.assert_allclose(got.position, values[:, 0:3], rtol=1e-9)
        np.testing.assert_allclose(got.gripper, values[:, 18], rtol=1e-9)
        matrices = Rotation.from_quat(got.orientation).as_matrix().reshape(FRAMES, 9)
        np.testing.assert_allclose(matrices, values[:, 3:12], atol=1e-9)
        assert (got.orientation[:, 3] >= 0).all()
    meta = session.meta
    assert meta["trainee"] == "B" and meta["trial"] == 1 and meta["task"] == "Suturing"
    assert meta["sampling_rate_hz"] == 30.0 and meta["source"]["importer"] == "jigsaws"
    assert meta["labels"] == {"skill": "N", "grs": 13, **dict(zip(JIGSAWS_SUBSCORES, [2, 2, 2, 2, 3, 2]))}
    other = read_session(tmp_path / "out" / "Suturing_C003.parquet").meta
    assert other["trainee"] == "C" and other["trial"] == 3 and other["labels"]["skill"] == "E"


def test_jigsaws_trial_without_labels_and_a_bad_trial(tmp_path):
    bad = jigsaws_arms(3).reshape(FRAMES, 76)[:, :75]  # one column short
    write_jigsaws(tmp_path / "S", {"Suturing_D001": jigsaws_arms(4)}, [])
    (tmp_path / "S" / "kinematics" / "AllGestures" / "Suturing_D002.txt").write_text(
        "\n".join(" ".join(map(str, row)) for row in bad)
    )
    with pytest.raises(ImportFailed) as caught, pytest.warns(UnmatchedTrials, match="Suturing_D001$"):
        import_jigsaws(tmp_path / "S", tmp_path / "out", progress=False)
    assert [p.name for p in caught.value.written] == ["Suturing_D001.parquet"]
    assert caught.value.failures == [f"{tmp_path / 'S' / 'kinematics' / 'AllGestures' / 'Suturing_D002.txt'}, "
                                     "line 1: 75 values, expected 76"]
    assert read_session(tmp_path / "out" / "Suturing_D001.parquet").meta["labels"] == {}

    result = runner.invoke(app, ["import", "jigsaws", str(tmp_path / "S"), "--out", str(tmp_path / "out2")])
    assert result.exit_code == 1
    assert "imported 1 trial(s)" in result.output and "Suturing_D002.txt, line 1: 75 values" in result.output
    assert "warning: 1 trial(s) have no line in meta_file_Suturing.txt" in result.output


@pytest.mark.parametrize(
    "line, message",
    [
        ("Suturing_B001 X 13 2 2 2 2 3 2", "skill 'X' is not one of N, I, E"),
        ("Suturing_B001 N 14 2 2 2 2 3 2", r"GRS 14 is not the sum of the sub-scores \(13\)"),
        ("Suturing_B001 N 13 2 2 2 2 3", r"8 fields, expected 9 \(trial, skill, GRS and six sub-scores\)"),
        ("Suturing_B001 N 12 0 2 2 2 3 3", "respect_for_tissue 0 is outside 1-5"),
        ("Suturing_B001 N 1O 2 2 2 2 3 2", "GRS '1O' is not an integer"),
        ("Suturing_B001 N 13 2 2 2 2 3 2.0", "quality_of_final_product '2.0' is not an integer"),
        # the real tab layout: an empty field is named
        ("Suturing_B001\t\tN\t\t\t2\t2\t2\t2\t3\t2\r", "GRS is empty"),
        ("Suturing_B001\t\t\t13\t\t2\t2\t2\t2\t3\t2\r", "skill is empty"),
        ("Suturing_B001\t\tN\t13\t\t\t2\t2\t2\t3\t2\r", "respect_for_tissue is empty"),
    ],
)
def test_jigsaws_meta_errors_name_file_line_trial_field_and_value(tmp_path, line, message):
    path = tmp_path / "meta_file_Suturing.txt"
    path.write_text("Suturing_C001 E 27 5 4 5 4 5 4\n" + line + "\n")
    trials, errors = read_jigsaws_meta(path)
    assert list(trials) == ["Suturing_C001"]  # a bad line fails only its trial
    [(name, error)] = errors
    assert name == "Suturing_B001"
    assert re.fullmatch(rf"{re.escape(str(path))}, line 2 \(Suturing_B001\): {message}", error), error


@pytest.mark.parametrize(
    "line, name, message",
    [("Suture-1 N 13 2 2 2 2 3 2", "Suture-1", "'Suture-1' is not a JIGSAWS trial name like 'Suturing_B001'"),
     ("\t\tN\t13\t\t2\t2\t2\t2\t3\t2", "", "the trial name is empty")],
)
def test_jigsaws_meta_line_without_a_trial_name(tmp_path, line, name, message):
    path = tmp_path / "meta_file_Suturing.txt"
    path.write_text(line + "\n")
    assert read_jigsaws_meta(path) == ({}, [(name, f"{path}, line 1: {message}")])


def test_an_unreadable_meta_file_is_an_error(tmp_path):
    with pytest.raises(SessionError, match=r"meta_file_Suturing\.txt: cannot read \(No such file or directory\)"):
        read_jigsaws_meta(tmp_path / "meta_file_Suturing.txt")


def test_a_bad_meta_line_fails_only_its_trial(tmp_path):
    root = tmp_path / "Suturing"
    write_jigsaws(root, {"Suturing_B001": jigsaws_arms(1), "Suturing_B002": jigsaws_arms(2)},
                  ["Suturing_B001\t\tN\t\t\t2\t2\t2\t2\t2\t3\r", "Suturing_B002\t\tN\t13\t\t2\t2\t2\t2\t2\t3\r"])
    meta = root / "meta_file_Suturing.txt"
    with pytest.raises(ImportFailed) as caught:
        import_jigsaws(root, tmp_path / "out", progress=False)
    assert [p.name for p in caught.value.written] == ["Suturing_B002.parquet"]
    assert caught.value.failures == [f"{meta}, line 1 (Suturing_B001): GRS is empty"]
    assert not (tmp_path / "out" / "Suturing_B001.parquet").exists()

    result = runner.invoke(app, ["import", "jigsaws", str(root), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "imported 1 trial(s)" in result.output and "line 1 (Suturing_B001): GRS is empty" in result.output


def test_trials_without_a_meta_line_and_meta_lines_without_kinematics_are_warned_about(tmp_path):
    root = tmp_path / "Suturing"
    names = [f"Suturing_B00{i}" for i in range(1, 8)]
    write_jigsaws(root, {name: jigsaws_arms(i) for i, name in enumerate(names)},
                  ["Suturing_B007 I 20 4 3 3 3 4 3", "Suturing_G001 I 20 4 3 3 3 4 3"])
    with pytest.warns(UnmatchedTrials) as caught:
        written = import_jigsaws(root, tmp_path / "out", progress=False)
    assert len(written) == 7
    no_line = ("6 trial(s) have no line in meta_file_Suturing.txt, imported without labels: "
               "Suturing_B001, Suturing_B002, Suturing_B003, Suturing_B004, Suturing_B005 and 1 more")
    no_kinematics = (f"1 line(s) of meta_file_Suturing.txt have no kinematics file in "
                     f"{root / 'kinematics' / 'AllGestures'}, not imported: Suturing_G001")
    assert [str(w.message) for w in caught] == [no_line, no_kinematics]

    result = runner.invoke(app, ["import", "jigsaws", str(root), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 0, result.output
    assert f"imported 7 trial(s) into {tmp_path / 'cli'}\n" in result.output
    assert f"\nwarning: {no_line}\nwarning: {no_kinematics}\n" in result.output


def test_a_folder_without_a_meta_file_is_warned_about(tmp_path):
    write_jigsaws(tmp_path / "S", {"Suturing_B001": jigsaws_arms(1)}, [])
    (tmp_path / "S" / "meta_file_Suturing.txt").unlink()
    result = runner.invoke(app, ["import", "jigsaws", str(tmp_path / "S"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert (f"warning: {tmp_path / 'S'}: no meta file (meta_file_<Task>.txt); the trials are imported without "
            "labels") in result.output
    assert read_session(tmp_path / "out" / "Suturing_B001.parquet").meta["labels"] == {}


def test_jigsaws_cli_round_trip(tmp_path):
    write_jigsaws(tmp_path / "Suturing", {"Suturing_B001": jigsaws_arms(5)}, ["Suturing_B001 I 20 4 3 3 3 4 3"])
    result = runner.invoke(app, ["import", "jigsaws", str(tmp_path / "Suturing"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    assert read_session(tmp_path / "out" / "Suturing_B001.parquet").meta["labels"]["grs"] == 20
    result = runner.invoke(app, ["import", "jigsaws", str(tmp_path / "nowhere"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "nowhere: no such folder" in result.output


# ------------------------------------------------------------------ CSV
def test_csv_column_mapping_and_units(tmp_path):
    path = tmp_path / "tracker.csv"
    path.write_text(
        "frame,stamp_ms,px,py,pz,qx,qy,qz,qw,jaw\n"
        "0,0,10,20,30,0,0,0,2,0.1\n"
        "1,50,11,20,30,0,0,0,2,0.2\n"
        "2,100,12.5,21,29,0,0,1,1,0.3\n"
    )
    out = import_csv(path, tmp_path / "out", time="stamp_ms", time_units="ms", xyz=("px", "py", "pz"),
                     quat=("qx", "qy", "qz", "qw"), gripper="jaw", units="mm", trainee="t07", task="box")
    session = read_session(out)
    np.testing.assert_allclose(session.time, [0.0, 0.05, 0.1])
    np.testing.assert_allclose(session.tracks["tool"].position,
                               [[0.010, 0.020, 0.030], [0.011, 0.020, 0.030], [0.0125, 0.021, 0.029]])
    h = np.sqrt(0.5)
    np.testing.assert_allclose(session.tracks["tool"].orientation, [[0, 0, 0, 1], [0, 0, 0, 1], [0, 0, h, h]])
    np.testing.assert_allclose(session.tracks["tool"].gripper, [0.1, 0.2, 0.3])
    meta = session.meta
    assert meta["trainee"] == "t07" and meta["task"] == "box" and meta["sampling_rate_hz"] == pytest.approx(20.0)
    assert meta["source"]["importer"] == "csv" and meta["source"]["units"] == "mm"


def test_csv_cli_in_cm(tmp_path):
    path = tmp_path / "box.csv"
    path.write_text("t,x,y,z\n0,1,2,3\n0.5,2,2,3\n")
    result = runner.invoke(app, ["import", "csv", str(path), "--units", "cm", "--trainee", "t07",
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    np.testing.assert_allclose(read_session(tmp_path / "out" / "t07-0001.parquet").tracks["tool"].position,
                               [[0.01, 0.02, 0.03], [0.02, 0.02, 0.03]])


@pytest.mark.parametrize(
    "text, argv, message",
    [
        ("t,x,y\n0,1,2\n", [], r"box\.csv: no column 'z'; the header has \['t', 'x', 'y'\]"),
        ("t,x,y,z\n0,1,2,3\n0.1,1,oops,3\n", [], r"box\.csv, line 3: column 'y' has 'oops', expected a number"),
        ("t,x,y,z\n0,1,2,3\n0,1,2,3\n", [], r"box\.csv: time is not strictly increasing at row 1"),
        ("t,x,y,z\n0,1,2,3\n0.1,1,nan,3\n", [], r"box\.csv, line 3: column 'y' is NaN or infinite"),
        ("t,x,y,z\n", [], r"box\.csv: empty session"),
        ("t,x,y,z\n0,1,2,3\n", ["--units", "inch"], r"units 'inch' is not valid"),
        ("t,x,y,z\n0,1,2,3\n", ["--trainee", "Jane Doe"], r"trainee id 'Jane Doe' is not valid"),
    ],
    ids=["missing-column", "not-a-number", "time", "nan", "empty", "units", "trainee"],
)
def test_csv_errors_name_file_and_problem(tmp_path, text, argv, message):
    path = tmp_path / "box.csv"
    path.write_text(text)
    args = ["import", "csv", str(path), "--trainee", "t07", "--out", str(tmp_path / "out"), *argv]
    result = runner.invoke(app, args)
    assert result.exit_code == 2
    assert re.search(message, result.output), result.output
    assert not list(tmp_path.glob("out/*.parquet*"))
