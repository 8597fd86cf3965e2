"""Reference path planning on the patient's anatomy: the pre-operative volume, the planner,
path utilities and the path dataset for the supervised predictor."""

from surgsim.planning.paths import PathCheck, check_tip_path, resample
from surgsim.planning.planner import Plan, PlanningError, plan
from surgsim.planning.volume import Volume, preop_volume

__all__ = ["PathCheck", "Plan", "PlanningError", "Volume", "check_tip_path", "plan", "preop_volume", "resample"]
