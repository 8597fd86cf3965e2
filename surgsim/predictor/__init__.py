"""Supervised surgical path predictor: a 3D CNN from the pre-operative volume and start pose to
the planner's waypoints (``surgsim predictor generate | train | eval``).

    from surgsim.predictor import PathPredictor
    predictor = PathPredictor.load("models/path.pt", task="surgical_path")
    waypoints = predictor.predict(volume, start)   # (K, 3) metres, or (B, K, 3) for a batch
"""

from surgsim._extras import require

require("predictor", "surgsim.predictor (the path predictor)")

from surgsim.predictor.data import DatasetError, PathDataset, load_split, read_meta  # noqa: E402
from surgsim.predictor.model import PathNet, PredictorConfig  # noqa: E402
from surgsim.predictor.predictor import PathPredictor, PredictorError, resolve_device  # noqa: E402

__all__ = [
    "DatasetError", "PathDataset", "PathNet", "PathPredictor", "PredictorConfig", "PredictorError",
    "load_split", "read_meta", "resolve_device",
]
