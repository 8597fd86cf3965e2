"""Per-trainee history of graded attempts, kept across batches (``surgsim score --history DIR``).

One JSON-lines file per trainee in the history folder (``<trainee>.jsonl``; a name that is not
a plain file name is percent-encoded), one graded session per line. A session is keyed by the
content digest its file carries (``surgsim.sha256``, which covers every column and the
metadata), so grading the same session again, from any path, replaces its line instead of
adding an attempt. Each update rewrites the trainee's file whole under a temporary name and
renames it (a crash leaves the old file, never half of a new one), under an advisory lock on
``<DIR>/.lock`` so that two batches writing one history do not lose each other's attempts.

Only gradable sessions with a trainee are kept: a session too short to grade, or with no
trainee in its metadata, is no attempt of anyone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator
from urllib.parse import quote

import pyarrow.parquet as pq

from surgsim._files import atomic_write_text
from surgsim.errors import SurgsimError
from surgsim.sessions.io import DIGEST_KEY, read_meta, strict_json

SUFFIX = ".jsonl"
LOCK = ".lock"
#: longer encoded names are replaced by their SHA-256 (file names stop at 255 bytes)
_MAX_NAME = 200


class HistoryError(SurgsimError):
    """A history folder or file that cannot be used; the message names it and the problem."""


@dataclass
class Added:
    """What an update did: attempts added, replaced (graded again), unchanged, and sessions not
    kept (no trainee)."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    no_trainee: list[str] = field(default_factory=list)


def trainee_name(value: Any) -> str | None:
    """The trainee a session's meta names (any JSON value): a non-empty string or an integer as
    text, else None (no trainee)."""
    if isinstance(value, bool) or not isinstance(value, (str, int)):
        return None
    name = str(value).strip()
    return name or None


def file_stem(trainee: str) -> str:
    """The file name (without suffix) of a trainee: the name itself when it is a plain file name,
    else percent-encoded (``Dr Who`` -> ``Dr%20Who``, a leading dot too); a very long one hashed."""
    stem = quote(trainee, safe="")
    if stem.startswith("."):
        stem = "%2E" + stem[1:]
    return stem if len(stem) <= _MAX_NAME else hashlib.sha256(trainee.encode()).hexdigest()


def _finite(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def attempt_record(report: dict[str, Any], meta: dict[str, Any], digest: str) -> dict[str, Any] | None:
    """One history line from a session's JSON report (:func:`surgsim.scoring.report.session_report`)
    and its file's metadata: identity, difficulty, grade, critical errors (none when the report
    has no such field) and every available combined metric in report units, with its z and points
    lost when graded (none for an attempt failed before its motion could be graded: too short,
    its metrics mean nothing). None for a session that is not gradable or has no trainee."""
    trainee = trainee_name(report.get("trainee"))
    if trainee is None or not report.get("gradable"):
        return None
    source = meta.get("source")
    difficulty = meta.get("difficulty") or (source.get("difficulty") if isinstance(source, dict) else None)
    metrics = {}
    motion_graded = report.get("metric_score") is not None
    for name, item in (report.get("metrics") or {}).items() if motion_graded else ():
        shown = _finite(item.get("shown", item.get("value")))
        if shown is None:
            continue
        entry = {"shown": shown, "unit": item.get("shown_unit", item.get("unit"))}
        if "points_lost" in item:
            entry.update(z=_finite(item.get("z")), points_lost=_finite(item["points_lost"]))
        metrics[name] = entry
    return {
        "digest": digest,
        "trainee": trainee,
        "file": os.path.abspath(report["file"]) if isinstance(report.get("file"), str) else None,
        "task": report.get("task"),
        "rubric": report.get("rubric"),
        "difficulty": difficulty,
        "trial": report.get("trial"),
        "recorded_at": meta.get("recorded_at"),
        "score": report["score"],
        "level": report.get("level"),
        "critical_errors": report.get("critical_errors") or [],
        "metrics": metrics,
    }


def session_digest(path: str | Path) -> str:
    """The content digest a session file carries (read from its footer, not recomputed: the
    batch that graded the file has verified it)."""
    metadata = pq.read_schema(path).metadata or {}
    digest = metadata.get(DIGEST_KEY, b"").decode("ascii", "replace")
    if not digest:
        raise HistoryError(f"{path}: no integrity digest to key its history entry")
    return digest


def attempt_order(record: dict[str, Any]) -> tuple:
    """Attempts in the order they were made: by meta ``recorded_at`` where present, then by a
    numbered trial (others after), then by file path with its numbers compared as numbers (the
    recorder numbers its files in order; ``s2`` before ``s10``), so the order never depends on
    the order folders were graded in."""
    trial = record.get("trial")
    number = isinstance(trial, (int, float)) and not isinstance(trial, bool)
    path = [(0, int(part), "") if part.isdigit() else (1, 0, part)
            for part in re.split(r"(\d+)", str(record.get("file") or "")) if part]
    return str(record.get("recorded_at") or ""), not number, trial if number else 0, path


class History:
    """The history folder: read a trainee's attempts, add graded sessions."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        if self.folder.exists() and not self.folder.is_dir():
            raise HistoryError(f"history {self.folder}: not a folder")

    def _files(self) -> list[Path]:
        if not self.folder.is_dir():
            return []
        # dot files are the lock and temporary files of an unfinished write
        return sorted(f for f in self.folder.glob(f"*{SUFFIX}") if not f.name.startswith("."))

    def _read(self, path: Path) -> list[dict[str, Any]]:
        """Every record of one file, checked (two trainees may share a file on a file system that
        ignores case; records carry their trainee)."""
        if not path.is_file():
            return []
        records = []
        try:
            lines = path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise HistoryError(f"history {path}: cannot read ({exc})") from None
        for n, line in enumerate(lines, 1):
            try:
                record = strict_json(line)
            except ValueError as exc:
                raise HistoryError(f"history {path}: line {n} is not valid JSON ({exc})") from None
            if not (isinstance(record, dict) and isinstance(record.get("digest"), str)
                    and isinstance(record.get("trainee"), str) and _finite(record.get("score")) is not None):
                raise HistoryError(f"history {path}: line {n} is not an attempt (needs digest, trainee and score)")
            records.append(record)
        return records

    def check(self) -> None:
        """Read every file, so that a damaged history fails before a batch, not after it."""
        for path in self._files():
            self._read(path)

    def trainees(self) -> list[str]:
        """Every trainee with an attempt, sorted."""
        return sorted({r["trainee"] for path in self._files() for r in self._read(path)})

    def attempts(self, trainee: str) -> list[dict[str, Any]]:
        """The trainee's attempts in the order they were made (see :func:`attempt_order`); raises
        :class:`HistoryError` for a trainee with none."""
        path = self.folder / f"{file_stem(trainee)}{SUFFIX}"
        records = [r for r in self._read(path) if r["trainee"] == trainee]
        if not records:
            known = self.trainees()
            if not known:
                raise HistoryError(f"history {self.folder}: no attempts of any trainee; a history folder is "
                                   "the one `surgsim score DIR --out REPORT --history HISTORY` writes to")
            listed = ", ".join(known[:20]) + (", ..." if len(known) > 20 else "")
            raise HistoryError(f"history {self.folder}: no attempts of trainee {trainee!r} (trainees: {listed})")
        return sorted(records, key=attempt_order)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.folder.mkdir(parents=True, exist_ok=True)
        with open(self.folder / LOCK, "a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield

    def add(self, records: Iterable[dict[str, Any]]) -> Added:
        """Add attempts; one already there (same digest) is replaced where its grade changed."""
        added = Added()
        by_file: dict[Path, list[dict[str, Any]]] = {}
        for record in records:
            by_file.setdefault(self.folder / f"{file_stem(record['trainee'])}{SUFFIX}", []).append(record)
        with self._locked():
            for path, new in by_file.items():
                kept = {r["digest"]: r for r in self._read(path)}  # insertion order: entry order
                for record in new:
                    old = kept.get(record["digest"])
                    if old is None:
                        added.new += 1
                    elif old == record:
                        added.unchanged += 1
                    else:
                        added.updated += 1
                    kept[record["digest"]] = record
                lines = (json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in kept.values())
                atomic_write_text(path, "".join(lines))
        return added

    def add_reports(self, graded: Iterable[tuple[Path, Path]]) -> Added:
        """Add the sessions of a graded batch: (session file, its JSON report) pairs."""
        records, no_trainee = [], []
        for session, report_path in graded:
            report = json.loads(Path(report_path).read_text())
            if not report.get("gradable"):
                continue
            record = attempt_record(report, read_meta(session), session_digest(session))
            if record is None:
                no_trainee.append(str(session))
            else:
                records.append(record)
        added = self.add(records)
        added.no_trainee = no_trainee
        return added
