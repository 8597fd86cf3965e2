"""Sessions on disk: one Parquet file per session, with JSON metadata and an integrity digest.

Layout of a session file:

- columns, in this order: ``time`` (s, float64); per instrument ``<name>_x``, ``<name>_y``,
  ``<name>_z`` (tip position, m), then ``<name>_qx .. <name>_qw`` (orientation quaternion) and
  ``<name>_gripper`` (rad) when known; then the channels (``action_<i>`` first, then the names
  of :data:`~surgsim.sessions.session.CHANNELS` in that order). Boolean channels are stored
  as booleans, everything else as float64.
- Parquet schema metadata ``surgsim``: the session's metadata as canonical JSON (sorted keys),
  always with ``format_version`` and ``complete``.
- Parquet schema metadata ``surgsim.sha256``: SHA-256 over every column (name, dtype and
  little-endian bytes, in file order) and the canonical metadata JSON. Any later edit of a value,
  a column or the metadata changes it, so :func:`read_session` detects it. pyarrow stores the
  schema metadata twice (the Parquet footer's key-value list, read by most Parquet tools, and the
  serialised Arrow schema, read by pyarrow); verification requires both copies to be identical.
- Parquet schema metadata ``surgsim.hmac-sha256`` (optional, :func:`sign_session`): HMAC-SHA256
  with a secret key over the same bytes as the digest. Anyone can recompute a plain digest after
  an edit; only a holder of the key can recompute the signature.

Files are never unpickled; reading one runs no code from it, and a file claiming more than
:data:`MAX_ROWS` rows or :data:`MAX_COLUMNS` columns is refused before its data is read.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from surgsim._files import atomic_save
from surgsim.sessions.session import ACTION_PREFIX, CHANNELS, FORMAT_VERSION, OBS_PREFIX, Session, SessionError, Track

META_KEY = b"surgsim"
DIGEST_KEY = b"surgsim.sha256"
SIGNATURE_KEY = b"surgsim.hmac-sha256"
_DIGEST_DOMAIN = b"surgsim-session\0"
#: the Parquet footer key under which pyarrow keeps its serialised Arrow schema
_ARROW_SCHEMA_KEY = b"ARROW:schema"
#: bounds checked against the file's footer before any column is read: over an hour at 1 kHz
MAX_ROWS = 5_000_000
MAX_COLUMNS = 64
#: a signing key shorter than this is refused (a guessable key proves nothing)
MIN_KEY_BYTES = 16
POSITION_SUFFIXES = ("_x", "_y", "_z")
ORIENTATION_SUFFIXES = ("_qx", "_qy", "_qz", "_qw")
GRIPPER_SUFFIX = "_gripper"
_ACTION = re.compile(re.escape(ACTION_PREFIX) + r"(\d+)$")
_OBS = re.compile(re.escape(OBS_PREFIX) + r"(\d+)$")
_INSTRUMENT = re.compile(r"[A-Za-z][A-Za-z0-9]*(?:_[A-Za-z0-9]+)*")


class IntegrityError(SessionError):
    """The stored digest does not match the file's content: it was changed after it was written."""


def session_files(path: Path, pattern: str = "*.parquet") -> list[Path]:
    """The files a command-line argument names: a folder's files matching ``pattern`` at any depth
    (sorted), anything else as given (a missing file is for the command to report)."""
    if path.is_dir():
        return [f for f in sorted(path.rglob(pattern)) if f.is_file()]
    return [path]


# ------------------------------------------------------------------ columns
def track_columns(name: str, orientation: bool, gripper: bool) -> list[str]:
    """Column names of one instrument's track, in file order."""
    suffixes = list(POSITION_SUFFIXES)
    if orientation:
        suffixes += ORIENTATION_SUFFIXES
    if gripper:
        suffixes.append(GRIPPER_SUFFIX)
    return [name + suffix for suffix in suffixes]


def indexed_channels(names: Iterable[str], prefix: str) -> list[str]:
    """The channels ``<prefix><i>`` (:data:`ACTION_PREFIX` or :data:`OBS_PREFIX`) among ``names``,
    by index."""
    pattern = {ACTION_PREFIX: _ACTION, OBS_PREFIX: _OBS}[prefix]
    return sorted((n for n in names if pattern.match(n)), key=lambda n: int(pattern.match(n).group(1)))


def channel_order(names: Iterable[str]) -> list[str]:
    """Channels in file order: ``action_<i>`` by index, the known channels in CHANNELS order,
    ``obs_<i>`` by index, then any others."""
    names = list(names)
    actions, observations = indexed_channels(names, ACTION_PREFIX), indexed_channels(names, OBS_PREFIX)
    known = [n for n in CHANNELS if n in names]
    others = sorted(set(names) - set(actions) - set(observations) - set(known))
    return actions + known + observations + others


def session_table(session: Session) -> pa.Table:
    """The session's columns as an Arrow table (no metadata, no validation)."""
    columns: dict[str, np.ndarray] = {"time": np.asarray(session.time, dtype=np.float64)}
    for name, track in session.tracks.items():
        parts = [np.asarray(track.position, dtype=np.float64).reshape(-1, 3)]
        if track.orientation is not None:
            parts.append(np.asarray(track.orientation, dtype=np.float64).reshape(-1, 4))
        if track.gripper is not None:
            parts.append(np.asarray(track.gripper, dtype=np.float64).reshape(-1, 1))
        values = np.hstack(parts)
        names = track_columns(name, track.orientation is not None, track.gripper is not None)
        for i, column in enumerate(names):
            columns[column] = np.ascontiguousarray(values[:, i])
    for name in channel_order(session.channels):
        values = np.asarray(session.channels[name])
        columns[name] = values if values.dtype == np.bool_ else values.astype(np.float64)
    return pa.table(columns)


def session_from_table(table: pa.Table, meta: dict[str, Any], source: str) -> Session:
    """Split a table's columns into tracks and channels; raise :class:`SessionError` naming ``source``."""
    names = table.column_names
    if "time" not in names:
        raise SessionError(f"{source}: missing required column 'time'")
    arrays: dict[str, np.ndarray] = {}
    for name in names:
        column = table.column(name)
        if column.null_count:
            raise SessionError(f"{source}: column {name!r} has {column.null_count} missing (null) values")
        _check_type(source, name, column.type)
        arrays[name] = column.to_numpy()
    channels: dict[str, np.ndarray] = {}
    parts: dict[str, dict[str, np.ndarray]] = {}
    # longest first: "tool_qx" is tool's qx, not the x of a track "tool_q"
    suffixes = (GRIPPER_SUFFIX, *ORIENTATION_SUFFIXES, *POSITION_SUFFIXES)
    for name, values in arrays.items():
        if name == "time":
            continue
        if name in CHANNELS or _ACTION.match(name) or _OBS.match(name):
            channels[name] = values
            continue
        suffix = next((s for s in suffixes if name.endswith(s) and len(name) > len(s)), None)
        if suffix is None:
            raise SessionError(
                f"{source}: unknown column {name!r}; expected time, <instrument>_x/_y/_z/_qx/_qy/_qz/_qw/"
                f"_gripper, action_<i>, obs_<i> or one of {list(CHANNELS)}"
            )
        parts.setdefault(name[: -len(suffix)], {})[suffix] = values.astype(np.float64)
    if not parts:
        raise SessionError(f"{source}: missing required columns: no instrument position (<name>_x, _y, _z)")
    tracks = {}
    for track, found in parts.items():
        for group in (POSITION_SUFFIXES, ORIENTATION_SUFFIXES):
            if group is POSITION_SUFFIXES or any(s in found for s in group):
                missing = [track + s for s in group if s not in found]
                if missing:
                    raise SessionError(f"{source}: missing required column {missing[0]!r} of instrument {track!r}")
        orientation = None
        if "_qx" in found:
            orientation = np.column_stack([found[s] for s in ORIENTATION_SUFFIXES])
        tracks[track] = Track(
            position=np.column_stack([found[s] for s in POSITION_SUFFIXES]),
            orientation=orientation,
            gripper=found.get(GRIPPER_SUFFIX),
        )
    return Session(np.asarray(arrays["time"], dtype=np.float64), tracks, channels, meta)


# ------------------------------------------------------------------ digest and signature
def canonical_json(meta: dict[str, Any]) -> bytes:
    """Metadata as canonical JSON bytes: sorted keys, no spaces, UTF-8, no NaN."""
    return json.dumps(meta, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _hash_content(table: pa.Table, meta: dict[str, Any], *hashers: Any) -> None:
    """Feed each of ``hashers`` the canonical bytes of a session: every column (name, dtype,
    little-endian bytes, each length-prefixed) and the canonical metadata; digest and signature
    share them, so both are fed in one pass (each column converted once)."""

    def put(data: bytes, prefix: bool = True) -> None:
        for h in hashers:
            if prefix:
                h.update(len(data).to_bytes(8, "little"))
            h.update(data)

    put(_DIGEST_DOMAIN, prefix=False)
    for name in table.column_names:
        values = table.column(name).to_numpy()
        values = np.ascontiguousarray(values, dtype=values.dtype.newbyteorder("<"))
        put(name.encode())
        put(values.dtype.str.encode())
        put(values.tobytes())
    put(canonical_json(meta))


def _digest_and_signature(table: pa.Table, meta: dict[str, Any], key: bytes | None) -> tuple[str, str | None]:
    """:func:`content_digest` and, with ``key``, :func:`content_signature` (else None), in one pass."""
    digest = hashlib.sha256()
    signed = None if key is None else hmac.new(key, digestmod=hashlib.sha256)
    _hash_content(table, meta, *(h for h in (digest, signed) if h is not None))
    return digest.hexdigest(), None if signed is None else signed.hexdigest()


def content_digest(table: pa.Table, meta: dict[str, Any]) -> str:
    """SHA-256 (hex) over every column (name, dtype, little-endian bytes) and the canonical metadata."""
    return _digest_and_signature(table, meta, None)[0]


def content_signature(table: pa.Table, meta: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 (hex) with ``key`` over the same bytes as :func:`content_digest`."""
    h = hmac.new(key, digestmod=hashlib.sha256)
    _hash_content(table, meta, h)
    return h.hexdigest()


def read_key(path: str | Path) -> bytes:
    """The signing key in a key file (its bytes, surrounding whitespace removed); refuse a
    missing, empty or short one, since a guessable key proves nothing."""
    path = Path(path)
    try:
        key = path.read_bytes().strip()
    except FileNotFoundError:
        raise SessionError(f"{path}: key file not found") from None
    except OSError as exc:
        raise SessionError(f"{path}: cannot read the key file ({exc.strerror})") from None
    if len(key) < MIN_KEY_BYTES:
        what = "is empty" if not key else f"holds {len(key)} bytes"
        raise SessionError(
            f"{path}: key file {what}; a key needs at least {MIN_KEY_BYTES} "
            f"(make one with `openssl rand -hex 32 > {path.name}`)"
        )
    return key


def jsonable(value: Any) -> Any:
    """``value`` with numpy arrays and scalars turned into lists and Python numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    return value


# ------------------------------------------------------------------ write / read
def write_session(session: Session, path: str | Path, key: bytes | None = None) -> Path:
    """Validate ``session`` and write it to ``path`` atomically (temp file in the same folder, rename).

    The metadata gets ``format_version`` and, unless given, ``complete: true``. With ``key`` the
    file is also signed (see :func:`sign_session`).
    """
    path = Path(path)
    session.validate(str(path))
    for name in session.tracks:
        if not _INSTRUMENT.fullmatch(name) or name in CHANNELS or _ACTION.match(name) or _OBS.match(name):
            raise SessionError(
                f"{path}: instrument name {name!r} is not valid; use letters and digits (words joined by '_')"
            )
    meta = jsonable(dict(session.meta))
    meta["format_version"] = FORMAT_VERSION
    meta.setdefault("complete", True)
    try:
        meta_json = canonical_json(meta)
    except (TypeError, ValueError) as exc:
        raise SessionError(f"{path}: metadata is not JSON-able ({exc})") from None
    table = session_table(session)
    digest, signature = _digest_and_signature(table, meta, key)
    metadata = {META_KEY: meta_json, DIGEST_KEY: digest.encode()}
    if signature is not None:
        metadata[SIGNATURE_KEY] = signature.encode()
    table = table.replace_schema_metadata(metadata)
    return atomic_save(path, lambda tmp: pq.write_table(table, tmp))


def sign_session(path: str | Path, key: bytes) -> Path:
    """Sign an intact session file with ``key`` (HMAC-SHA256), rewriting it atomically.

    The file is verified first, so a file changed since it was written is never signed. Unlike
    the plain digest, which anyone can recompute after an edit, the signature can only be
    recomputed by a holder of the key: ``verify_session(path, key)`` then proves the file is as
    signed.
    """
    return write_session(read_session(path), path, key=key)


def read_meta(path: str | Path) -> dict[str, Any]:
    """The metadata of a session file, without reading its columns or checking them."""
    path = Path(path)
    with _open(path) as parquet:
        return _parse_meta(path, parquet.schema_arrow.metadata)


def read_session(path: str | Path, verify: bool = True, key: bytes | None = None) -> Session:
    """Read a session file; raise :class:`SessionError` naming the file and the problem.

    With ``verify`` the integrity digest is checked as well (:class:`IntegrityError` when the file
    was changed after it was written; the message also names any other problem found), and with
    ``key`` the signature too (a file not signed, or signed with another key, fails).
    """
    path = Path(path)
    with _open(path) as parquet:
        schema = parquet.schema_arrow
        meta = _parse_meta(path, schema.metadata)
        _check_bounds(path, parquet.metadata, schema)
        try:
            table = parquet.read()
        except (pa.ArrowException, OSError) as exc:
            raise SessionError(f"{path}: cannot read the Parquet data, corrupted or truncated ({_one_line(exc)})") from None
        footer = parquet.metadata.metadata or {}
    problem: SessionError | None = None
    session = None
    try:
        session = session_from_table(table, meta, str(path)).validate(str(path))
    except SessionError as exc:
        problem = exc
    if verify:
        _check_integrity(path, table, meta, schema, footer, problem, key)
    if problem is not None:
        raise problem
    return session


def verify_session(path: str | Path, key: bytes | None = None) -> None:
    """Raise :class:`SessionError` / :class:`IntegrityError` unless ``path`` is an intact session
    (and, with ``key``, signed with that key)."""
    read_session(path, verify=True, key=key)


def _open(path: Path) -> pq.ParquetFile:
    if not path.exists():
        raise SessionError(f"{path}: no such file")
    if not path.is_file():
        raise SessionError(f"{path}: not a file")
    if path.name.endswith(".partial"):
        raise SessionError(
            f"{path}: an unfinished recording journal, not a complete session; "
            f"`surgsim session recover {path}` turns it into a session marked incomplete"
        )
    try:
        return pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise SessionError(f"{path}: not a Parquet file, or a corrupted one ({_one_line(exc)})") from None


def _one_line(exc: Exception) -> str:
    """PyArrow's message on one line: a batch lists each failed file on a line of its own."""
    return " ".join(str(exc).split())


def _check_bounds(path: Path, footer: pq.FileMetaData, schema: pa.Schema) -> None:
    """Refuse, from the footer alone, a file whose columns would take unbounded memory to read."""
    rows = max(footer.num_rows, sum(footer.row_group(i).num_rows for i in range(footer.num_row_groups)))
    if rows > MAX_ROWS:
        raise SessionError(f"{path}: claims {rows} rows; a session may have at most {MAX_ROWS}")
    if footer.num_columns > MAX_COLUMNS or len(schema) > MAX_COLUMNS:
        raise SessionError(
            f"{path}: has {max(footer.num_columns, len(schema))} columns; a session may have at most {MAX_COLUMNS}"
        )
    names = schema.names
    for name in names:
        if names.count(name) > 1:
            raise SessionError(f"{path}: column {name!r} appears {names.count(name)} times")
    for column in schema:
        _check_type(str(path), column.name, column.type)


def _check_type(source: str, name: str, kind: pa.DataType) -> None:
    if not (pa.types.is_floating(kind) or pa.types.is_integer(kind) or pa.types.is_boolean(kind)):
        raise SessionError(f"{source}: column {name!r} has type {kind}, expected a number")


def strict_json(data: bytes | str) -> Any:
    """Parse JSON as the standard has it: NaN and Infinity, which Python accepts, are errors."""
    return json.loads(data, parse_constant=_refuse_constant)


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not a JSON value")


def _parse_meta(path: Path, metadata: dict[bytes, bytes] | None) -> dict[str, Any]:
    if not metadata or META_KEY not in metadata:
        raise SessionError(f"{path}: not a surgsim session (no 'surgsim' metadata in the Parquet schema)")
    try:
        meta = strict_json(metadata[META_KEY])
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise SessionError(f"{path}: the 'surgsim' metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise SessionError(f"{path}: the 'surgsim' metadata is {type(meta).__name__}, expected a JSON object")
    version = meta.get("format_version")
    if not isinstance(version, int):
        raise SessionError(f"{path}: metadata field 'format_version' is {version!r}, expected an integer")
    if version > FORMAT_VERSION:
        raise SessionError(
            f"{path}: format_version {version} is newer than this surgsim reads ({FORMAT_VERSION}); upgrade surgsim"
        )
    return meta


def _check_integrity(
    path: Path,
    table: pa.Table,
    meta: dict[str, Any],
    schema: pa.Schema,
    footer: dict[bytes, bytes],
    problem: SessionError | None,
    key: bytes | None,
) -> None:
    """The digest (and, with ``key``, the signature) over the content, and every copy of the
    metadata a reader can see equal to the one they cover."""
    also = ""
    if problem is not None:
        also = "; also: " + str(problem).removeprefix(f"{path}: ")
    metadata = schema.metadata or {}
    stored = metadata.get(DIGEST_KEY, b"").decode("ascii", "replace")
    if not stored:
        raise IntegrityError(f"{path}: no integrity digest ('surgsim.sha256' metadata is missing){also}")
    footer = {k: v for k, v in footer.items() if k != _ARROW_SCHEMA_KEY}
    covered = {META_KEY, DIGEST_KEY, SIGNATURE_KEY}
    differing = sorted(k.decode("utf-8", "replace") for k in footer.keys() | metadata.keys()
                       if footer.get(k) != metadata.get(k) or k not in covered)
    differing += [f"column {c.name}" for c in schema if c.metadata]
    if differing:
        raise IntegrityError(
            f"{path}: integrity check failed: metadata {differing} is not covered by the digest (the Parquet "
            f"footer's copy differs from the Arrow schema's, or it was added); the file was changed after it "
            f"was written{also}"
        )
    actual, expected_signature = _digest_and_signature(table, meta, key)
    if actual != stored:
        raise IntegrityError(
            f"{path}: integrity check failed: the content digest {actual[:16]}... does not match the stored "
            f"{stored[:16]}...; the file was changed after it was written{also}"
        )
    if expected_signature is None:  # no key
        return
    signature = metadata.get(SIGNATURE_KEY, b"")
    if not signature:
        raise IntegrityError(f"{path}: not signed (no 'surgsim.hmac-sha256' metadata){also}")
    if not hmac.compare_digest(signature, expected_signature.encode()):
        raise IntegrityError(
            f"{path}: signature check failed: the file was signed with another key, or changed and re-hashed "
            f"after it was signed{also}"
        )
