"""Seeded episodes of every id reproduce the recorded golden traces bit for bit (see golden.py)."""

from __future__ import annotations

import numpy as np
import pytest
from golden import CASES, load, trace

GOLDEN = load()


def test_every_registered_id_has_a_trace_per_tissue():
    assert sorted(GOLDEN) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_episodes_reproduce_the_golden_trace(case):
    expected, actual = GOLDEN[case], trace(case)
    assert sorted(actual) == sorted(expected), "the traced fields changed"
    for key, want in expected.items():
        got = actual[key]
        assert got.shape == want.shape, f"{key}: shape {got.shape}, golden {want.shape} (episode length changed?)"
        same = np.array_equal(got, want, equal_nan=want.dtype.kind == "f")
        if not same:
            step = next(i for i in range(len(want)) if not np.array_equal(got[i], want[i], equal_nan=want.dtype.kind == "f"))
            pytest.fail(f"{key} differs first at step {step}: {got[step]!r}, golden {want[step]!r}")
