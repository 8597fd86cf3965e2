"""Session commands: play (keyboard teleop, recorded), import jigsaws / csv, session verify / sign / recover / show."""

from __future__ import annotations

import contextlib
import math
from pathlib import Path
from typing import Any, Callable, List, Optional

import typer

from surgsim.cli._common import app, check_difficulty, check_seed, check_writable, fail
from surgsim.errors import SurgsimError
from surgsim.sessions.teleop import END_KEY, NOOP_KEY, describe_keys

import_app = typer.Typer(help="Import sessions recorded elsewhere (da Vinci kinematics, trackers).", no_args_is_help=True)
session_app = typer.Typer(help="Check, sign, recover and inspect session files.", no_args_is_help=True)
app.add_typer(import_app, name="import")
app.add_typer(session_app, name="session")

_KEYS_HELP = (
    f"Keys: {describe_keys()}. Continuous envs move +/-1 (full step) per held key, several axes at once; "
    "discrete envs take the first axis key. Axes: NeedleReach x, y, z; SurgicalPath yaw, pitch, insertion; "
    "Incision x, y, depth."
)


@app.command(
    "play",
    short_help="Teleoperate an env from the keyboard, recording each episode as a session.",
    help="Teleoperate an env from the keyboard and record each episode as a session. Without --keys or "
    f"--keys-file a PyBullet window opens (needs a display); keys held are read at the env's control rate. {_KEYS_HELP}",
)
def play_cmd(
    env: str = typer.Option(..., "--env", help="Registered env id (see `surgsim envs`)."),
    trainee: str = typer.Option(..., "--trainee", help="Pseudonymous trainee id (file name prefix), e.g. t07."),
    record: Path = typer.Option(..., "--record", help="Folder for the sessions (<trainee>-<NNNN>.parquet)."),
    episodes: int = typer.Option(1, "--episodes", "-n", min=1, help="Episodes to play."),
    keys: Optional[str] = typer.Option(
        None, "--keys", help=f"Scripted keys instead of a window, one step each (e.g. 'wwwdd{NOOP_KEY}{END_KEY}')."
    ),
    keys_file: Optional[Path] = typer.Option(None, "--keys-file", help="Scripted keys from a text file (whitespace ignored)."),
    seed: Optional[int] = typer.Option(None, "--seed", callback=check_seed, help="Episode i uses seed + i (default: unseeded)."),
    difficulty: str = typer.Option("medium", "--difficulty", callback=check_difficulty, help="easy, medium or hard."),
    patient: Optional[str] = typer.Option(None, "--patient", help="A named fixed patient from the env's spec."),
    tissue: Optional[str] = typer.Option(
        None, "--tissue", help="Tissue model: 'elastic' (the spec's default), 'fem' (PyBullet finite elements, "
        "real time) or 'rigid'."
    ),
) -> None:
    import gymnasium as gym

    import surgsim
    from surgsim.sessions.io import read_meta
    from surgsim.sessions.recorder import SessionRecorder, check_trainee
    from surgsim.sessions.teleop import KeyMap, ScriptedKeys, WindowKeys, parse_keys, play

    if env not in surgsim.REGISTERED:
        fail(f"unknown env id {env!r}; run `surgsim envs` to list them")
    if keys is not None and keys_file is not None:
        fail("give --keys or --keys-file, not both")
    try:
        check_trainee(trainee)
    except SurgsimError as exc:
        fail(f"--trainee: {exc}")
    check_writable(record, "--record", folder=True)
    script, script_source = keys, "--keys"
    if keys_file is not None:
        if not keys_file.is_file():
            fail(f"--keys-file {keys_file}: no such file")
        script, script_source = keys_file.read_text(), str(keys_file)
    try:
        environment = gym.make(env, difficulty=difficulty, tissue=tissue,
                               render_mode=None if script is not None else "human")
    except RuntimeError as exc:
        fail(f"{exc}; without a display pass scripted keys with --keys or --keys-file")
    except SurgsimError as exc:
        fail(str(exc))
    recorder = SessionRecorder(environment, record, trainee)
    try:
        key_map = KeyMap.for_space(environment.action_space)
        if script is not None:
            source = ScriptedKeys(parse_keys(script, key_map, script_source))
        else:
            typer.echo(f"Focus the PyBullet window. {describe_keys(key_map.n_axes)}. Close the window to stop.")
            source = WindowKeys(environment, recorder.rate_hz)
        result = play(recorder, source, episodes, seed, {"patient": patient} if patient else None)
    except SurgsimError as exc:
        recorder.close()
        fail(str(exc))
    except KeyboardInterrupt:
        recorder.close()
        typer.echo(f"interrupted; {len(recorder.written)} session(s) written to {record}")
        raise typer.Exit(130)
    recorder.close()
    for path in recorder.written:
        complete = read_meta(path).get("complete")
        typer.echo(f"written: {path}" + ("" if complete else " (incomplete)"))
    if script is not None and result.input_ended:
        typer.echo(f"the scripted keys ran out in episode {result.episodes_started} of {episodes}")


# ------------------------------------------------------------------ import
@import_app.command("jigsaws")
def import_jigsaws_cmd(
    task_dir: Path = typer.Argument(
        ..., help="A JIGSAWS task folder (kinematics/AllGestures/*.txt and meta_file_<Task>.txt), or a flat folder of .txt files."
    ),
    out: Path = typer.Option(..., "--out", help="Folder for the sessions (<Task>_<S><NNN>.parquet)."),
    master: bool = typer.Option(False, "--master", help="Also import the console arms (tracks master_left / master_right)."),
) -> None:
    """Import JIGSAWS da Vinci kinematics: patient-side arms as tracks left / right, labels from the meta file.

    Surgeon letter -> trainee, skill N/I/E, GRS and the six sub-scores -> labels. Trials with no meta line
    are imported without labels, and meta lines with no kinematics skipped; both are warned about. A bad
    trial (kinematics file or meta line) does not stop the others; the failures are listed at the end and
    the exit status is 1.
    """
    check_writable(out, "--out", folder=True)
    import warnings

    from surgsim.sessions.importers import ImportFailed, UnmatchedTrials, import_jigsaws
    from surgsim.sessions.session import SessionError

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", UnmatchedTrials)
            paths = import_jigsaws(task_dir, out, master=master)
    except ImportFailed as exc:
        _import_summary(len(exc.written), out, [str(w.message) for w in caught])
        fail(str(exc), code=1)
    except SessionError as exc:
        fail(str(exc))
    _import_summary(len(paths), out, [str(w.message) for w in caught])


def _import_summary(count: int, out: Path, notes: list[str]) -> None:
    """How many trials were imported, then what the import warned about (e.g. trials without labels)."""
    typer.echo(f"imported {count} trial(s) into {out}")
    for note in notes:
        typer.secho(f"warning: {note}", fg=typer.colors.YELLOW, err=True)


@import_app.command("csv")
def import_csv_cmd(
    file: Path = typer.Argument(..., help="Tracker CSV with a header row, one sample per row."),
    out: Path = typer.Option(
        ..., "--out", help="Folder for the session (<trainee>-<NNNN>.parquet, the next free number: never replaces one)."
    ),
    trainee: str = typer.Option(..., "--trainee", help="Pseudonymous trainee id, e.g. t07."),
    time: str = typer.Option("t", "--time", help="Time column."),
    time_units: str = typer.Option("s", "--time-units", help="s or ms."),
    xyz: str = typer.Option("x,y,z", "--xyz", help="Position columns, comma-separated."),
    units: str = typer.Option("mm", "--units", help="Position units: mm, cm or m."),
    quat: Optional[str] = typer.Option(None, "--quat", help="Orientation columns x,y,z,w (optional)."),
    gripper: Optional[str] = typer.Option(None, "--gripper", help="Gripper angle column, radians (optional)."),
    instrument: str = typer.Option("tool", "--instrument", help="Instrument (track) name."),
    task: Optional[str] = typer.Option(None, "--task", help="Task name stored in the metadata."),
    label: Optional[List[str]] = typer.Option(
        None, "--label", help="A label KEY=VALUE stored in the metadata (repeatable), e.g. --label grs=22 --label skill=E."
    ),
    target: Optional[str] = typer.Option(None, "--target", help="Target position x,y,z in --units (optional)."),
) -> None:
    """Import a generic tracker CSV: column mapping and units are converted to SI (m, s).

    A sampling rate below 1 Hz or above 10 kHz is warned about (wrong --time-units?).
    """
    check_writable(out, "--out", folder=True)
    import warnings

    from surgsim.sessions.importers import ImplausibleUnits, import_csv

    labels = dict(_label(text) for text in label or [])
    target_m = _numbers(target, "--target") if target is not None else None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ImplausibleUnits)
            path = import_csv(
                file, out, time=time, xyz=_names(xyz), quat=_names(quat) if quat else None, gripper=gripper,
                units=units, time_units=time_units, trainee=trainee, instrument=instrument, task=task,
                labels=labels, target=target_m,
            )
    except SurgsimError as exc:
        fail(str(exc))
    for warning in caught:
        typer.secho(f"warning: {warning.message}", fg=typer.colors.YELLOW, err=True)
    typer.echo(f"written: {path}")


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",")]


def _numbers(text: str, option: str) -> list[float]:
    try:
        return [float(v) for v in _names(text)]
    except ValueError:
        fail(f"{option} {text!r}: expected comma-separated numbers, e.g. 10,20,-35")


def _label(text: str) -> tuple[str, Any]:
    """``grs=22`` -> ("grs", 22): integers and finite numbers are stored as numbers, anything else as text."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        fail(f"--label {text!r}: expected KEY=VALUE, e.g. grs=22")
    value = value.strip()
    for kind in (int, float):
        with contextlib.suppress(ValueError):
            number = kind(value)
            if math.isfinite(number):
                return key.strip(), number
    return key.strip(), value


# ------------------------------------------------------------------ session
_KEY_HELP = "Secret key file (at least 16 bytes, e.g. `openssl rand -hex 32 > exam.key`); keep it from trainees."


@session_app.command("verify")
def verify_cmd(
    files: List[Path] = typer.Argument(..., help="Session files, or folders searched for *.parquet."),
    key: Optional[Path] = typer.Option(
        None, "--key", help=f"Also require a signature made with this key (`surgsim session sign`). {_KEY_HELP}"
    ),
) -> None:
    """Check session files: readable, well-formed and unchanged since written (SHA-256 digest).

    The digest catches accidental and tool-made changes, but anyone can recompute it after a
    deliberate edit; with --key each file must also carry a signature made with that key, which
    only its holders can recompute. Prints `ok  FILE` or `FAILED  FILE` per file, then lists
    each failure with its problem; the exit status is 0 when all pass, 1 otherwise.
    """
    from surgsim.sessions.io import verify_session

    secret = _read_key(key) if key is not None else None
    _batch(files, lambda path: verify_session(path, key=secret), "failed verification")


@session_app.command("sign")
def sign_cmd(
    files: List[Path] = typer.Argument(..., help="Session files, or folders searched for *.parquet."),
    key: Path = typer.Option(..., "--key", help=_KEY_HELP),
) -> None:
    """Sign session files with a secret key (HMAC-SHA256), for exams: `verify --key` then fails for a
    file edited afterwards, even one re-hashed. Each file is verified before it is signed (exit 1 if any fails)."""
    from surgsim.sessions.io import sign_session

    secret = _read_key(key)
    _batch(files, lambda path: sign_session(path, secret), "could not be signed", done="signed")


def _read_key(key: Path) -> bytes:
    from surgsim.sessions.io import read_key
    from surgsim.sessions.session import SessionError

    try:
        return read_key(key)
    except SessionError as exc:
        fail(f"--key {exc}")


def _batch(files: List[Path], check: Callable[[Path], object], what: str, done: str = "ok") -> None:
    """Run ``check`` on every session file (folders searched); a failure does not stop the others."""
    from surgsim.sessions.io import session_files
    from surgsim.sessions.session import SessionError

    targets = [f for path in files for f in session_files(path)]
    if not targets:
        fail("no session files found in " + ", ".join(map(str, files)))
    failures = []
    for path in targets:
        try:
            check(path)
        except SessionError as exc:
            failures.append(str(exc))
            typer.echo(f"FAILED  {path}")
        else:
            typer.echo(f"{done}  {path}")
    _fail_batch(failures, len(targets), what)


@session_app.command("recover")
def recover_cmd(
    journals: List[Path] = typer.Argument(..., help="Journals (*.parquet.partial) left by a crash, or folders of them."),
) -> None:
    """Turn journals left by a crashed or killed recording into sessions marked incomplete.

    Keeps every sample up to the last flush (at most the last second is lost). A journal of a
    recording still running is left alone; one holding no sample is removed (nothing to recover).
    Exit status 1 if any failed.
    """
    from surgsim.sessions.io import read_session, session_files
    from surgsim.sessions.recorder import JournalInUse, recover_partial
    from surgsim.sessions.session import SessionError

    targets = [f for path in journals for f in session_files(path, "*.parquet.partial")]
    if not targets:
        fail("no journals (*.parquet.partial) found in " + ", ".join(map(str, journals)))
    failures = []
    for path in targets:
        try:
            recovered = recover_partial(path)
            session = read_session(recovered) if recovered is not None else None
        except JournalInUse as exc:
            typer.echo(f"skipped: {exc}")
        except SessionError as exc:
            failures.append(str(exc))
        else:
            if session is None:
                typer.echo(f"nothing to recover: {path} (no sample was saved; journal removed)")
                continue
            typer.echo(
                f"recovered: {path.name[: -len('.partial')]} ({session.n_samples} samples, "
                f"{session.duration:.2f} s, complete: false)"
            )
    _fail_batch(failures, len(targets), "could not be recovered")


def _fail_batch(failures: list[str], total: int, what: str) -> None:
    """After a batch: list the failures, one per file, and exit 1 when there are any."""
    if failures:
        fail(f"{len(failures)} of {total} file(s) {what}:\n" + "\n".join(failures), code=1)


def _channel_unit(name: str, task: object) -> tuple[str, float]:
    """The unit a channel is shown in and the scale to it: lengths in mm, tissue damage in its
    task's unit (mm^2 swept in SurgicalPath, mm cut in Incision; none known for other tasks)."""
    from surgsim.scoring.metrics import TISSUE_DAMAGE_UNITS
    from surgsim.sessions.session import CHANNELS

    if name == "tissue_damage":
        _, unit, scale = TISSUE_DAMAGE_UNITS.get(task, ("", "", 1.0)) if isinstance(task, str) else ("", "", 1.0)
        return unit, scale
    unit = CHANNELS.get(name, "")
    return ("mm", 1e3) if unit == "m" else (unit, 1.0)


@session_app.command("show")
def show_cmd(file: Path = typer.Argument(..., help="A session file.")) -> None:
    """Print a session's metadata, integrity and a summary of every column (lengths in mm)."""
    import numpy as np

    from surgsim.polyline import total_length
    from surgsim.sessions.io import IntegrityError, read_session, verify_session
    from surgsim.sessions.session import SessionError

    try:
        session = read_session(file, verify=False)
    except SessionError as exc:
        fail(str(exc))
    try:
        verify_session(file)
        integrity = "ok (SHA-256 digest matches)"
    except IntegrityError as exc:
        integrity = "FAILED: " + str(exc).removeprefix(f"{file}: ")
    meta = session.meta
    echo = typer.echo
    echo(f"file:        {file}")
    echo(f"trainee:     {meta.get('trainee')}    task: {meta.get('task')}    complete: {meta.get('complete')}")
    echo(f"source:      {_one_line(meta.get('source'))}")
    rate = meta.get("sampling_rate_hz")
    echo(f"samples:     {session.n_samples}, {session.duration:.3f} s" + (f" at {_number(rate, 'g')} Hz" if rate else ""))
    echo(f"integrity:   {integrity}")
    if meta.get("labels"):
        echo(f"labels:      {_one_line(meta['labels'])}")
    events = meta.get("events") or []
    for event in events if isinstance(events, list) else [events]:
        time = event.get("time") if isinstance(event, dict) else None
        echo("event:       " + (f"{time:.3f} s  {event.get('name')}" if _is_number(time) else str(event)))
    reference = meta.get("reference_path")
    if reference:
        echo(f"reference:   {len(reference)} points" if isinstance(reference, list) else f"reference:   {reference}")
    target = meta.get("target")
    if isinstance(target, list) and target and all(map(_is_number, target)):
        echo("target:      (" + ", ".join(f"{1e3 * v:.1f}" for v in target) + ") mm")
    elif target:
        echo(f"target:      {target}")
    rows = [("time", "s", 1.0, session.time)]
    for name, track in session.tracks.items():
        path_length = total_length(track.position)
        echo(f"instrument:  {name}  path length {1e3 * path_length:.1f} mm")
        rows += [(f"{name}_{axis}", "mm", 1e3, track.position[:, i]) for i, axis in enumerate("xyz")]
        if track.orientation is not None:
            rows += [(f"{name}_q{axis}", "", 1.0, track.orientation[:, i]) for i, axis in enumerate("xyzw")]
        if track.gripper is not None:
            rows.append((f"{name}_gripper", "rad", 1.0, track.gripper))
    for name, values in session.channels.items():
        rows.append((name, *_channel_unit(name, meta.get("task")), values))
    width, unit_width = max(len(r[0]) for r in rows), max(len(r[1]) for r in rows)
    echo(f"{'column':<{width}}  {'unit':<{unit_width}} {'min':>12} {'mean':>12} {'max':>12}")
    for name, unit, scale, values in rows:
        with np.errstate(over="ignore"):  # 1e307 m is inf mm
            v = np.asarray(values, dtype=np.float64) * scale
            echo(f"{name:<{width}}  {unit:<{unit_width}} {v.min():>12.4g} {v.mean():>12.4g} {v.max():>12.4g}")


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: object, spec: str) -> str:
    """``value`` formatted with ``spec`` when it is a number; metadata is any JSON, so else as it is."""
    return format(value, spec) if _is_number(value) else str(value)


def _one_line(value: object) -> str:
    """A metadata value on one line: a mapping as key=value pairs (empty values left out), else as it is."""
    if isinstance(value, dict):
        return ", ".join(f"{k}={v}" for k, v in value.items() if v not in (None, {}, [], ""))
    return "" if value is None else str(value)
