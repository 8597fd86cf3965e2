"""Scorer throughput: samples scored per second on one core, and batch grading of many sessions.

    python benchmarks/scoring.py                 # both parts
    python benchmarks/scoring.py --results r.md  # also write the figures as markdown
    python benchmarks/scoring.py --sessions 200  # a smaller batch

1. One-hour two-hand session at 100 Hz (360,000 time samples, 2 instruments): a synthetic
   trial (8 minimum-jerk reaches with tremor, hesitations and detours, orientation, gripper)
   run along its reference path and back, repeated for an hour. Timed: metrics + score, best of ``--repeat`` runs, in
   this process with BLAS limited to one thread. Goal: >= 2,000,000 instrument samples/s.
2. Batch: ``--sessions`` small synthetic sessions written as Parquet, graded by
   :func:`surgsim.scoring.batch.grade_folder` (read + verify digest + metrics + score + JSON +
   summary CSV) with 1 worker and with every CPU; per-session figures timed on a few sessions.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from tqdm import tqdm  # noqa: E402

from surgsim.scoring.batch import grade_folder, workers_default  # noqa: E402
from surgsim.scoring.metrics import compute_metrics  # noqa: E402
from surgsim.scoring.rubric import default_rubric  # noqa: E402
from surgsim.scoring.score import score_metrics  # noqa: E402
from surgsim.scoring.synthetic import synthetic_session  # noqa: E402
from surgsim.sessions import Session, Track, write_session  # noqa: E402

GOAL = 2_000_000


def hour_session(rng: np.random.Generator, rate_hz: float = 100.0, seconds: float = 3600.0) -> Session:
    """A two-hand drill repeated for ``seconds``: one synthetic trial along its reference path and
    back, over and over (continuous motion), cut to exactly ``seconds * rate_hz`` samples."""
    n = int(seconds * rate_hz)
    trial = synthetic_session(rng, 0.5, reaches=8, rate_hz=rate_hz, hands=2)

    def loop(values: np.ndarray) -> np.ndarray:
        there_and_back = np.concatenate([values, values[::-1][1:]])
        return np.resize(there_and_back, (n, *values.shape[1:]))

    tracks = {k: Track(loop(t.position), loop(t.orientation), loop(t.gripper)) for k, t in trial.tracks.items()}
    return Session(np.arange(n) / rate_hz, tracks, {}, trial.meta)


def bench_throughput(repeat: int) -> tuple[float, int, int, int]:
    """Best seconds to score the one-hour session, time samples, instruments, reference vertices."""
    session = hour_session(np.random.default_rng(0))
    rubric = default_rubric(None)
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        score_metrics(compute_metrics(session, rubric.metric_settings()).combined, rubric)
        best = min(best, time.perf_counter() - start)
    return best, session.n_samples, len(session.tracks), len(session.meta["reference_path"])


def bench_batch(sessions: int, workers: int, folder: Path, figures: bool) -> float:
    """Seconds to grade every session under ``folder`` into a fresh report folder."""
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        batch = grade_folder([folder], out, workers=workers, figures=figures, progress=True)
        elapsed = time.perf_counter() - start
    if batch.failures or len(batch.results) != sessions:
        raise RuntimeError(f"batch failed: {batch.failures[:3]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--figures", type=int, default=10, help="sessions to time with per-session PNGs")
    parser.add_argument("--results", type=Path, default=None, help="also write the figures here (markdown)")
    args = parser.parse_args()

    seconds, n, hands, vertices = bench_throughput(args.repeat)
    rate = n * hands / seconds
    lines = [
        f"one-hour two-hand session at 100 Hz ({n:,} time samples x {hands} instruments, reference path of "
        f"{vertices} vertices): metrics + score in {seconds:.3f} s = {rate:,.0f} instrument samples/s "
        f"({n / seconds:,.0f} time samples/s) on one core; goal {GOAL:,}: {'met' if rate >= GOAL else 'NOT met'}",
    ]
    print(lines[-1])

    cpus = workers_default()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        rng = np.random.default_rng(1)
        samples = 0
        for i in tqdm(range(args.sessions), desc="write sessions", unit="session"):
            s = synthetic_session(rng, float(rng.uniform()), trainee=f"t{i % 50:02d}", trial=i // 50 + 1)
            samples += s.n_samples
            write_session(s, folder / f"t{i:04d}.parquet")
        for workers in sorted({1, cpus}):
            elapsed = bench_batch(args.sessions, workers, folder, figures=False)
            lines.append(
                f"batch of {args.sessions:,} sessions ({samples / args.sessions:,.0f} samples each on average), "
                f"no figures, {workers} worker(s): {elapsed:.1f} s = {args.sessions / elapsed:,.1f} sessions/s"
            )
            print(lines[-1])
        few = Path(tmp) / "few"
        few.mkdir()
        for f in sorted(folder.glob("*.parquet"))[: args.figures]:
            (few / f.name).write_bytes(f.read_bytes())
        elapsed = bench_batch(args.figures, cpus, few, figures=True)
        lines.append(
            f"with per-session PNG figures, {args.figures} sessions, {cpus} worker(s): {elapsed:.1f} s = "
            f"{elapsed / args.figures * cpus:.2f} s of one core per session"
        )
        print(lines[-1])

    header = (
        f"## Scorer throughput (benchmarks/scoring.py)\n\n"
        f"Command: `python {' '.join(sys.argv)}`. Machine: {os.cpu_count()} cores "
        f"(shared), no GPU, Python {platform.python_version()}.\n\n"
    )
    if args.results is not None:
        args.results.write_text(header + "".join(f"- {line}\n" for line in lines))
        print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
