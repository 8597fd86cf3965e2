"""Skill assessment of recorded sessions: metrics, rubrics, scores, calibration and reports.

Works on :class:`surgsim.sessions.Session` objects alone and never imports PyBullet, so it grades
sessions recorded anywhere (simulator, da Vinci kinematics, trackers).
"""

from surgsim.scoring.calibrate import CalibrationError, Evaluation, Measured, evaluate, fit_rubric
from surgsim.scoring.critical import CriticalError, detect_critical_errors
from surgsim.scoring.metrics import METRICS, MetricSettings, SessionMetrics, compute_metrics
from surgsim.scoring.rubric import Rubric, RubricError, default_rubric, load_rubric, save_rubric
from surgsim.scoring.score import Score, ScoreError, score_metrics, score_session

__all__ = [
    "METRICS",
    "CalibrationError",
    "CriticalError",
    "Evaluation",
    "Measured",
    "MetricSettings",
    "Rubric",
    "RubricError",
    "Score",
    "ScoreError",
    "SessionMetrics",
    "compute_metrics",
    "default_rubric",
    "detect_critical_errors",
    "evaluate",
    "fit_rubric",
    "load_rubric",
    "save_rubric",
    "score_metrics",
    "score_session",
]
