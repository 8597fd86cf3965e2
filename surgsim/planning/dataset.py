"""Path dataset generation for the supervised predictor (``surgsim predictor generate``).

Scenario seeds ``seed .. seed + n - 1`` are split by seed into contiguous train / val / test
ranges (80 / 10 / 10 %), so no patient appears in two splits. Worker processes each build the
env once, then for every seed of a chunk: reset, plan (an infeasible scenario is skipped and
counted), export the pre-operative volume and resample the planned tip path to K waypoints by
arc length. Each chunk becomes one compressed ``.npz`` shard (plain arrays, no pickles) in its
split's folder, written atomically; ``meta.json`` (format in :mod:`surgsim.predictor.data`) is
written last, so a folder with a ``meta.json`` is complete.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from surgsim._files import atomic_save, atomic_write_json
from surgsim.errors import SurgsimError

#: scenarios per shard (and per unit of work handed to a worker)
CHUNK = 128
SPLIT_FRACTIONS = {"train": 0.8, "val": 0.1, "test": 0.1}
FORMAT, VERSION = "surgsim-paths", 1

_ENV: dict[str, Any] = {}


def _make_env(env_id: str, env_kwargs: dict[str, Any]):
    """The env, with the straight reference: _scenario plans each patient itself, so the env's
    reset need not plan it too (a spec's default ``reference: planner`` would)."""
    import gymnasium as gym

    import surgsim  # noqa: F401  (registers the ids)

    return gym.make(env_id, **env_kwargs, reference="straight")


def split_ranges(seed: int, n: int) -> dict[str, range]:
    """Contiguous seed ranges per split (val and test get at least one seed when n >= 3)."""
    n_val = max(1 if n >= 3 else 0, round(SPLIT_FRACTIONS["val"] * n))
    n_test = max(1 if n >= 3 else 0, round(SPLIT_FRACTIONS["test"] * n))
    n_train = n - n_val - n_test
    return {
        "train": range(seed, seed + n_train),
        "val": range(seed + n_train, seed + n_train + n_val),
        "test": range(seed + n_train + n_val, seed + n),
    }


def _init_worker(env_id: str, env_kwargs: dict[str, Any]) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _ENV["env"] = _make_env(env_id, env_kwargs)


def _save_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Compressed .npz, written atomically."""
    atomic_save(path, lambda tmp: np.savez_compressed(tmp, **arrays))


def _scenario(env, seed: int, n_waypoints: int) -> dict[str, np.ndarray] | None:
    from surgsim.planning.paths import resample
    from surgsim.planning.planner import PlanningError, plan

    env.reset(seed=seed)
    unwrapped = env.unwrapped
    task = unwrapped.task
    try:
        tips = plan(task).tips
    except PlanningError:
        return None
    return {
        "volume": unwrapped.preop_volume().data,
        "start": task.start_vector().astype(np.float32),
        "waypoints": resample(tips, n_waypoints).astype(np.float32),
        "target": task.path_end().astype(np.float32),
        "seed": np.int64(seed),
    }


def _run_chunk(job: tuple[str, int, int, int, str]) -> tuple[str, str | None, int, int]:
    """Plan seeds ``first .. first + count - 1`` of ``split``; write their shard. Returns
    (split, shard file relative to the root or None, scenarios written, infeasible)."""
    split, first, count, n_waypoints, root = job
    env = _ENV["env"]
    rows = [_scenario(env, s, n_waypoints) for s in range(first, first + count)]
    kept = [r for r in rows if r is not None]
    if not kept:
        return split, None, 0, count
    name = f"{split}/shard_{first:09d}.npz"
    _save_npz(Path(root) / name, {key: np.stack([r[key] for r in kept]) for key in kept[0]})
    return split, name, len(kept), count - len(kept)


def _describe(env_id: str, env_kwargs: dict[str, Any]) -> dict[str, Any]:
    """Task name, volume grid and start fields, from one env built here."""
    env = _make_env(env_id, env_kwargs)
    try:
        env.reset(seed=0)
        unwrapped = env.unwrapped
        volume = unwrapped.preop_volume()
        return {
            "task": unwrapped.task_spec.task,
            "resolution": volume.resolution,
            "channels": list(volume.channels),
            # the grid's minimum corner (voxel i spans origin + [i, i + 1) * voxel_size)
            "origin": [float(v) for v in volume.origin - volume.voxel_size / 2],
            "voxel_size": float(volume.voxel_size),
            "start_fields": list(unwrapped.task.start_fields),
        }
    finally:
        env.close()


def generate(env_id: str, n: int, out: str | Path, workers: int = 2, seed: int = 0,
             n_waypoints: int = 16, env_kwargs: dict[str, Any] | None = None,
             progress: bool = True) -> Path:
    """Plan ``n`` scenarios (seeds ``seed`` ..) of ``env_id`` in ``workers`` processes and write
    the dataset folder ``out``; returns it. ``out`` must not exist or be empty."""
    import gymnasium as gym

    import surgsim  # noqa: F401

    if n < 1:
        raise SurgsimError(f"n must be >= 1 scenarios, got {n}")
    if n_waypoints < 2:
        raise SurgsimError(f"n_waypoints must be >= 2, got {n_waypoints}")
    if workers < 1:
        raise SurgsimError(f"workers must be >= 1, got {workers}")
    if env_id not in gym.registry:
        raise SurgsimError(f"unknown env id {env_id!r}; see `surgsim envs`")
    env_kwargs = dict(env_kwargs or {})
    unused = sorted({"reference", "predictor", "reference_obs", "render_mode"} & set(env_kwargs))
    if unused:
        raise SurgsimError(f"env kwargs {unused} do not apply to dataset generation (the planner makes the paths)")
    root = Path(out)
    if root.exists() and (not root.is_dir() or any(root.iterdir())):
        raise FileExistsError(f"{root}: exists and is not an empty folder; choose a new --out")
    header = _describe(env_id, env_kwargs)
    for split in SPLIT_FRACTIONS:
        (root / split).mkdir(parents=True, exist_ok=True)
    jobs = [
        (split, first, min(CHUNK, seeds.stop - first), n_waypoints, str(root))
        for split, seeds in split_ranges(seed, n).items()
        for first in range(seeds.start, seeds.stop, CHUNK)
    ]
    shards: dict[str, list[str]] = {split: [] for split in SPLIT_FRACTIONS}
    counts = dict.fromkeys(SPLIT_FRACTIONS, 0)
    infeasible = 0
    context = get_context("spawn")  # PyBullet clients and torch threads do not survive fork well
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker,
                             initargs=(env_id, env_kwargs)) as pool, \
            tqdm(total=n, desc=f"planning {env_id}", unit="scenario", disable=not progress) as bar:
        for split, name, kept, skipped in pool.map(_run_chunk, jobs):
            if name is not None:
                shards[split].append(name)
            counts[split] += kept
            infeasible += skipped
            bar.update(kept + skipped)
    meta = {
        "format": FORMAT, "version": VERSION, "env_id": env_id, "env_kwargs": env_kwargs,
        **header, "n_waypoints": n_waypoints, "splits": shards, "counts": counts,
        "infeasible": infeasible, "seeds": {k: [r.start, r.stop] for k, r in split_ranges(seed, n).items()},
    }
    atomic_write_json(root / "meta.json", meta)
    return root
