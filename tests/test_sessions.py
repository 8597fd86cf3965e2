"""The session file format: round trips, the integrity digest, and errors that name the file and problem."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.sessions import (
    FORMAT_VERSION,
    IntegrityError,
    Session,
    SessionError,
    Track,
    read_meta,
    read_session,
    verify_session,
    write_session,
)
from surgsim.sessions.io import DIGEST_KEY, META_KEY

runner = CliRunner()


def two_hand_session(n: int = 50) -> Session:
    """Two hands on circles with known orientation and gripper, plus action / boolean channels."""
    rng = np.random.default_rng(0)
    t = np.arange(n) / 30.0
    quat = rng.normal(size=(n, 4))
    quat /= np.linalg.norm(quat, axis=1, keepdims=True)
    left = Track(np.column_stack([np.cos(t), np.sin(t), 0.1 * t]) * 0.05, quat, np.linspace(0.0, 0.8, n))
    right = Track(np.column_stack([np.sin(t), np.cos(t), -0.1 * t]) * 0.05)
    channels = {
        "action_1": rng.uniform(-1, 1, n),
        "action_0": rng.uniform(-1, 1, n),
        "reward": rng.normal(size=n),
        "clearance": np.linspace(0.02, 0.001, n),
        "critical_contact": np.arange(n) == n - 1,
    }
    meta = {
        "source": {"kind": "simulator", "env_id": "surgsim/SurgicalPath-v0", "spec": "SurgicalPath", "seed": 4},
        "sampling_rate_hz": 30.0,
        "task": "SurgicalPath",
        "trainee": "t07",
        "labels": {"skill": "E", "grs": 25},
        "reference_path": np.array([[0.0, 0.0, 0.0], [0.01, 0.02, -0.05]]),
        "target": np.array([0.01, 0.02, -0.05]),
        "events": [{"time": 1.5, "name": "success"}],
    }
    return Session(t, {"left": left, "right": right}, channels, meta)


def test_round_trip_keeps_tracks_channels_and_metadata(tmp_path):
    session = two_hand_session()
    path = write_session(session, tmp_path / "s.parquet")
    back = read_session(path)
    np.testing.assert_array_equal(back.time, session.time)
    assert set(back.tracks) == {"left", "right"}
    for name in ("left", "right"):
        np.testing.assert_array_equal(back.tracks[name].position, session.tracks[name].position)
    np.testing.assert_array_equal(back.tracks["left"].orientation, session.tracks["left"].orientation)
    np.testing.assert_array_equal(back.tracks["left"].gripper, session.tracks["left"].gripper)
    assert back.tracks["right"].orientation is None and back.tracks["right"].gripper is None
    assert set(back.channels) == set(session.channels)
    for name, values in session.channels.items():
        np.testing.assert_array_equal(back.channels[name], values)
    assert back.channels["critical_contact"].dtype == np.bool_
    meta = read_meta(path)
    assert meta == back.meta
    assert meta["format_version"] == FORMAT_VERSION and meta["complete"] is True
    assert meta["trainee"] == "t07" and meta["labels"] == {"skill": "E", "grs": 25}
    assert meta["source"]["seed"] == 4 and meta["sampling_rate_hz"] == 30.0
    assert meta["reference_path"] == [[0.0, 0.0, 0.0], [0.01, 0.02, -0.05]]
    assert meta["target"] == [0.01, 0.02, -0.05]
    # file order: time, tracks, then actions by index before the named channels
    names = pq.read_schema(path).names
    assert names[0] == "time" and names.index("action_0") < names.index("action_1") < names.index("reward")
    assert not [p for p in tmp_path.iterdir() if p.name != "s.parquet"]  # no temp file left behind


def _rewrite(path, table: pa.Table) -> None:
    pq.write_table(table, path)


def test_integrity_catches_a_one_value_edit(tmp_path):
    path = write_session(two_hand_session(), tmp_path / "s.parquet")
    table = pq.read_table(path)
    x = table.column("left_x").to_numpy().copy()
    x[17] += 1e-9
    _rewrite(path, table.set_column(table.column_names.index("left_x"), "left_x", pa.array(x)))
    with pytest.raises(IntegrityError, match=r"s\.parquet: integrity check failed"):
        verify_session(path)
    read_session(path, verify=False)  # still well-formed; only the digest tells


def test_integrity_catches_a_metadata_edit(tmp_path):
    path = write_session(two_hand_session(), tmp_path / "s.parquet")
    table = pq.read_table(path)
    meta = json.loads(table.schema.metadata[META_KEY])
    meta["labels"]["grs"] = 30
    schema_meta = dict(table.schema.metadata)
    schema_meta[META_KEY] = json.dumps(meta).encode()
    _rewrite(path, table.replace_schema_metadata(schema_meta))
    assert read_meta(path)["labels"]["grs"] == 30
    with pytest.raises(IntegrityError, match="changed after it was written"):
        read_session(path)

    result = runner.invoke(app, ["session", "verify", str(path)])
    assert result.exit_code == 1
    assert str(path) in result.output and "integrity check failed" in result.output


def test_missing_digest_is_an_integrity_failure(tmp_path):
    path = write_session(two_hand_session(), tmp_path / "s.parquet")
    table = pq.read_table(path)
    metadata = {k: v for k, v in table.schema.metadata.items() if k != DIGEST_KEY}
    _rewrite(path, table.replace_schema_metadata(metadata))
    with pytest.raises(IntegrityError, match="no integrity digest"):
        verify_session(path)


def test_verify_cli_passes_intact_files_and_lists_failures(tmp_path):
    good = write_session(two_hand_session(), tmp_path / "good.parquet")
    result = runner.invoke(app, ["session", "verify", str(good)])
    assert result.exit_code == 0 and f"ok  {good}" in result.output
    (tmp_path / "bad.parquet").write_text("not parquet")
    result = runner.invoke(app, ["session", "verify", str(tmp_path)])
    assert result.exit_code == 1
    assert f"ok  {good}" in result.output and f"FAILED  {tmp_path / 'bad.parquet'}" in result.output
    assert f"1 of 2 file(s) failed verification:\n{tmp_path / 'bad.parquet'}: not a Parquet file" in result.output
    result = runner.invoke(app, ["session", "verify", str(tmp_path / "empty_dir_missing")])
    assert result.exit_code == 1 and "no such file" in result.output


def test_show_cli_prints_metadata_in_mm(tmp_path):
    path = write_session(two_hand_session(), tmp_path / "s.parquet")
    result = runner.invoke(app, ["session", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert "trainee:     t07" in result.output and "integrity:   ok" in result.output
    assert "target:      (10.0, 20.0, -50.0) mm" in result.output
    result = runner.invoke(app, ["session", "show", str(tmp_path / "nope.parquet")])
    assert result.exit_code == 2 and "nope.parquet: no such file" in result.output


@pytest.mark.parametrize("task, unit, shown", [("SurgicalPath", "mm^2", "2"), ("Incision", "mm", "0.002"),
                                               ("NeedleReach", "", "2e-06")])
def test_show_cli_prints_tissue_damage_in_its_tasks_unit(tmp_path, task, unit, shown):
    session = two_hand_session()
    session.channels["tissue_damage"] = np.full(session.n_samples, 2e-6)  # m^2 swept, or m cut
    session.meta["task"] = task
    result = runner.invoke(app, ["session", "show", str(write_session(session, tmp_path / "s.parquet"))])
    assert result.exit_code == 0, result.output
    line = next(ln for ln in result.output.splitlines() if ln.startswith("tissue_damage"))
    assert line.split()[1:] == ([unit] if unit else []) + [shown] * 3


# ------------------------------------------------------------------ bad input
def _plain_parquet(path, columns: dict, meta: dict | None = None) -> None:
    table = pa.table(columns)
    if meta is not None:
        meta = {"format_version": FORMAT_VERSION, **meta}
        table = table.replace_schema_metadata({META_KEY: json.dumps(meta).encode()})
    pq.write_table(table, path)


def test_missing_file(tmp_path):
    with pytest.raises(SessionError, match=r"missing\.parquet: no such file"):
        read_session(tmp_path / "missing.parquet")


@pytest.mark.parametrize("where", ["footer", "pages"])
def test_a_corrupted_file_is_said_so_on_one_line(tmp_path, where):
    from surgsim.scoring.synthetic import synthetic_session

    path = tmp_path / "s.parquet"
    write_session(synthetic_session(np.random.default_rng(0)), path)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little")
    start = len(data) - 8 - footer + 16 if where == "footer" else 4  # thrift footer, or the first page header
    data[start:start + 64] = bytes(range(200, 256)) + bytes(8)
    path.write_bytes(bytes(data))
    with pytest.raises(SessionError) as caught:
        read_session(path)
    assert "\n" not in str(caught.value) and "corrupt" in str(caught.value)


def test_text_file_is_not_a_session(tmp_path):
    path = tmp_path / "notes.parquet"
    path.write_text("hello")
    with pytest.raises(SessionError, match=r"notes\.parquet: not a Parquet file"):
        read_session(path)


def test_foreign_parquet_is_not_a_session(tmp_path):
    path = tmp_path / "other.parquet"
    _plain_parquet(path, {"time": [0.0, 1.0], "tool_x": [0.0, 1.0]})
    with pytest.raises(SessionError, match=r"other\.parquet: not a surgsim session"):
        read_session(path)


def test_newer_format_version_is_refused(tmp_path):
    path = tmp_path / "future.parquet"
    _plain_parquet(path, {"time": [0.0]}, {"format_version": FORMAT_VERSION + 1})
    with pytest.raises(SessionError, match=rf"future\.parquet: format_version {FORMAT_VERSION + 1} is newer"):
        read_meta(path)


@pytest.mark.parametrize(
    "columns, message",
    [
        ({"tool_x": [0.0], "tool_y": [0.0], "tool_z": [0.0]}, "missing required column 'time'"),
        ({"time": [0.0, 0.1], "tool_x": [0.0, 1.0], "tool_y": [0.0, 1.0]}, "missing required column 'tool_z'"),
        ({"time": [0.0, 0.1], "reward": [1.0, 2.0]}, "missing required columns: no instrument position"),
        ({"time": [0.0, 0.1], "tool_x": [0.0, np.nan], "tool_y": [0.0, 0.0], "tool_z": [0.0, 0.0]},
         r"tool\.position has NaN or infinite values \(first at row 1\)"),
        ({"time": [0.0, 0.1], "tool_x": [0.0, 0.0], "tool_y": [0.0, 0.0], "tool_z": [0.0, 0.0],
          "reward": [np.inf, 0.0]}, r"reward has NaN or infinite values \(first at row 0\)"),
        ({"time": [0.0, 0.2, 0.2], "tool_x": [0.0] * 3, "tool_y": [0.0] * 3, "tool_z": [0.0] * 3},
         r"time is not strictly increasing at row 2 \(0\.2 -> 0\.2\)"),
        ({"time": pa.array([], pa.float64()), "tool_x": pa.array([], pa.float64()),
          "tool_y": pa.array([], pa.float64()), "tool_z": pa.array([], pa.float64())}, "empty session"),
        ({"time": [0.0], "tool_x": [0.0], "tool_y": [0.0], "tool_z": [0.0], "speed": [1.0]},
         "unknown column 'speed'"),
    ],
    ids=["no-time", "no-z", "no-track", "nan", "inf", "time-repeats", "empty", "unknown-column"],
)
def test_malformed_session_names_file_and_problem(tmp_path, columns, message):
    path = tmp_path / "bad.parquet"
    _plain_parquet(path, columns, {"trainee": "t01"})
    with pytest.raises(SessionError, match=r"bad\.parquet: " + message):
        read_session(path, verify=False)
    # with the digest check (there is none) the same problem is still named
    with pytest.raises(IntegrityError, match=message):
        read_session(path)


def test_write_refuses_invalid_sessions_and_leaves_nothing(tmp_path):
    session = two_hand_session()
    session.time = session.time[::-1].copy()
    with pytest.raises(SessionError, match=r"out\.parquet: time is not strictly increasing at row 1"):
        write_session(session, tmp_path / "out.parquet")
    session = two_hand_session()
    session.channels["speed"] = np.zeros(session.n_samples)
    with pytest.raises(SessionError, match="unknown channel 'speed'"):
        write_session(session, tmp_path / "out.parquet")
    session = two_hand_session()
    session.meta["bad"] = {1, 2}
    with pytest.raises(SessionError, match="metadata is not JSON-able"):
        write_session(session, tmp_path / "out.parquet")
    session = two_hand_session()
    session.tracks["left hand"] = session.tracks.pop("left")
    with pytest.raises(SessionError, match="instrument name 'left hand' is not valid"):
        write_session(session, tmp_path / "out.parquet")
    assert list(tmp_path.iterdir()) == []
