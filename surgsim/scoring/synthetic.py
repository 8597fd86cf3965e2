"""Synthetic sessions whose skill is known by construction, for tests, benchmarks and demos.

An expert makes minimum-jerk reaches through a sequence of waypoints (the reference path);
``impairment`` in [0, 1] degrades the same reaches the way trainees do: physiological tremor
(8-11 Hz), hesitations (a reach split into two with a pause), detours (a via point off the
line), slower reaches and a final error at the target. No simulator is involved.
"""

from __future__ import annotations

import numpy as np

from surgsim.sessions.session import Session, Track


def minimum_jerk(start: np.ndarray, end: np.ndarray, n: int) -> np.ndarray:
    """``n`` samples (n, 3) of the minimum-jerk reach from ``start`` to ``end`` (both ends included)."""
    tau = np.linspace(0.0, 1.0, n)[:, None]
    shape = 10 * tau**3 - 15 * tau**4 + 6 * tau**5
    return np.asarray(start, dtype=float) + shape * (np.asarray(end, dtype=float) - start)


def _reach(rng: np.random.Generator, start, end, impairment: float, rate_hz: float) -> list[np.ndarray]:
    """One reach (and the rest after it) as a list of position blocks."""
    distance = float(np.linalg.norm(end - start))
    duration = (0.6 + 8.0 * distance) * (1.0 + 1.5 * impairment)
    blocks = []
    points = [start]
    if rng.random() < impairment:  # detour: a via point off the straight line
        lateral = rng.normal(size=3)
        lateral -= lateral @ (end - start) / max(distance**2, 1e-12) * (end - start)
        lateral /= max(np.linalg.norm(lateral), 1e-12)
        points.append((start + end) / 2 + lateral * 0.03 * impairment)
    if rng.random() < impairment:  # hesitation: stop part way
        points.insert(1, start + rng.uniform(0.3, 0.7) * (end - start))
    points.append(end + rng.normal(0.0, 0.003 * impairment, 3))
    for a, b in zip(points[:-1], points[1:]):
        n = max(3, int(duration / (len(points) - 1) * rate_hz))
        blocks.append(minimum_jerk(a, b, n)[1:])
        pause = 0.2 + 1.2 * impairment * rng.random() if b is not points[-1] else 0.0
        blocks.append(np.repeat(b[None], int(pause * rate_hz), axis=0))
    blocks.append(np.repeat(points[-1][None], int(0.3 * rate_hz), axis=0))
    return blocks


#: the task of synthetic sessions: ``generic.yaml`` was fitted on them, so it is their own rubric
SYNTHETIC_TASK = "synthetic"


def synthetic_session(
    rng: np.random.Generator,
    impairment: float = 0.0,
    *,
    reaches: int = 4,
    rate_hz: float = 100.0,
    hands: int = 1,
    task: str = SYNTHETIC_TASK,
    trainee: str = "synthetic",
    trial: int = 1,
) -> Session:
    """A session of ``reaches`` reaches between random waypoints, degraded by ``impairment``.

    ``impairment`` 0 is an expert, 1 a struggling novice. The metadata carries the reference
    path (the waypoints), the target (the last one) and labels: ``grs`` (30 - 22 * impairment,
    plus noise) and ``skill`` (E below 1/3, I below 2/3, else N).
    """
    if not 0.0 <= impairment <= 1.0:
        raise ValueError(f"impairment must be in [0, 1], got {impairment}")
    if hands not in (1, 2):
        raise ValueError(f"hands must be 1 or 2, got {hands}")
    waypoints = np.vstack([np.zeros(3), rng.uniform(-0.05, 0.05, (reaches, 3))])
    blocks = [waypoints[:1]]
    for a, b in zip(waypoints[:-1], waypoints[1:]):
        blocks += _reach(rng, a, b, impairment, rate_hz)
    position = np.vstack(blocks)
    n = len(position)
    time = np.arange(n) / rate_hz
    names = ["tool"] if hands == 1 else ["left", "right"]
    tracks = {}
    for k, name in enumerate(names):
        # the second hand mirrors the first, late by up to a second when impaired
        lag = int(rng.uniform(0.0, 1.0) * impairment * rate_hz) * k
        p = np.roll(position, lag, axis=0) * (1 - 2 * k, 1, 1)
        if lag:
            p[:lag] = p[lag]
        tremor = np.zeros_like(p)
        if impairment > 0:
            frequency = rng.uniform(8.0, 11.0, 3)
            phase = rng.uniform(0, 2 * np.pi, 3)
            tremor = 0.0008 * impairment * np.sin(2 * np.pi * frequency * time[:, None] + phase)
        angle = 0.2 * np.sin(2 * np.pi * 0.05 * time) * (1 + 3 * impairment)
        orientation = np.column_stack([np.sin(angle / 2), np.zeros(n), np.zeros(n), np.cos(angle / 2)])
        gripper = 0.5 + 0.3 * np.sin(2 * np.pi * 0.2 * time) + 0.05 * impairment * np.sin(2 * np.pi * 3 * time)
        tracks[name] = Track(p + tremor, orientation, gripper)
    grs = float(np.clip(round(30 - 22 * impairment + rng.normal(0, 1.5)), 6, 30))
    skill = "E" if impairment < 1 / 3 else "I" if impairment < 2 / 3 else "N"
    meta = {
        "source": "synthetic",
        "task": task,
        "trainee": trainee,
        "trial": trial,
        "sampling_rate_hz": rate_hz,
        "reference_path": waypoints.tolist(),
        "target": waypoints[-1].tolist(),
        "labels": {"grs": grs, "skill": skill, "impairment": impairment},
    }
    return Session(time, tracks, {}, meta)


def synthetic_cohort(
    rng: np.random.Generator, trainees: int = 9, trials: int = 3, **kwargs
) -> list[Session]:
    """Labelled sessions of ``trainees`` people of spread skill, ``trials`` each, improving slightly."""
    sessions = []
    for i, base in enumerate(np.linspace(0.0, 1.0, trainees)):
        for trial in range(1, trials + 1):
            impairment = float(np.clip(base - 0.03 * trial + rng.normal(0, 0.05), 0.0, 1.0))
            sessions.append(
                synthetic_session(rng, impairment, trainee=f"s{i:02d}", trial=trial, **kwargs)
            )
    return sessions
