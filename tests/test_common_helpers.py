"""The package-wide helpers: numbered names claimed atomically, the session finder, the error base."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from surgsim._files import claim_numbered


def _touch(path: Path) -> None:
    path.touch(exist_ok=False)


def test_numbers_count_from_one_and_follow_the_highest_taken(tmp_path):
    assert claim_numbered(tmp_path, "run", Path.mkdir, sep="_")[0] == tmp_path / "run_1"
    (tmp_path / "run_7").mkdir()
    (tmp_path / "run_x").mkdir()  # not a number: ignored
    (tmp_path / "other_9").mkdir()  # another stem: ignored
    assert claim_numbered(tmp_path, "run", Path.mkdir, sep="_")[0] == tmp_path / "run_8"
    assert (tmp_path / "run_8").is_dir()


def test_a_removed_number_is_never_handed_out_again(tmp_path):
    for _ in range(3):
        claim_numbered(tmp_path, "t", _touch, suffix=".x")
    (tmp_path / "t-2.x").unlink()
    assert claim_numbered(tmp_path, "t", _touch, suffix=".x")[0].name == "t-4.x"


def test_bare_name_first_then_numbers_from_two(tmp_path):
    names = [claim_numbered(tmp_path, "eval", _touch, suffix=".json", bare_first=True)[0].name for _ in range(3)]
    assert names == ["eval.json", "eval-2.json", "eval-3.json"]


def test_padded_numbers_and_extra_endings_count_as_taken(tmp_path):
    (tmp_path / "t07-0004.parquet.partial").touch()
    (tmp_path / "t07-b-0009.parquet").touch()  # trainee "t07-b", not "t07"
    path, result = claim_numbered(tmp_path, "t07", lambda p: "mine", suffix=".parquet", digits=4,
                                  also=(".parquet.partial",))
    assert (path.name, result) == ("t07-0005.parquet", "mine")


def test_a_name_taken_after_the_scan_moves_on_to_the_next_number(tmp_path):
    def claim(path: Path) -> None:
        if path.name == "run_1":
            path.mkdir()  # another process got there first
        path.mkdir()

    assert claim_numbered(tmp_path, "run", claim, sep="_")[0].name == "run_2"


def test_concurrent_claims_never_share_a_name(tmp_path):
    start = threading.Barrier(8)
    claimed: list[Path] = []

    def worker() -> None:
        start.wait()
        claimed.append(claim_numbered(tmp_path, "run", Path.mkdir, sep="_")[0])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(p.name for p in claimed) == sorted(f"run_{n}" for n in range(1, 9))


def test_other_errors_of_the_claim_propagate(tmp_path):
    with pytest.raises(FileNotFoundError):
        claim_numbered(tmp_path / "missing", "run", Path.mkdir, sep="_")


def test_session_files_finds_files_in_folders_and_keeps_other_arguments(tmp_path):
    from surgsim.sessions.io import session_files

    (tmp_path / "b" / "deep").mkdir(parents=True)
    for name in ("b/deep/z.parquet", "b/a.parquet", "b/a.parquet.partial", "b/note.txt"):
        (tmp_path / name).touch()
    (tmp_path / "b" / "folder.parquet").mkdir()  # a folder is not a session file
    assert session_files(tmp_path / "b") == [tmp_path / "b/a.parquet", tmp_path / "b/deep/z.parquet"]
    assert session_files(tmp_path / "b", "*.parquet.partial") == [tmp_path / "b/a.parquet.partial"]
    assert session_files(tmp_path / "missing.parquet") == [tmp_path / "missing.parquet"]


def test_every_package_error_derives_from_one_base_that_is_a_value_error():
    import surgsim
    from surgsim.errors import SurgsimError
    from surgsim.predictor.data import DatasetError
    from surgsim.predictor.predictor import PredictorError
    from surgsim.predictor.train import PredictorTrainingError
    from surgsim.rl.train import TrainingError
    from surgsim.scoring.calibrate import CalibrationError
    from surgsim.scoring.rubric import RubricError
    from surgsim.scoring.score import ScoreError
    from surgsim.sessions import IntegrityError, JournalInUse, SessionError
    from surgsim.tasks.spec import SpecError

    assert surgsim.SurgsimError is SurgsimError and issubclass(SurgsimError, ValueError)
    for error in (
        DatasetError, PredictorError, PredictorTrainingError, TrainingError, CalibrationError, RubricError,
        ScoreError, IntegrityError, JournalInUse, SessionError, SpecError,
    ):
        assert issubclass(error, SurgsimError), error


def test_yaml_errors_in_specs_and_rubrics_are_one_line_naming_the_place(tmp_path):
    from surgsim.scoring.rubric import RubricError, load_rubric
    from surgsim.tasks.spec import SpecError, load_spec

    bad = tmp_path / "bad.yaml"
    bad.write_text("task: needle_reach\nparams: {start: [0, 0\n")
    for load, error in ((load_spec, SpecError), (load_rubric, RubricError)):
        with pytest.raises(error) as caught:
            load(bad)
        message = str(caught.value)
        assert "\n" not in message and message.startswith(f"{bad}: not valid YAML")
        assert "line 3, column 1" in message


def test_json_is_written_whole_with_numpy_values_and_paths_made_plain(tmp_path):
    import json

    import numpy as np

    from surgsim._files import atomic_write_json

    target = tmp_path / "out.json"
    atomic_write_json(target, {"n": np.int64(3), "x": np.float32(0.5), "v": np.arange(2), "p": tmp_path})
    assert json.loads(target.read_text()) == {"n": 3, "x": 0.5, "v": [0, 1], "p": str(tmp_path)}
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        atomic_write_json(target, {"bad": object()})
    assert json.loads(target.read_text())["n"] == 3  # a failed write leaves the old file whole
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]  # and no temporary file
