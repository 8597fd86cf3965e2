"""Import sessions recorded elsewhere: JIGSAWS da Vinci kinematics and generic tracker CSV files.

Both write one session file per recording (see :mod:`surgsim.sessions.io`). A JIGSAWS trial
becomes ``<trial>.parquet`` (importing the same trial again replaces its session); a CSV file
becomes ``<trainee>-<NNNN>.parquet``, numbered like recordings, so it never replaces another
session.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.csv as pacsv
from scipy.spatial.transform import Rotation
from tqdm import tqdm

from surgsim.sessions.io import write_session
from surgsim.sessions.recorder import check_trainee, release_journal, reserve_session
from surgsim.sessions.session import Session, SessionError, Track

# ------------------------------------------------------------------ JIGSAWS
JIGSAWS_RATE_HZ = 30.0
JIGSAWS_COLUMNS = 76
_ARM_WIDTH = 19
#: patient-side arms imported as tracks: name -> first (0-based) column of the arm's 19 values
JIGSAWS_ARMS = {"left": 38, "right": 57}
#: the surgeon's console (master) arms, imported only when asked for (``master=True``)
JIGSAWS_MASTER_ARMS = {"master_left": 0, "master_right": 19}
#: the six modified-OSATS items of the meta file, in file order (each 1-5; GRS is their sum)
JIGSAWS_SUBSCORES = (
    "respect_for_tissue",
    "suture_needle_handling",
    "time_and_motion",
    "flow_of_operation",
    "overall_performance",
    "quality_of_final_product",
)
JIGSAWS_SKILLS = ("N", "I", "E")
_TRIAL = re.compile(r"(?P<task>[A-Za-z][A-Za-z_]*?)_(?P<surgeon>[A-Z])(?P<trial>\d{3})")


class ImplausibleUnits(UserWarning):
    """Imported values whose size suggests the wrong units were given (e.g. ms read as s)."""


class UnmatchedTrials(UserWarning):
    """JIGSAWS trials with kinematics but no meta line (imported without labels), or the reverse."""


class ImportFailed(SessionError):
    """Some recordings of a batch could not be imported; the others were.

    ``written`` lists the sessions written, ``failures`` one message per failed recording.
    """

    def __init__(self, written: list[Path], failures: list[str]) -> None:
        self.written = written
        self.failures = failures
        super().__init__(f"{len(failures)} recording(s) failed to import:\n" + "\n".join(failures))


@dataclass
class JigsawsTrial:
    """One line of a JIGSAWS ``meta_file_<Task>.txt``."""

    name: str
    skill: str
    grs: int
    subscores: dict[str, int] = field(default_factory=dict)

    def labels(self) -> dict[str, Any]:
        return {"skill": self.skill, "grs": self.grs, **self.subscores}


def parse_trial_name(name: str, source: str) -> tuple[str, str, int]:
    """``Suturing_B001`` -> (``"Suturing"``, surgeon ``"B"``, trial 1)."""
    match = _TRIAL.fullmatch(name)
    if not match:
        raise SessionError(f"{source}: {name!r} is not a JIGSAWS trial name like 'Suturing_B001'")
    return match["task"], match["surgeon"], int(match["trial"])


def read_jigsaws_meta(path: str | Path) -> tuple[dict[str, JigsawsTrial], list[tuple[str, str]]]:
    """Parse a JIGSAWS meta file: trial name, skill N/I/E, GRS, then six sub-scores (1-5) per line.

    Returns the good lines by trial name, and the bad ones as (trial name as written, message):
    a bad line fails only its trial. A file that cannot be read as text is a :class:`SessionError`.
    """
    path = Path(path)
    trials: dict[str, JigsawsTrial] = {}
    errors: list[tuple[str, str]] = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        if not line.strip():
            continue
        fields = _meta_fields(line)
        try:
            trial = _meta_trial(fields, f"{path}, line {number}")
        except SessionError as exc:
            errors.append((fields[0], str(exc)))
        else:
            trials[trial.name] = trial
    return trials, errors


#: a real meta line split at tabs: fixed columns, two of them (None) always empty
_META_COLUMNS = ("trial", None, "skill", "GRS", None, *JIGSAWS_SUBSCORES)
_META_FIELDS = tuple(c for c in _META_COLUMNS if c)


def _meta_fields(line: str) -> list[str]:
    """A meta line's fields. In the real tab layout an empty field keeps its place (as ''), so
    that it can be named; any other layout is split at whitespace."""
    cells = [cell.strip() for cell in line.split("\t")]
    if len(cells) == len(_META_COLUMNS) and not cells[1] and not cells[4]:
        return [cell for cell, column in zip(cells, _META_COLUMNS) if column]
    if len(cells) == len(_META_FIELDS):
        return cells
    return line.split()


def _meta_trial(fields: list[str], where: str) -> JigsawsTrial:
    """One meta line's trial; errors name the line, the trial, the field and its value."""
    name = fields[0]
    if not name:
        raise SessionError(f"{where}: the trial name is empty")
    parse_trial_name(name, where)
    where = f"{where} ({name})"
    if len(fields) != len(_META_FIELDS):
        raise SessionError(f"{where}: {len(fields)} fields, expected 9 (trial, skill, GRS and six sub-scores)")
    values = dict(zip(_META_FIELDS, fields))
    empty = next((f for f, value in values.items() if not value), None)
    if empty:
        raise SessionError(f"{where}: {empty} is empty")
    skill = values.pop("skill")
    if skill not in JIGSAWS_SKILLS:
        raise SessionError(f"{where}: skill {skill!r} is not one of N, I, E")
    scores = {}
    for item in _META_FIELDS[2:]:
        try:
            scores[item] = int(values[item])
        except ValueError:
            raise SessionError(f"{where}: {item} {values[item]!r} is not an integer") from None
    grs = scores.pop("GRS")
    for item, score in scores.items():
        if not 1 <= score <= 5:
            raise SessionError(f"{where}: {item} {score} is outside 1-5")
    if grs != sum(scores.values()):
        raise SessionError(f"{where}: GRS {grs} is not the sum of the sub-scores ({sum(scores.values())})")
    return JigsawsTrial(name, skill, grs, scores)


def read_jigsaws_kinematics(
    path: str | Path, labels: dict[str, Any] | None = None, master: bool = False
) -> Session:
    """One JIGSAWS kinematics file as a session: patient-side arms as tracks ``left`` / ``right``.

    Positions are taken as metres and gripper angles as radians, as JIGSAWS stores them; each
    rotation matrix (row-major) becomes a quaternion (x, y, z, w; w >= 0). Velocities are not
    imported (the scorer derives them from positions and orientations). With ``master`` the
    console arms are imported too, as tracks ``master_left`` / ``master_right`` (for the learned
    assessor's master-side features; the rubric's combined metrics then include them).
    """
    path = Path(path)
    task, surgeon, trial = parse_trial_name(path.stem, str(path))
    rows = []
    for number, line in enumerate(_read_text(path).splitlines(), start=1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) != JIGSAWS_COLUMNS:
            raise SessionError(f"{path}, line {number}: {len(fields)} values, expected {JIGSAWS_COLUMNS}")
        try:
            rows.append([float(v) for v in fields])
        except ValueError:
            bad = next(v for v in fields if not _is_float(v))
            raise SessionError(f"{path}, line {number}: {bad!r} is not a number") from None
    if not rows:
        raise SessionError(f"{path}: empty session (no frames)")
    data = np.array(rows)
    if not np.isfinite(data).all():
        line = int(np.argwhere(~np.isfinite(data))[0][0]) + 1
        raise SessionError(f"{path}, line {line}: NaN or infinite value")
    tracks = {}
    for arm, start in (JIGSAWS_ARMS | (JIGSAWS_MASTER_ARMS if master else {})).items():
        values = data[:, start : start + _ARM_WIDTH]
        matrices = values[:, 3:12].reshape(-1, 3, 3)
        try:
            quaternions = Rotation.from_matrix(matrices).as_quat()
        except ValueError as exc:
            raise SessionError(f"{path}: {arm} arm: rotation matrix is not a rotation ({exc})") from None
        quaternions *= np.where(quaternions[:, 3:] < 0, -1.0, 1.0)
        tracks[arm] = Track(position=values[:, 0:3].copy(), orientation=quaternions, gripper=values[:, 18].copy())
    meta = {
        "source": {"kind": "import", "importer": "jigsaws", "file": path.name},
        "sampling_rate_hz": JIGSAWS_RATE_HZ,
        "task": task,
        "trainee": surgeon,
        "trial": trial,
        "labels": dict(labels or {}),
        "events": [],
        "complete": True,
    }
    return Session(np.arange(len(data)) / JIGSAWS_RATE_HZ, tracks, {}, meta).validate(str(path))


def import_jigsaws(
    task_dir: str | Path, out_dir: str | Path, progress: bool = True, master: bool = False
) -> list[Path]:
    """Import every trial of a JIGSAWS task folder into ``out_dir/<trial>.parquet``.

    ``task_dir`` holds ``kinematics/AllGestures/<Task>_<S><NNN>.txt`` and ``meta_file_<Task>.txt``,
    or is a flat folder of the kinematics ``.txt`` files (with or without the meta file). Trials
    missing from the meta file are imported without labels and meta lines without kinematics are
    skipped, each said in an :class:`UnmatchedTrials` warning; ``master`` also imports the console
    arms (see :func:`read_jigsaws_kinematics`). A bad file or meta line fails only its trial:
    :class:`ImportFailed` lists the failures at the end.
    """
    task_dir, out_dir = Path(task_dir), Path(out_dir)
    if not task_dir.is_dir():
        raise SessionError(f"{task_dir}: no such folder")
    nested = task_dir / "kinematics" / "AllGestures"
    folder = nested if nested.is_dir() else task_dir
    files = sorted(p for p in folder.glob("*.txt") if not p.name.startswith("meta_file_"))
    if not files:
        raise SessionError(f"{task_dir}: no kinematics files (<Task>_<S><NNN>.txt) here or in kinematics/AllGestures/")
    meta_files = sorted(task_dir.glob("meta_file_*.txt"))
    trials: dict[str, JigsawsTrial] = {}
    failures: list[str] = []
    bad: set[str] = set()
    for meta_file in meta_files:
        good, errors = read_jigsaws_meta(meta_file)
        trials.update(good)
        bad.update(name for name, _ in errors)
        failures += [message for _, message in errors]
    written, unlabelled = [], []
    for path in tqdm(files, desc=f"import {task_dir.name}", unit="trial", disable=not progress):
        if path.stem in bad:
            continue
        trial = trials.get(path.stem)
        try:
            session = read_jigsaws_kinematics(path, trial.labels() if trial else None, master)
            written.append(write_session(session, out_dir / f"{path.stem}.parquet"))
        except SessionError as exc:
            failures.append(str(exc))
            continue
        if trial is None:
            unlabelled.append(path.stem)
    where = ", ".join(m.name for m in meta_files)
    if not meta_files:
        warnings.warn(f"{task_dir}: no meta file (meta_file_<Task>.txt); the trials are imported without labels",
                      UnmatchedTrials, stacklevel=2)
    elif unlabelled:
        warnings.warn(f"{len(unlabelled)} trial(s) have no line in {where}, imported without labels: "
                      f"{_first_few(unlabelled)}", UnmatchedTrials, stacklevel=2)
    stems = {p.stem for p in files}
    unmatched = [name for name in trials if name not in stems]
    if unmatched:
        warnings.warn(f"{len(unmatched)} line(s) of {where} have no kinematics file in {folder}, not imported: "
                      f"{_first_few(unmatched)}", UnmatchedTrials, stacklevel=2)
    if failures:
        raise ImportFailed(written, failures)
    return written


def _first_few(names: list[str], shown: int = 5) -> str:
    """``names`` for a message: the first ``shown``, then how many more."""
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _read_text(path: Path) -> str:
    """A text file's content; an unreadable or non-UTF-8 file is a :class:`SessionError` naming it."""
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = exc.object[: exc.start].count(b"\n") + 1
        raise SessionError(f"{path}, line {line}: not UTF-8 text (byte {exc.object[exc.start]:#04x})") from None
    except OSError as exc:
        raise SessionError(f"{path}: cannot read ({exc.strerror})") from None


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# ------------------------------------------------------------------ generic CSV
LENGTH_UNITS = {"m": 1.0, "cm": 1e-2, "mm": 1e-3}
TIME_UNITS = {"s": 1.0, "ms": 1e-3}
#: sampling rates outside this range (Hz) suggest wrong time units, and are warned about
PLAUSIBLE_RATE_HZ = (1.0, 10_000.0)


def import_csv(
    path: str | Path,
    out_dir: str | Path,
    time: str = "t",
    xyz: Sequence[str] = ("x", "y", "z"),
    quat: Sequence[str] | None = None,
    gripper: str | None = None,
    units: str = "mm",
    time_units: str = "s",
    trainee: str = "anonymous",
    instrument: str = "tool",
    task: str | None = None,
    labels: dict[str, Any] | None = None,
    target: Sequence[float] | None = None,
) -> Path:
    """Import a tracker CSV (header row, one sample per row) as ``out_dir/<trainee>-<NNNN>.parquet``.

    The number is the next free one, as for recordings, so an import never replaces a session.
    ``time``, ``xyz``, ``quat`` (x, y, z, w order; normalised) and ``gripper`` (radians) name the
    columns; positions (and ``target``) are converted from ``units`` (m, cm, mm) and times from
    ``time_units`` (s, ms) to SI. Other columns are ignored. A sampling rate outside
    :data:`PLAUSIBLE_RATE_HZ` is warned about (:class:`ImplausibleUnits`), not refused.
    """
    path, out_dir = Path(path), Path(out_dir)
    check_trainee(trainee)
    if units not in LENGTH_UNITS:
        raise SessionError(f"units {units!r} is not valid; expected one of {list(LENGTH_UNITS)}")
    if time_units not in TIME_UNITS:
        raise SessionError(f"time_units {time_units!r} is not valid; expected one of {list(TIME_UNITS)}")
    if len(xyz) != 3:
        raise SessionError(f"xyz names {len(xyz)} columns ({list(xyz)}), expected 3")
    if quat is not None and len(quat) != 4:
        raise SessionError(f"quat names {len(quat)} columns ({list(quat)}), expected 4 (x, y, z, w)")
    if target is not None and (len(target) != 3 or not all(math.isfinite(v) for v in target)):
        raise SessionError(f"target {list(target)} is not valid; expected 3 finite numbers (x, y, z)")
    if not path.is_file():
        raise SessionError(f"{path}: no such file")
    wanted = [time, *xyz, *(quat or ()), *([gripper] if gripper else [])]
    try:
        # only an empty cell is missing; "nan" stays a (non-finite) number and is reported as such
        options = pacsv.ConvertOptions(null_values=[""], strings_can_be_null=True)
        table = pacsv.read_csv(path, convert_options=options)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SessionError(f"{path}: not a readable CSV file ({exc})") from None
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise SessionError(f"{path}: no column {missing[0]!r}; the header has {table.column_names}")
    if table.num_rows == 0:
        raise SessionError(f"{path}: empty session (no rows)")
    columns = {name: _numeric_column(path, table, name) for name in wanted}
    scale = LENGTH_UNITS[units]
    orientation = None
    if quat is not None:
        orientation = np.column_stack([columns[c] for c in quat])
        norms = np.linalg.norm(orientation, axis=1)
        if (norms < 1e-6).any():
            line = int(np.argmax(norms < 1e-6)) + 2
            raise SessionError(f"{path}, line {line}: quaternion {list(quat)} is zero")
        orientation = orientation / norms[:, None]
    track = Track(
        position=np.column_stack([columns[c] for c in xyz]) * scale,
        orientation=orientation,
        gripper=columns[gripper] if gripper else None,
    )
    times = columns[time] * TIME_UNITS[time_units]
    steps = np.diff(times)
    rate = float(1.0 / np.median(steps)) if len(steps) and np.median(steps) > 0 else None
    low, high = PLAUSIBLE_RATE_HZ
    if rate is not None and not low <= rate <= high:
        warnings.warn(
            f"{path}: sampling rate {rate:.3g} Hz is implausible (expected {low:g} Hz to {high:g} Hz); "
            f"are the time units ({time_units}) right?",
            ImplausibleUnits,
            stacklevel=2,
        )
    meta = {
        "source": {
            "kind": "import",
            "importer": "csv",
            "file": path.name,
            "columns": {"time": time, "xyz": list(xyz), "quat": list(quat) if quat else None, "gripper": gripper},
            "units": units,
            "time_units": time_units,
        },
        "sampling_rate_hz": rate,
        "task": task,
        "trainee": trainee,
        "labels": dict(labels or {}),
        "events": [],
        "complete": True,
    }
    if target is not None:
        meta["target"] = [float(v) * scale for v in target]
    session = Session(times, {instrument: track}, {}, meta).validate(str(path))
    out, journal = reserve_session(out_dir, trainee)
    try:
        return write_session(session, out)
    finally:
        release_journal(journal)


def _numeric_column(path: Path, table: pa.Table, name: str) -> np.ndarray:
    """A CSV column as float64; the error names the file, column and first bad line."""
    column = table.column(name)
    if column.null_count:
        line = int(np.argmax(column.is_null().to_numpy(zero_copy_only=False))) + 2
        raise SessionError(f"{path}, line {line}: column {name!r} is empty")
    if not (pa.types.is_floating(column.type) or pa.types.is_integer(column.type)):
        values = column.to_pylist()
        line, bad = next(((i + 2, v) for i, v in enumerate(values) if not _is_float(str(v))), (None, None))
        where = f"{path}, line {line}" if line else str(path)
        detail = f"has {bad!r}" if line else f"has type {column.type}"
        raise SessionError(f"{where}: column {name!r} {detail}, expected a number")
    values = column.to_numpy().astype(np.float64)
    if not np.isfinite(values).all():
        line = int(np.argmax(~np.isfinite(values))) + 2
        raise SessionError(f"{path}, line {line}: column {name!r} is NaN or infinite")
    return values
