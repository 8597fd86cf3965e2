"""Recorded sessions: the in-memory format, Parquet files, the recorder wrapper and importers."""

from surgsim.sessions.importers import ImportFailed, import_csv, import_jigsaws
from surgsim.sessions.io import IntegrityError, read_meta, read_session, verify_session, write_session
from surgsim.sessions.recorder import SessionRecorder, recover_partial
from surgsim.sessions.session import CHANNELS, FORMAT_VERSION, Session, SessionError, Track

__all__ = [
    "CHANNELS",
    "FORMAT_VERSION",
    "ImportFailed",
    "IntegrityError",
    "Session",
    "SessionError",
    "SessionRecorder",
    "Track",
    "import_csv",
    "import_jigsaws",
    "read_meta",
    "read_session",
    "recover_partial",
    "verify_session",
    "write_session",
]
