"""Recorded sessions: the in-memory format, Parquet files, the recorder wrapper and importers."""

from surgsim.sessions.importers import ImportFailed, import_csv, import_jigsaws
from surgsim.sessions.io import (
    IntegrityError,
    read_key,
    read_meta,
    read_session,
    sign_session,
    verify_session,
    write_session,
)
from surgsim.sessions.recorder import JournalInUse, SessionRecorder, recover_partial
from surgsim.sessions.session import CHANNELS, FORMAT_VERSION, Session, SessionError, Track

__all__ = [
    "CHANNELS",
    "FORMAT_VERSION",
    "ImportFailed",
    "IntegrityError",
    "JournalInUse",
    "Session",
    "SessionError",
    "SessionRecorder",
    "Track",
    "import_csv",
    "import_jigsaws",
    "read_key",
    "read_meta",
    "read_session",
    "recover_partial",
    "sign_session",
    "verify_session",
    "write_session",
]
