"""Scores fall steadily with impairment: the shipped rubrics on cohorts of graded impairment (the
figures of benchmarks/score_resolution.py, on smaller cohorts), and no metric group carries a score."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from surgsim.scoring.calibrate import MAX_SHARE
from surgsim.scoring.critical import GATED_METRICS
from surgsim.scoring.rubric import GENERIC, Rubric, group_shares, load_rubric, rubric_dir
from surgsim.scoring.score import grade_session
from surgsim.scoring.synthetic import synthetic_session
from surgsim.sessions import read_session


def _resolution(sessions, rubric) -> tuple[float, dict[str, float]]:
    """Spearman(score, impairment) and the median score of each third of impairment."""
    rows = [(s.meta["labels"]["impairment"], grade_session(s, rubric, any_task=True).score) for s in sessions]
    impairment = np.array([i for i, g in rows if g is not None])
    scores = np.array([g.score for _, g in rows if g is not None])
    thirds = {"E": impairment < 1 / 3, "I": (impairment >= 1 / 3) & (impairment < 2 / 3), "N": impairment >= 2 / 3}
    return float(stats.spearmanr(scores, impairment).statistic), {k: float(np.median(scores[m])) for k, m in thirds.items()}


@pytest.mark.parametrize("kwargs", [{}, {"hands": 2}, {"reaches": 12}], ids=["one-hand", "two-hands", "12-reaches"])
def test_synthetic_scores_fall_steadily_with_impairment(kwargs) -> None:
    rng = np.random.default_rng(2024)  # not a seed of the generic rubric or of the benchmark
    sessions = [synthetic_session(rng, float(i), **kwargs) for i in np.linspace(0, 1, 21) for _ in range(4)]
    rho, median = _resolution(sessions, load_rubric(rubric_dir() / f"{GENERIC}.yaml"))
    assert rho <= -0.9
    assert median["E"] - median["I"] >= 15 and median["I"] - median["N"] >= 15, median
    assert median["N"] > 5  # novices keep their differences: not all at 0


@pytest.mark.parametrize("task, rho_at_most, gap", [("Incision", -0.9, 15), ("SurgicalPath", -0.85, 15),
                                                    ("NeedleReach", -0.75, 10)])
def test_degraded_simulator_experts_fall_steadily(tmp_path, task, rho_at_most, gap) -> None:
    # on these seeds Incision gives -0.930, SurgicalPath -0.905 and NeedleReach -0.824 (gaps 13 and
    # 24); over the blocks of benchmarks/score_resolution.py SurgicalPath meets -0.9 on the mean
    # (worst -0.898) and NeedleReach does not (-0.845): benchmarks/RESULTS.md, "Scorer resolution"
    from surgsim.scoring.make_rubrics import record_task

    record_task(f"surgsim/{task}-v0", tmp_path, range(300, 310))  # seeds not used to make the rubric
    sessions = [read_session(path) for path in sorted(tmp_path.glob("*.parquet"))]
    rho, median = _resolution(sessions, load_rubric(rubric_dir() / f"{task}.yaml"))
    assert rho <= rho_at_most
    assert median["E"] - median["I"] >= gap and median["I"] - median["N"] >= gap, median


def test_shipped_rubrics_state_a_share_limit_no_group_exceeds() -> None:
    for path in sorted(rubric_dir().glob("*.yaml")):
        rubric = load_rubric(path)
        assert rubric.max_share == MAX_SHARE, path.name
        shares = group_shares(rubric.metrics)
        assert max(shares.values()) <= MAX_SHARE + 1e-3, (path.name, shares)
        assert len(shares) >= 3, path.name
        # critical errors are gates with their default rules, not weighted metrics
        assert not set(GATED_METRICS) & set(rubric.metrics), path.name
        assert rubric.critical_errors == Rubric(task="x", metrics=rubric.metrics).critical_errors
