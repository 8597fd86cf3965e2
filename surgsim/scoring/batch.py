"""Folders of sessions: grade or measure every file, in parallel workers, with a progress bar.

A file that cannot be read or graded (missing, not a session, bad columns, NaN, time not
increasing, empty, failed integrity check, no gradable metric, a rubric of another task) becomes
a :class:`Failure` naming the file and the problem, and so does any unexpected error: the batch
goes on with the others and always writes its summary. A session too short to grade is no
failure: its report and summary row say ``gradable: false`` and why.
"""

from __future__ import annotations

import csv
import functools
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

from tqdm import tqdm

from surgsim._files import atomic_write_json
from surgsim.scoring.calibrate import Measured
from surgsim.scoring.critical import detect_critical_errors
from surgsim.scoring.metrics import MetricSettings, compute_metrics
from surgsim.scoring.report import (
    atomic_write, cohort_figure, session_figure, session_report, summary_row, write_summary,
)
from surgsim.scoring.rubric import Rubric, RubricError, default_rubric, load_rubric
from surgsim.scoring.score import ScoreError, grade_session
from surgsim.sessions.io import read_session, session_files
from surgsim.sessions.session import SessionError

T = TypeVar("T")
SUFFIX = ".parquet"


@dataclass(frozen=True)
class Failure:
    """A file the batch could not use, and why."""

    file: str
    problem: str

    def __str__(self) -> str:
        return self.problem if self.problem.startswith(self.file) else f"{self.file}: {self.problem}"


@dataclass
class Batch:
    """What a batch produced: per-file results (in file order) and the failures."""

    results: list[Any] = field(default_factory=list)
    failures: list[Failure] = field(default_factory=list)


#: what the batch itself writes in the report folder, beside the per-session reports
BATCH_FILES = ("summary.csv", "failures.csv", "cohort.png")
#: the per-session reports: ``<stem>.json`` and ``<stem>.png``
REPORT_SUFFIXES = (".json", ".png")


def _session_paths(paths: Sequence[str | Path]) -> tuple[list[Path], list[Failure]]:
    """Every ``*.parquet`` under the folders or files, once each (a file reached through two
    inputs is listed once), and a failure for each input that does not exist."""
    found: dict[str, Path] = {}
    failures = []
    for path in map(Path, paths):
        if not (path.is_dir() or path.is_file()):
            failures.append(Failure(str(path), f"{path}: no such file or folder"))
            continue
        for f in session_files(path, f"*{SUFFIX}"):
            found.setdefault(os.path.abspath(f), f)
    return list(found.values()), failures


def find_sessions(paths: Sequence[str | Path]) -> tuple[list[tuple[Path, Path]], list[Failure]]:
    """(file, its report path without suffix) for every ``*.parquet`` under the folders or files.

    Reports mirror the layout under the inputs' common folder, so files of the same name in two
    inputs get two reports; a file reached through two inputs is graded once. See
    :func:`_report_stems` for the names.
    """
    files, failures = _session_paths(paths)
    roots = [os.path.abspath(path if path.is_dir() else path.parent) for path in map(Path, paths)
             if path.is_dir() or path.is_file()]
    common = os.path.commonpath(roots) if roots else ""
    relative = {f: Path(os.path.relpath(os.path.abspath(f), common)) for f in files}
    stems = _report_stems(list(relative.values()))
    placed = []
    for f in files:
        stem = stems.get(relative[f])
        if stem is None:
            folder = relative[f].parts[0]
            problem = f"its report folder {folder!r} has the name of a file the batch writes"
            failures.append(Failure(str(f), f"{f}: {problem} ({', '.join(BATCH_FILES)})"))
        else:
            placed.append((f, stem))
    return placed, failures


def _report_stems(relative: Sequence[Path]) -> dict[Path, Path]:
    """Each session's report path without suffix: its path under the common folder less
    ``.parquet`` (``a.1.parquet`` -> ``a.1``, reports ``a.1.json`` and ``a.1.png``).

    No two sessions share a report, and none takes a path the batch writes or a folder of reports
    (compared case-insensitively, as some file systems do): a name already taken gets ``~2``,
    ``~3``, ... (``cohort.parquet`` -> ``cohort~2.json``, beside the batch's ``cohort.png``). A
    session whose report folder would be a batch file (``summary.csv/x.parquet``) is left out.
    """
    key = lambda path: path.as_posix().casefold()  # noqa: E731
    batch_files = {name.casefold() for name in BATCH_FILES}
    # paths no report may take: the batch's files, every folder of reports, the reports given so far
    taken = batch_files | {key(parent) for path in relative for parent in path.parents[:-1]}
    stems: dict[Path, Path] = {}
    for path in relative:
        if len(path.parts) > 1 and path.parts[0].casefold() in batch_files:
            continue
        base = stem = path.with_name(path.name.removesuffix(SUFFIX) or path.name)
        n = 1
        while any(key(stem) + suffix in taken for suffix in REPORT_SUFFIXES):
            n += 1
            stem = base.with_name(f"{base.name}~{n}")
        taken.update(key(stem) + suffix for suffix in REPORT_SUFFIXES)
        stems[path] = stem
    return stems


def workers_default() -> int:
    """One worker per CPU the process may use."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def run_all(fn: Callable[[T], Any], items: Sequence[T], workers: int, desc: str, progress: bool) -> list[Any]:
    """``[fn(item) for item in items]``, in ``workers`` processes when more than one, with tqdm."""
    bar = dict(total=len(items), desc=desc, unit="session", disable=not progress)
    if workers <= 1 or len(items) < 2:
        return [fn(item) for item in tqdm(items, **bar)]
    chunk = max(1, len(items) // (workers * 8))
    with ProcessPoolExecutor(max_workers=min(workers, len(items))) as pool:
        return list(tqdm(pool.map(fn, items, chunksize=chunk), **bar))


@functools.lru_cache(maxsize=32)
def _rubric(path: str | None, task: str | None) -> Rubric:
    return load_rubric(path) if path else default_rubric(task)


_EXPECTED = (SessionError, ScoreError, RubricError, ValueError, OSError)


def _failure(path: Path, exc: Exception) -> Failure:
    """The failure ``exc`` makes of ``path``; an error the scorer did not expect says what it was."""
    if isinstance(exc, _EXPECTED):
        return Failure(str(path), str(exc))
    return Failure(str(path), f"unexpected error ({type(exc).__name__}: {exc}); please report it")


def _grade_one(
    job: tuple[Path, Path], out: Path, rubric_path: str | None, figures: bool, any_task: bool
) -> dict[str, Any] | Failure:
    path, placed = job
    try:
        session = read_session(path)
        task = session.meta.get("task")
        rubric = _rubric(rubric_path, task if isinstance(task, str) else None)  # meta is any JSON
        graded = grade_session(session, rubric, any_task=any_task)
        report = session_report(str(path), session, graded, rubric=rubric)
        json_path, png_path = (out / placed.with_name(placed.name + s) for s in REPORT_SUFFIXES)
        atomic_write_json(json_path, report, allow_nan=False)  # values are finite or null
        if figures and graded.score:
            effects = [(e["effect"], e["sets_grade"]) for e in report["critical_errors"]]
            session_figure(png_path, session, graded.metrics, graded.score, effects)
        return summary_row(report)
    except Exception as exc:  # one file, whatever went wrong, never the batch
        return _failure(path, exc)


def grade_folder(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    rubric: str | Path | None = None,
    workers: int = 1,
    figures: bool = True,
    progress: bool = True,
    any_task: bool = False,
) -> Batch:
    """Grade every session under ``paths`` into ``out``: per-session JSON (+ PNG), summary.csv,
    failures.csv and cohort.png. The rubric is ``rubric`` or each session's task default; a
    rubric made for another task than a session's fails that session unless ``any_task``."""
    found, failures = find_sessions(paths)
    return grade_sessions(
        found, out, failures=failures, rubric=rubric, workers=workers, figures=figures, progress=progress,
        any_task=any_task,
    )


def grade_sessions(
    found: Sequence[tuple[Path, Path]],
    out: str | Path,
    *,
    failures: Sequence[Failure] = (),
    rubric: str | Path | None = None,
    workers: int = 1,
    figures: bool = True,
    progress: bool = True,
    any_task: bool = False,
) -> Batch:
    """:func:`grade_folder` of sessions already found by :func:`find_sessions` (``found`` and its
    ``failures``), for a caller that looked at them first: the inputs are walked once."""
    out = Path(out)
    failures = list(failures)
    rubric_path = str(rubric) if rubric is not None else None
    if rubric_path is not None:
        load_rubric(rubric_path)  # a bad rubric fails the batch once, not every file
    grade = functools.partial(_grade_one, out=out, rubric_path=rubric_path, figures=figures, any_task=any_task)
    batch = Batch(failures=failures)
    for result in run_all(grade, list(found), workers, "score", progress):
        (batch.failures if isinstance(result, Failure) else batch.results).append(result)
    out.mkdir(parents=True, exist_ok=True)
    summary, failed, cohort = (out / name for name in BATCH_FILES)
    write_summary(summary, batch.results)
    atomic_write(failed, lambda f: csv.writer(f).writerows(
        [("file", "problem"), *((x.file, str(x)) for x in batch.failures)]))
    if figures and any(row["gradable"] for row in batch.results):
        cohort_figure(cohort, batch.results)
    return batch


def _measure_one(job: tuple[Path, MetricSettings]) -> Measured | Failure:
    path, settings = job
    try:
        session = read_session(path)
        errors = tuple(detect_critical_errors(session, settings))
        return Measured(str(path), compute_metrics(session, settings).combined, session.meta, errors)
    except Exception as exc:  # one file, whatever went wrong, never the batch
        return _failure(path, exc)


def measure_folder(
    paths: Sequence[str | Path], settings: MetricSettings | None = None, *, workers: int = 1, progress: bool = True
) -> Batch:
    """The combined metrics, critical errors and metadata of every session under ``paths`` (for calibration).

    No reports are written, so no session fails for where its report would go."""
    found, failures = _session_paths(paths)
    settings = settings or MetricSettings()
    batch = Batch(failures=failures)
    for result in run_all(_measure_one, [(f, settings) for f in found], workers, "measure", progress):
        (batch.failures if isinstance(result, Failure) else batch.results).append(result)
    return batch
