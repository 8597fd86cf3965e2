"""Folders of sessions: grade or measure every file, in parallel workers, with a progress bar.

A file that cannot be read or graded (missing, not a session, bad columns, NaN, time not
increasing, empty, failed integrity check, no gradable metric) becomes a :class:`Failure`
naming the file and the problem; the batch goes on with the others.
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

from surgsim.scoring.calibrate import Measured
from surgsim.scoring.metrics import MetricSettings, compute_metrics
from surgsim.scoring.report import (
    atomic_write, cohort_figure, session_figure, session_report, summary_row, write_json, write_summary,
)
from surgsim.scoring.rubric import Rubric, RubricError, default_rubric, load_rubric
from surgsim.scoring.score import ScoreError, score_metrics
from surgsim.sessions.io import read_session
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


def find_sessions(paths: Sequence[str | Path]) -> tuple[list[tuple[Path, Path]], list[Failure]]:
    """(file, folder it was found under) for every ``*.parquet`` under the given folders or files."""
    found: list[tuple[Path, Path]] = []
    failures = []
    for path in map(Path, paths):
        if path.is_dir():
            found += [(f, path) for f in sorted(path.rglob(f"*{SUFFIX}")) if f.is_file()]
        elif path.is_file():
            found.append((path, path.parent))
        else:
            failures.append(Failure(str(path), f"{path}: no such file or folder"))
    return found, failures


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


def _grade_one(job: tuple[Path, Path, Path, str | None, bool]) -> dict[str, Any] | Failure:
    path, root, out, rubric_path, figures = job
    try:
        session = read_session(path)
        rubric = _rubric(rubric_path, session.meta.get("task"))
        metrics = compute_metrics(session, rubric.metric_settings())
        score = score_metrics(metrics.combined, rubric)
        report = session_report(str(path), session, metrics, score)
        stem = out / path.relative_to(root).with_suffix("")
        write_json(stem.with_suffix(".json"), report)
        if figures:
            session_figure(stem.with_suffix(".png"), session, metrics, score)
        return summary_row(report)
    except _EXPECTED as exc:
        return Failure(str(path), str(exc))


def grade_folder(
    paths: Sequence[str | Path],
    out: str | Path,
    *,
    rubric: str | Path | None = None,
    workers: int = 1,
    figures: bool = True,
    progress: bool = True,
) -> Batch:
    """Grade every session under ``paths`` into ``out``: per-session JSON (+ PNG), summary.csv,
    failures.csv and cohort.png. The rubric is ``rubric`` or each session's task default."""
    out = Path(out)
    found, failures = find_sessions(paths)
    rubric_path = str(rubric) if rubric is not None else None
    if rubric_path is not None:
        load_rubric(rubric_path)  # a bad rubric fails the batch once, not every file
    jobs = [(f, root, out, rubric_path, figures) for f, root in found]
    batch = Batch(failures=failures)
    for result in run_all(_grade_one, jobs, workers, "score", progress):
        (batch.failures if isinstance(result, Failure) else batch.results).append(result)
    out.mkdir(parents=True, exist_ok=True)
    write_summary(out / "summary.csv", batch.results)
    atomic_write(out / "failures.csv", lambda f: csv.writer(f).writerows(
        [("file", "problem"), *((x.file, str(x)) for x in batch.failures)]))
    if figures and batch.results:
        cohort_figure(out / "cohort.png", batch.results)
    return batch


def _measure_one(job: tuple[Path, MetricSettings]) -> Measured | Failure:
    path, settings = job
    try:
        session = read_session(path)
        return Measured(str(path), compute_metrics(session, settings).combined, session.meta)
    except _EXPECTED as exc:
        return Failure(str(path), str(exc))


def measure_folder(
    paths: Sequence[str | Path], settings: MetricSettings | None = None, *, workers: int = 1, progress: bool = True
) -> Batch:
    """The combined metrics and metadata of every session under ``paths`` (for calibration)."""
    found, failures = find_sessions(paths)
    settings = settings or MetricSettings()
    batch = Batch(failures=failures)
    for result in run_all(_measure_one, [(f, settings) for f, _ in found], workers, "measure", progress):
        (batch.failures if isinstance(result, Failure) else batch.results).append(result)
    return batch
