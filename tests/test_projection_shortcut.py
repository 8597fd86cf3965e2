"""The per-step projections' shortcuts (issue 12, point 8) give the full NumPy search's answer
bit for bit: the same nearest segment (the first on ties) and the same floats."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import surgsim  # noqa: F401  (registers the ids)


@pytest.fixture(scope="module")
def incision():
    env = gym.make("surgsim/Incision-v0")
    yield env
    env.close()


def _queries(rng, curve):
    """Random walks near the curve with steps of 0.01-8 mm, the curve's own vertices and
    points on its segments (exact and near ties between neighbouring segments)."""
    walk = curve[0] + np.cumsum(rng.normal(size=(300, 2)) * rng.choice([1e-5, 1e-3, 3e-3, 8e-3], size=(300, 1)), axis=0)
    on = curve[:-1] + rng.uniform(0, 1, (len(curve) - 1, 1)) * np.diff(curve, axis=0)
    return np.vstack([walk, curve, on, curve[::-1] + 1e-12])


def test_incision_projection_shortcut_matches_the_full_search(incision):
    rng = np.random.default_rng(0)
    task = incision.unwrapped.task
    for seed in range(8):
        incision.reset(seed=seed)
        for xy in _queries(rng, task.curve):
            got = task._project(xy)
            full = task._full_projection(xy, float(xy[0]), float(xy[1]))
            assert got == full, (seed, xy.tolist())
