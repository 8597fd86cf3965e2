"""Sessions that mean what they say and lose nothing: every metadata copy under the digest, keyed
signing, CSV imports that never replace a session, recovery that leaves running recordings alone,
and untrusted files that fail one at a time, within bounded memory."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from test_importers import jigsaws_arms, write_jigsaws
from simhelpers import one_line_error
from typer.testing import CliRunner

import gymnasium as gym
from surgsim.cli import app
from surgsim.sessions import (
    ImportFailed,
    IntegrityError,
    JournalInUse,
    Session,
    SessionError,
    SessionRecorder,
    Track,
    import_csv,
    import_jigsaws,
    read_meta,
    read_session,
    recover_partial,
    sign_session,
    verify_session,
    write_session,
)
from surgsim.sessions import io
from surgsim.sessions.importers import ImplausibleUnits, UnmatchedTrials
from surgsim.sessions.io import META_KEY

runner = CliRunner()
KEY = b"0123456789abcdef0123456789abcdef"


def small_session(n: int = 20, trainee: str = "t07") -> Session:
    t = np.arange(n) / 20.0
    position = np.column_stack([np.sin(t), np.cos(t), 0.1 * t]) * 0.05
    return Session(t, {"tool": Track(position)}, {"reward": np.linspace(0, 1, n)}, {"trainee": trainee, "labels": {}})


def rewrite_metadata(path, **changes: bytes) -> None:
    """Rewrite a session file with its schema metadata changed, as a tool unaware of the digest would."""
    table = pq.read_table(path)
    metadata = {**table.schema.metadata, **{k.encode(): v for k, v in changes.items()}}
    pq.write_table(table.replace_schema_metadata(metadata), path)


# ------------------------------------------------------------------ point 6: integrity
def test_an_edit_of_the_footer_copy_of_the_metadata_fails_verification(tmp_path):
    path = write_session(small_session(trainee="t07"), tmp_path / "s.parquet")
    data = path.read_bytes()
    assert data.count(b'"trainee":"t07"') == 1  # the plain footer copy; the Arrow schema copy is base64
    path.write_bytes(data.replace(b'"trainee":"t07"', b'"trainee":"t99"'))
    # what most Parquet tools show is now t99, while pyarrow still shows the digested t07
    assert b'"t99"' in pq.ParquetFile(path).metadata.metadata[META_KEY]
    assert read_meta(path)["trainee"] == "t07"
    with pytest.raises(IntegrityError, match=r"s\.parquet: integrity check failed: metadata \['surgsim'\]"):
        verify_session(path)


def test_metadata_added_beside_the_digested_copy_fails_verification(tmp_path):
    path = write_session(small_session(), tmp_path / "s.parquet")
    rewrite_metadata(path, **{"surgsim.labels": b'{"grs": 30}'})
    with pytest.raises(IntegrityError, match=r"metadata \['surgsim.labels'\] is not covered by the digest"):
        verify_session(path)


def test_signed_file_verifies_only_with_its_key_and_not_after_an_edit_and_rehash(tmp_path):
    path = write_session(small_session(), tmp_path / "s.parquet")
    with pytest.raises(IntegrityError, match=r"s\.parquet: not signed"):
        verify_session(path, key=KEY)
    sign_session(path, KEY)
    verify_session(path)  # still a valid plain session
    verify_session(path, key=KEY)
    with pytest.raises(IntegrityError, match=r"s\.parquet: signature check failed"):
        verify_session(path, key=KEY[::-1])

    # an edit re-hashed by the tools drops the signature ...
    session = read_session(path)
    session.tracks["tool"].position[3, 0] += 1e-3
    write_session(session, tmp_path / "edited.parquet")
    verify_session(tmp_path / "edited.parquet")  # the plain digest cannot tell
    with pytest.raises(IntegrityError, match=r"edited\.parquet: not signed"):
        verify_session(tmp_path / "edited.parquet", key=KEY)
    # ... and one re-hashed by hand, keeping the old signature, no longer matches it
    table = pq.read_table(tmp_path / "edited.parquet")
    meta = read_meta(tmp_path / "edited.parquet")
    signature = pq.read_schema(path).metadata[io.SIGNATURE_KEY]
    forged = table.replace_schema_metadata({
        META_KEY: io.canonical_json(meta),
        io.DIGEST_KEY: io.content_digest(table, meta).encode(),
        io.SIGNATURE_KEY: signature,
    })
    pq.write_table(forged, tmp_path / "forged.parquet")
    verify_session(tmp_path / "forged.parquet")
    with pytest.raises(IntegrityError, match=r"forged\.parquet: signature check failed"):
        verify_session(tmp_path / "forged.parquet", key=KEY)


def test_a_garbled_signature_is_a_failed_check_not_a_crash(tmp_path):
    path = write_session(small_session(), tmp_path / "s.parquet", key=KEY)
    rewrite_metadata(path, **{io.SIGNATURE_KEY.decode(): "é".encode() * 32})
    with pytest.raises(IntegrityError, match=r"s\.parquet: signature check failed"):
        verify_session(path, key=KEY)


def test_sign_refuses_a_file_changed_since_it_was_written(tmp_path):
    path = write_session(small_session(), tmp_path / "s.parquet")
    meta = read_meta(path)
    rewrite_metadata(path, surgsim=io.canonical_json({**meta, "labels": {"grs": 30}}))
    with pytest.raises(IntegrityError, match=r"s\.parquet: integrity check failed"):
        sign_session(path, KEY)
    assert io.SIGNATURE_KEY not in pq.read_schema(path).metadata


def test_cli_sign_and_verify_with_a_key(tmp_path):
    key = tmp_path / "exam.key"
    key.write_bytes(KEY + b"\n")
    good = write_session(small_session(), tmp_path / "s" / "a.parquet")
    other = write_session(small_session(trainee="t08"), tmp_path / "s" / "b.parquet")
    result = runner.invoke(app, ["session", "sign", str(tmp_path / "s"), "--key", str(key)])
    assert result.exit_code == 0, result.output
    assert f"signed  {good}" in result.output and f"signed  {other}" in result.output
    result = runner.invoke(app, ["session", "verify", str(tmp_path / "s"), "--key", str(key)])
    assert result.exit_code == 0, result.output

    session = read_session(other)
    session.meta["labels"] = {"grs": 30}
    write_session(session, other)  # edited and re-hashed
    assert runner.invoke(app, ["session", "verify", str(tmp_path / "s")]).exit_code == 0
    result = runner.invoke(app, ["session", "verify", str(tmp_path / "s"), "--key", str(key)])
    assert result.exit_code == 1
    assert f"ok  {good}" in result.output and f"FAILED  {other}" in result.output
    assert f"{other}: not signed" in result.output


@pytest.mark.parametrize(
    "content, message",
    [(None, "key file not found"), (b"", "key file is empty"), (b" \n", "key file is empty"),
     (b"short", "key file holds 5 bytes; a key needs at least 16")],
    ids=["missing", "empty", "blank", "short"],
)
@pytest.mark.parametrize("command", ["sign", "verify"])
def test_cli_refuses_a_missing_empty_or_short_key_file(tmp_path, command, content, message):
    path = write_session(small_session(), tmp_path / "s.parquet")
    key = tmp_path / "exam.key"
    if content is not None:
        key.write_bytes(content)
    result = runner.invoke(app, ["session", command, str(path), "--key", str(key)])
    assert result.exit_code == 2
    assert f"exam.key: {message}" in one_line_error(result)
    assert io.SIGNATURE_KEY not in pq.read_schema(path).metadata


# ------------------------------------------------------------------ point 10: CSV imports
def test_csv_import_never_replaces_another_session(tmp_path):
    env = SessionRecorder(gym.make("surgsim/NeedleReach-v0"), tmp_path / "out", "t07")
    env.reset(seed=0)
    env.step(env.unwrapped.expert_action())
    env.close()
    recorded = (tmp_path / "out" / "t07-0001.parquet").read_bytes()
    csv = tmp_path / "box.csv"
    csv.write_text("t,x,y,z\n0,1,2,3\n0.05,2,2,3\n")
    first = import_csv(csv, tmp_path / "out", trainee="t07")
    csv.write_text("t,x,y,z\n0,5,5,5\n0.05,6,5,5\n")
    second = import_csv(csv, tmp_path / "out", trainee="t07")
    assert [first.name, second.name] == ["t07-0002.parquet", "t07-0003.parquet"]
    assert (tmp_path / "out" / "t07-0001.parquet").read_bytes() == recorded
    assert read_session(first).tracks["tool"].position[0, 0] == pytest.approx(0.001)
    assert read_session(second).tracks["tool"].position[0, 0] == pytest.approx(0.005)
    assert read_meta(second)["source"]["file"] == "box.csv"
    assert not list((tmp_path / "out").glob("*.partial"))


@pytest.mark.parametrize(
    "times, time_units, warned",
    [("0,50,100", "s", "0.02 Hz"), ("0,0.00005,0.0001", "s", "2e+04 Hz"), ("0,50,100", "ms", None)],
    ids=["ms-read-as-s", "too-fast", "plausible"],
)
def test_csv_import_warns_about_an_implausible_sampling_rate(tmp_path, times, time_units, warned):
    csv = tmp_path / "box.csv"
    csv.write_text("t,x,y,z\n" + "".join(f"{t},1,2,{i}\n" for i, t in enumerate(times.split(","))))
    result = runner.invoke(app, ["import", "csv", str(csv), "--trainee", "t07", "--time-units", time_units,
                                 "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    if warned:
        assert f"warning: {csv}: sampling rate {warned} is implausible" in result.output
        assert f"time units ({time_units})" in result.output
    else:
        assert "warning" not in result.output
    with pytest.warns(ImplausibleUnits) if warned else _no_warning():
        import_csv(csv, tmp_path / "out", trainee="t07", time_units=time_units)


class _no_warning:
    def __enter__(self):
        import warnings

        self._catch = warnings.catch_warnings()
        self._catch.__enter__()
        warnings.simplefilter("error", ImplausibleUnits)

    def __exit__(self, *exc):
        return self._catch.__exit__(*exc)


def test_csv_import_attaches_labels_task_and_target(tmp_path):
    csv = tmp_path / "box.csv"
    csv.write_text("t,x,y,z\n0,1,2,3\n0.05,2,2,3\n")
    result = runner.invoke(app, [
        "import", "csv", str(csv), "--trainee", "t07", "--out", str(tmp_path / "out"), "--task", "peg_transfer",
        "--label", "grs=22", "--label", "skill=E", "--label", "ratio=0.5", "--label", "note=a=b",
        "--target", "10,20,-30", "--units", "mm",
    ])
    assert result.exit_code == 0, result.output
    meta = read_meta(tmp_path / "out" / "t07-0001.parquet")
    assert meta["labels"] == {"grs": 22, "skill": "E", "ratio": 0.5, "note": "a=b"}
    assert meta["task"] == "peg_transfer"
    np.testing.assert_allclose(meta["target"], [0.01, 0.02, -0.03])


@pytest.mark.parametrize(
    "argv, message",
    [(["--label", "grs"], "--label 'grs': expected KEY=VALUE"),
     (["--label", "=3"], "--label '=3': expected KEY=VALUE"),
     (["--target", "1,2"], "target [1.0, 2.0] is not valid"),
     (["--target", "1,x,2"], "--target '1,x,2': expected comma-separated numbers"),
     (["--target", "1,nan,2"], "is not valid; expected 3 finite numbers")],
    ids=["no-equals", "no-key", "two-numbers", "not-a-number", "nan"],
)
def test_csv_import_refuses_bad_labels_and_targets(tmp_path, argv, message):
    csv = tmp_path / "box.csv"
    csv.write_text("t,x,y,z\n0,1,2,3\n0.05,2,2,3\n")
    result = runner.invoke(app, ["import", "csv", str(csv), "--trainee", "t07", "--out", str(tmp_path / "out"), *argv])
    assert result.exit_code == 2
    assert message in one_line_error(result)
    assert not list(tmp_path.glob("out/*.parquet*"))


# ------------------------------------------------------------------ point 10: recovery
def test_recover_leaves_the_journal_of_a_running_recording_alone(tmp_path):
    env = SessionRecorder(gym.make("surgsim/NeedleReach-v0"), tmp_path, "t07")
    env.reset(seed=0)
    for _ in range(25):  # past the first one-second flush: the journal holds samples
        env.step(np.zeros(3, np.float32))
    journal = tmp_path / "t07-0001.parquet.partial"
    assert journal.stat().st_size > 0
    with pytest.raises(JournalInUse, match=r"t07-0001\.parquet\.partial: a recording is still running"):
        recover_partial(journal)
    result = runner.invoke(app, ["session", "recover", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "skipped:" in result.output and "still running" in result.output
    assert journal.exists() and not (tmp_path / "t07-0001.parquet").exists()

    for _ in range(5):
        env.step(np.zeros(3, np.float32))
    env.close()  # the recording ends on its own terms: every sample kept, never "interrupted"
    session = read_session(tmp_path / "t07-0001.parquet")
    assert session.n_samples == 31
    assert [e["name"] for e in session.meta["events"]] == ["stopped"]
    assert not journal.exists()


def empty_stream_journal(path) -> None:
    """A journal whose recorder wrote the schema, then died before its first flush."""
    schema = pa.schema([("time", pa.float64())], metadata={META_KEY: b'{"trainee": "t01"}'})
    with open(path, "wb") as fh:
        pa.ipc.new_stream(fh, schema).close()


@pytest.mark.parametrize("write", [lambda p: p.write_bytes(b""), empty_stream_journal], ids=["zero-bytes", "schema-only"])
def test_an_empty_journal_is_nothing_to_recover_and_is_removed(tmp_path, write):
    journal = tmp_path / "t01-0001.parquet.partial"
    write(journal)
    result = runner.invoke(app, ["session", "recover", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert f"nothing to recover: {journal}" in result.output
    assert not journal.exists() and not list(tmp_path.iterdir())


def test_a_number_whose_empty_journal_a_recover_removed_is_claimed_again(tmp_path, monkeypatch):
    """recover may remove a just-created journal before its recorder locks it; the recorder then
    claims again, so two recordings never share a number."""
    from surgsim.sessions import recorder

    real_flock, raced = recorder.fcntl.flock, []

    def flock_after_a_recover(fh, operation):
        if not raced:  # a recover gets there first (it locks too): the empty journal is gone
            raced.append("racing")
            raced[0] = recover_partial(Path(fh.name))
        real_flock(fh, operation)

    monkeypatch.setattr(recorder.fcntl, "flock", flock_after_a_recover)
    first, journal = recorder.reserve_session(tmp_path, "t07")
    assert raced == [None]
    second, other = recorder.reserve_session(tmp_path, "t07")
    assert first != second
    assert Path(journal.name).exists() and Path(other.name).exists()
    recorder.release_journal(journal)
    recorder.release_journal(other)


def test_recover_refuses_a_foreign_stream_and_keeps_it(tmp_path):
    journal = tmp_path / "x-0001.parquet.partial"
    with open(journal, "wb") as fh:
        pa.ipc.new_stream(fh, pa.schema([("time", pa.float64())])).close()
    with pytest.raises(SessionError, match="not a surgsim recording journal"):
        recover_partial(journal)
    assert journal.exists()


# ------------------------------------------------------------------ point 10: one bad file, not a batch
def test_a_non_utf8_trial_is_one_failed_file(tmp_path):
    root = tmp_path / "Suturing"
    write_jigsaws(root, {"Suturing_B001": jigsaws_arms(1), "Suturing_C001": jigsaws_arms(2)}, [])
    bad = root / "kinematics" / "AllGestures" / "Suturing_C001.txt"
    bad.write_bytes(bad.read_bytes().replace(b"\n", b"\n\xff", 1))
    with pytest.raises(ImportFailed) as failed, pytest.warns(UnmatchedTrials, match="imported without labels"):
        import_jigsaws(root, tmp_path / "out", progress=False)  # the meta file is empty
    assert [p.name for p in failed.value.written] == ["Suturing_B001.parquet"]
    assert failed.value.failures == [f"{bad}, line 2: not UTF-8 text (byte 0xff)"]
    result = runner.invoke(app, ["import", "jigsaws", str(root), "--out", str(tmp_path / "cli")])
    assert result.exit_code == 1 and "imported 1 trial(s)" in result.output and "Traceback" not in result.output


def test_a_non_utf8_meta_file_names_the_file(tmp_path):
    root = tmp_path / "Suturing"
    write_jigsaws(root, {"Suturing_B001": jigsaws_arms(1)}, ["Suturing_B001 I 20 4 3 3 3 4 3"])
    (root / "meta_file_Suturing.txt").write_bytes(b"Suturing_B001 \xe9 20 4 3 3 3 4 3\n")
    result = runner.invoke(app, ["import", "jigsaws", str(root), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "meta_file_Suturing.txt, line 1: not UTF-8 text" in one_line_error(result)


@pytest.mark.parametrize(
    "metadata, message",
    [(b'{"format_version": 1, "complete": true, "trainee": NaN}', "NaN is not a JSON value"),
     (b'{"format_version": 1, "target": [Infinity, 0, 0]}', "Infinity is not a JSON value"),
     (b"[" * 100_000 + b"]" * 100_000, "not valid JSON")],
    ids=["nan", "infinity", "deeply-nested"],
)
def test_bad_json_in_metadata_is_one_failed_file(tmp_path, metadata, message):
    good = write_session(small_session(), tmp_path / "a.parquet")
    bad = write_session(small_session(), tmp_path / "b.parquet")
    rewrite_metadata(bad, surgsim=metadata)
    with pytest.raises(SessionError, match=message):
        read_session(bad)
    result = runner.invoke(app, ["session", "verify", str(tmp_path)])
    assert result.exit_code == 1, result.output
    assert f"ok  {good}" in result.output and f"FAILED  {bad}" in result.output
    assert f"{bad}: the 'surgsim' metadata is not valid JSON" in result.output


# ------------------------------------------------------------------ point 10: bounded memory
def test_a_file_claiming_too_many_rows_is_refused_before_reading(tmp_path, monkeypatch):
    path = write_session(small_session(n=20), tmp_path / "s.parquet")
    monkeypatch.setattr(io, "MAX_ROWS", 19)
    monkeypatch.setattr(pq.ParquetFile, "read", lambda *a, **k: pytest.fail("the columns were read"))
    with pytest.raises(SessionError, match=r"s\.parquet: claims 20 rows; a session may have at most 19"):
        read_session(path)


def test_the_row_and_column_limits_are_generous_for_real_sessions():
    assert io.MAX_ROWS >= 3_600_000  # an hour at 1 kHz
    assert io.MAX_COLUMNS >= 1 + 2 * 8 + 16  # two full hands and every channel


@pytest.mark.parametrize(
    "table, message",
    [(pa.table({"time": [0.0, 1.0], "tool_x": [0.0] * 2, "tool_y": [0.0] * 2, "tool_z": ["a", "b"]}),
      "column 'tool_z' has type string, expected a number"),
     (pa.Table.from_arrays([pa.array([0.0, 1.0])] * 5, ["time", "tool_x", "tool_y", "tool_z", "tool_x"]),
      "column 'tool_x' appears 2 times"),
     (pa.table({"time": [0.0], **{f"tool{i}_{a}": [0.0] for i in range(30) for a in "xyz"}}),
      "has 91 columns; a session may have at most 64")],
    ids=["string-column", "duplicate-column", "too-many-columns"],
)
def test_columns_are_checked_from_the_footer(tmp_path, table, message):
    path = tmp_path / "s.parquet"
    pq.write_table(table.replace_schema_metadata({META_KEY: b'{"format_version": 1}'}), path)
    with pytest.raises(SessionError, match=message):
        read_session(path)


def test_show_prints_a_synthetic_session(tmp_path):
    from surgsim.scoring.synthetic import synthetic_session

    path = write_session(synthetic_session(np.random.default_rng(0), 0.3), tmp_path / "s.parquet")
    assert runner.invoke(app, ["session", "verify", str(path)]).exit_code == 0
    result = runner.invoke(app, ["session", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert "source:      synthetic\n" in result.output and "reference:   " in result.output


@pytest.mark.parametrize(
    "meta, shown",
    [({"source": ["a", 1], "labels": ["E"], "sampling_rate_hz": "fast"}, "source:      ['a', 1]"),
     ({"source": {"device": "tracker", "empty": None}, "labels": {"grs": 22}}, "source:      device=tracker\n"),
     ({"events": {"time": 1}, "reference_path": 3, "target": "here"}, "event:       1.000 s  None"),
     ({"events": [{"time": "late", "name": "x"}, "cut", {"time": 0.5, "name": "grasp"}], "target": [0, "y", 1]},
      "event:       0.500 s  grasp"),
     ({"target": [0.01, 0.02, 0.03], "sampling_rate_hz": 20, "labels": "none", "trainee": {"id": 7}},
      "target:      (10.0, 20.0, 30.0) mm")],
    ids=["lists", "mapping", "odd-shapes", "mixed-events", "usual"],
)
def test_show_prints_any_valid_metadata(tmp_path, meta, shown):
    session = small_session()
    session.meta.update(meta)
    path = write_session(session, tmp_path / "s.parquet")
    result = runner.invoke(app, ["session", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert shown in result.output and "integrity:   ok" in result.output


def test_show_prints_positions_near_the_largest_float(tmp_path):
    session = small_session()
    session.tracks["tool"].position[:] *= 1e307  # up to 5e305 m: inf in mm, never a crash
    path = write_session(session, tmp_path / "s.parquet")
    result = runner.invoke(app, ["session", "show", str(path)])
    assert result.exit_code == 0, result.output
    assert "tool_x" in result.output and "Warning" not in result.output
