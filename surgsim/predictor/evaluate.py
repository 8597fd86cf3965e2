"""Evaluate a trained predictor on a dataset split against the planner it learned from.

Reports (lengths in mm, times in ms):

* waypoint error: mean over all waypoints, the largest single one, the endpoint (target) error;
* safety: each checked scenario is rebuilt in PyBullet from its seed and the predicted tip path
  is checked with the same collision queries as the planner's (``check_tip_path``): the share
  that is collision-free, and its minimum clearance against the planner's;
* latency per scenario: the planner (``plan(task)``) against the predictor one at a time and
  in a batch, as ratios measured in the same run. The predictor's inputs (the pre-operative
  volume) are made by the env either way; their export time is reported on its own.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from surgsim._files import atomic_write_json
from surgsim.predictor.data import DatasetError, load_split, read_meta
from surgsim.predictor.plots import path_figure
from surgsim.predictor.predictor import PREDICT_CHUNK, PathPredictor, PredictorError

#: a rebuilt scenario whose target moved more than this (m) is not the one in the dataset
_REBUILD_TOLERANCE = 1e-5


@dataclass
class EvalOptions:
    split: str = "test"
    #: scenarios for the waypoint errors (None: the whole split)
    limit: int | None = None
    #: scenarios rebuilt in PyBullet for the collision check and planner timing (None: all of ``limit``)
    n_check: int | None = 200
    #: scenarios predicted one at a time for the single-scenario latency
    n_single: int = 100
    n_plot: int = 4
    device: str = "cpu"
    #: torch CPU threads while evaluating (None: leave torch's setting); 1 is fastest for one
    #: scenario at a time and is the fair match for the single-threaded planner
    threads: int | None = 1
    progress: bool = True

    def check(self) -> None:
        """Raise :class:`PredictorError` naming the first option out of range."""
        for name, low in (("limit", 1), ("n_check", 0), ("n_single", 1), ("n_plot", 0), ("threads", 1)):
            value = getattr(self, name)
            if value is not None and value < low:
                raise PredictorError(f"--{name.replace('_', '-')} {value!r}: expected an integer >= {low}")


def _stats_mm(values: np.ndarray) -> dict[str, float]:
    values = 1000.0 * np.asarray(values, dtype=np.float64)
    return {"mean": float(values.mean()), "median": float(np.median(values)),
            "p95": float(np.percentile(values, 95)), "max": float(values.max())}


def _synchronise(predictor: PathPredictor) -> None:
    if predictor.device.type == "cuda":
        torch.cuda.synchronize(predictor.device)


def evaluate(checkpoint: str | Path, data_dir: str | Path, out_json: str | Path,
             options: EvalOptions | None = None) -> dict[str, Any]:
    """Evaluate ``checkpoint`` on ``data_dir``; write the results to ``out_json`` and a PNG beside it."""
    options = options or EvalOptions()
    options.check()
    previous_threads = torch.get_num_threads()
    if options.threads is not None:
        torch.set_num_threads(options.threads)
    try:
        return _evaluate(Path(checkpoint), data_dir, Path(out_json), options)
    finally:
        torch.set_num_threads(previous_threads)


def _evaluate(checkpoint: Path, data_dir: str | Path, out_json: Path, options: EvalOptions) -> dict[str, Any]:
    meta = read_meta(data_dir)
    predictor = PathPredictor.load(checkpoint, device=options.device)
    predictor.check_dataset(meta)
    data = load_split(meta, options.split, options.limit, progress=options.progress)
    volume, start = data.volume.numpy(), data.start.numpy()
    planned = data.waypoints.numpy().astype(np.float64)
    n = len(data)

    # warm-up at both shapes timed below (allocations, CUDA kernels, cuDNN's autotuning)
    predictor.predict(volume[:1], start[:1])
    predictor.predict(volume[:PREDICT_CHUNK], start[:PREDICT_CHUNK])
    _synchronise(predictor)
    tic = time.perf_counter()
    predicted = predictor.predict(volume, start)
    _synchronise(predictor)
    batched_ms = 1000.0 * (time.perf_counter() - tic) / n

    n_single = min(options.n_single, n)
    tic = time.perf_counter()
    for i in range(n_single):
        predictor.predict(volume[i], start[i])
    single_ms = 1000.0 * (time.perf_counter() - tic) / n_single

    error = np.linalg.norm(predicted - planned, axis=-1)  # (N, K) m
    safety = _check_in_pybullet(meta, data, predicted, options)
    planner_ms = safety.pop("planner_ms")
    results: dict[str, Any] = {
        "checkpoint": str(checkpoint), "data": str(meta.root), "split": options.split,
        "env_id": meta.env_id, "task": meta.task, "scenarios": n, "device": str(predictor.device),
        "torch_threads": torch.get_num_threads(),
        "waypoint_error_mm": _stats_mm(error.mean(axis=1)) | {"max_single": float(1000 * error.max())},
        "endpoint_error_mm": _stats_mm(error[:, -1]),
        **safety,
        "latency_ms": {
            "planner": planner_ms,
            "predictor_single": single_ms,
            "predictor_batched": batched_ms,
            "batch_size": n,
            "single_scenarios": n_single,
        },
        "speedup": {
            "single": planner_ms / single_ms if planner_ms else None,
            "batched": planner_ms / batched_ms if planner_ms else None,
        },
    }
    k = min(options.n_plot, n)
    if k:
        figure = out_json.with_suffix(".png")
        labels = [f"{options.split} seed {int(s)}: mean error {1000 * e.mean():.1f} mm"
                  for s, e in zip(data.seed[:k].tolist(), error[:k])]
        path_figure(planned[:k], predicted[:k], labels, figure)
        results["figure"] = str(figure)
    atomic_write_json(out_json, results)
    return results


def _check_in_pybullet(meta, data, predicted: np.ndarray, options: EvalOptions) -> dict[str, Any]:
    """Rebuild each checked scenario from its seed; check the predicted path, time the planner."""
    n_check = len(data) if options.n_check is None else min(options.n_check, len(data))
    if n_check == 0:
        return {"checked": 0, "planner_ms": None}
    import gymnasium as gym  # PyBullet only from here: predicting and training never need it

    import surgsim  # noqa: F401  (registers the ids)
    from surgsim.planning.paths import check_tip_path
    from surgsim.planning.planner import PlanningError, plan
    from surgsim.planning.volume import preop_volume
    env = gym.make(meta.env_id, **meta.env_kwargs)
    free, clear_pred, clear_plan, reaches, plan_s, volume_s = [], [], [], [], [], []
    planner_failures = 0
    try:
        for i in tqdm(range(n_check), desc="checking in PyBullet", unit="scenario",
                      disable=not options.progress):
            seed = int(data.seed[i])
            env.reset(seed=seed)
            task = env.unwrapped.task
            moved = float(np.linalg.norm(np.asarray(task.target) - data.target[i].numpy()))
            if moved > _REBUILD_TOLERANCE:
                raise DatasetError(
                    f"{meta.root}: scenario seed {seed} rebuilds with its target {1000 * moved:.2f} mm "
                    f"away from the stored one; was the dataset made with another env version or "
                    f"env_kwargs {meta.env_kwargs}?"
                )
            tic = time.perf_counter()
            preop_volume(task)
            volume_s.append(time.perf_counter() - tic)
            tic = time.perf_counter()
            try:
                reference = plan(task)
            except PlanningError:
                planner_failures += 1
                reference = None
            plan_s.append(time.perf_counter() - tic)
            check = check_tip_path(task, predicted[i])
            free.append(bool(check.collision_free))
            reaches.append(bool(check.reaches_target))
            clear_pred.append(float(check.min_clearance))
            if reference is not None:
                clear_plan.append(float(reference.min_clearance))
    finally:
        env.close()
    clear_pred_a, clear_plan_a = np.array(clear_pred), np.array(clear_plan)
    return {
        "checked": n_check,
        "collision_free_rate": float(np.mean(free)),
        "reaches_target_rate": float(np.mean(reaches)),
        "planner_failures": planner_failures,
        "min_clearance_mm": {
            "predictor_mean": float(1000 * clear_pred_a.mean()),
            "predictor_min": float(1000 * clear_pred_a.min()),
            "planner_mean": float(1000 * clear_plan_a.mean()) if len(clear_plan_a) else None,
            "planner_min": float(1000 * clear_plan_a.min()) if len(clear_plan_a) else None,
        },
        "volume_export_ms": 1000.0 * float(np.mean(volume_s)),
        "planner_ms": 1000.0 * float(np.mean(plan_s)),
    }
