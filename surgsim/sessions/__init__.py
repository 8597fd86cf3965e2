"""Recorded sessions: the in-memory format, Parquet files, the recorder wrapper and importers."""

from surgsim.sessions.session import CHANNELS, FORMAT_VERSION, Session, SessionError, Track

__all__ = ["CHANNELS", "FORMAT_VERSION", "Session", "SessionError", "Track"]
