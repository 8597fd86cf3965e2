"""Read a path dataset (``surgsim predictor generate``) into torch Datasets, and its frame.

A dataset folder holds ``meta.json`` and compressed ``.npz`` shards per split (written by
:func:`surgsim.planning.dataset.generate`); every shard has ``volume`` uint8 (N, C, R, R, R),
``start`` float32 (N, S), ``waypoints`` float32 (N, K, 3) in metres, ``target`` float32 (N, 3)
and ``seed`` int64 (N,). Shards are read with ``allow_pickle=False``: a dataset from elsewhere
can hold no code.

``meta.json`` fields: ``format`` ("surgsim-paths"), ``version`` (1), ``env_id``, ``env_kwargs``,
``task``, ``resolution`` R, ``channels`` (C names), ``origin`` (3 numbers, m: the grid's MINIMUM
CORNER, i.e. the centre of voxel (0, 0, 0) minus half a voxel), ``voxel_size`` (m),
``n_waypoints`` K, ``start_fields`` (S names), ``splits`` (split -> shard paths relative to the
folder), optional ``counts`` and ``infeasible``.

Positions are normalised to the volume frame (the grid's centre maps to 0, its faces to +-1),
so the network works on numbers of order one whatever the patient size.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch.utils.data import Dataset
from tqdm import tqdm

from surgsim.errors import SurgsimError
from surgsim.predictor.model import MAX_RESOLUTION, MAX_WAYPOINTS

FORMAT = "surgsim-paths"
VERSION = 1
SPLITS = ("train", "val", "test")
_META_KEYS = (
    "format", "version", "env_id", "task", "resolution", "channels", "origin", "voxel_size",
    "n_waypoints", "start_fields", "splits",
)
_ARRAYS = ("volume", "start", "waypoints", "target", "seed")


class DatasetError(SurgsimError):
    """A dataset folder or shard that breaks the format; the message names the file."""


@dataclass(frozen=True)
class VolumeFrame:
    """The volume's axis-aligned box in world coordinates (m): its centre and half extents.

    ``origin`` is the grid's minimum corner, so voxel ``i`` spans
    ``origin + [i, i + 1) * voxel_size`` along each axis.
    """

    centre: np.ndarray
    half_extent: np.ndarray

    @classmethod
    def from_grid(cls, origin: Any, voxel_size: Any, resolution: int) -> "VolumeFrame":
        origin = np.asarray(origin, dtype=np.float64).reshape(3)
        size = np.broadcast_to(np.asarray(voxel_size, dtype=np.float64), (3,))
        half = size * resolution / 2.0
        return cls(centre=origin + half, half_extent=half.copy())

    def to_unit(self, points: np.ndarray) -> np.ndarray:
        """World metres -> volume frame (faces at +-1); any leading shape, last axis 3."""
        return (np.asarray(points, dtype=np.float64) - self.centre) / self.half_extent

    def from_unit(self, unit: np.ndarray) -> np.ndarray:
        """Volume frame -> world metres; the inverse of :meth:`to_unit`."""
        return np.asarray(unit, dtype=np.float64) * self.half_extent + self.centre


@dataclass(frozen=True)
class DatasetMeta:
    """The validated ``meta.json`` of a dataset folder."""

    root: Path
    env_id: str
    env_kwargs: dict[str, Any]
    task: str
    resolution: int
    channels: tuple[str, ...]
    origin: tuple[float, float, float]
    voxel_size: Any
    n_waypoints: int
    start_fields: tuple[str, ...]
    splits: dict[str, list[str]]
    counts: dict[str, Any] = field(default_factory=dict)

    @property
    def frame(self) -> VolumeFrame:
        return VolumeFrame.from_grid(self.origin, self.voxel_size, self.resolution)

    def shard_paths(self, split: str) -> list[Path]:
        if split not in self.splits:
            raise DatasetError(
                f"{self.root / 'meta.json'}: no split {split!r}; it has {sorted(self.splits)}"
            )
        return [self.root / name for name in self.splits[split]]


def read_meta(root: str | Path) -> DatasetMeta:
    """Read and check ``root/meta.json``; every problem names the file and the field."""
    root = Path(root)
    path = root / "meta.json"
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset folder not found (make one with `surgsim predictor generate`)")
    if not path.is_file():
        raise DatasetError(f"{path}: not found; is {root} a dataset made by `surgsim predictor generate`?")
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(raw, dict):
        raise DatasetError(f"{path}: expected a JSON object, got {type(raw).__name__}")
    missing = [key for key in _META_KEYS if key not in raw]
    if missing:
        raise DatasetError(f"{path}: missing field(s) {missing}")
    if raw["format"] != FORMAT:
        raise DatasetError(f"{path}: format {raw['format']!r} is not {FORMAT!r}")
    if raw["version"] != VERSION:
        raise DatasetError(f"{path}: version {raw['version']!r} is not supported (expected {VERSION})")
    resolution = raw["resolution"]
    if not isinstance(resolution, int) or not 4 <= resolution <= MAX_RESOLUTION:
        raise DatasetError(f"{path}: resolution {resolution!r} must be an integer from 4 to {MAX_RESOLUTION}")
    n_waypoints = raw["n_waypoints"]
    if not isinstance(n_waypoints, int) or not 2 <= n_waypoints <= MAX_WAYPOINTS:
        raise DatasetError(f"{path}: n_waypoints {n_waypoints!r} must be an integer from 2 to {MAX_WAYPOINTS}")
    origin = np.asarray(raw["origin"], dtype=np.float64)
    if origin.shape != (3,) or not np.isfinite(origin).all():
        raise DatasetError(f"{path}: origin {raw['origin']!r} must be 3 finite numbers (m)")
    voxel = np.asarray(raw["voxel_size"], dtype=np.float64)
    if voxel.shape not in ((), (3,)) or not (np.isfinite(voxel).all() and (voxel > 0).all()):
        raise DatasetError(f"{path}: voxel_size {raw['voxel_size']!r} must be one or 3 positive numbers (m)")
    splits = raw["splits"]
    if not isinstance(splits, dict) or not all(
        isinstance(v, list) and all(isinstance(s, str) for s in v) for v in splits.values()
    ):
        raise DatasetError(f"{path}: splits must map split names to lists of shard files")
    for key in ("channels", "start_fields"):
        if not isinstance(raw[key], list) or not raw[key]:
            raise DatasetError(f"{path}: {key} must be a non-empty list of names")
    return DatasetMeta(
        root=root,
        env_id=str(raw["env_id"]),
        env_kwargs=dict(raw.get("env_kwargs") or {}),
        task=str(raw["task"]),
        resolution=resolution,
        channels=tuple(raw["channels"]),
        origin=tuple(float(v) for v in origin),
        voxel_size=raw["voxel_size"],
        n_waypoints=n_waypoints,
        start_fields=tuple(raw["start_fields"]),
        splits={name: list(files) for name, files in splits.items()},
        counts=dict(raw.get("counts") or {}),
    )


def read_shard(path: Path, meta: DatasetMeta, keys: tuple[str, ...] = _ARRAYS) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of one shard, checked against ``meta`` (dtypes, shapes, equal lengths,
    finite). Only those arrays are read: the volumes alone need no path labels in the shard."""
    if not path.is_file():
        raise DatasetError(f"{path}: shard listed in {meta.root / 'meta.json'} not found")
    if not zipfile.is_zipfile(path):  # else np.load would take it for a pickle and say so
        raise DatasetError(f"{path}: not a readable .npz shard (not a zip archive)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            missing = [key for key in keys if key not in npz.files]
            if missing:
                raise DatasetError(f"{path}: missing array(s) {missing}; has {sorted(npz.files)}")
            arrays = {key: npz[key] for key in keys}
    except (zipfile.BadZipFile, OSError, EOFError) as exc:
        raise DatasetError(f"{path}: not a readable .npz shard ({exc})") from None
    except ValueError as exc:  # object arrays refused by allow_pickle=False, bad headers
        raise DatasetError(f"{path}: {exc}") from None
    n = len(arrays[keys[0]])
    R, C, S, K = meta.resolution, len(meta.channels), len(meta.start_fields), meta.n_waypoints
    expected = {
        "volume": ((n, C, R, R, R), np.uint8),
        "start": ((n, S), np.float32),
        "waypoints": ((n, K, 3), np.float32),
        "target": ((n, 3), np.float32),
        "seed": ((n,), np.int64),
    }
    for key in keys:
        shape, dtype = expected[key]
        array = arrays[key]
        if array.shape != shape:
            raise DatasetError(
                f"{path}: {key} has shape {array.shape}, expected {shape} "
                f"(C={C} channels, R={R}, S={S} start fields, K={K} waypoints from meta.json)"
            )
        if array.dtype != dtype:
            raise DatasetError(f"{path}: {key} has dtype {array.dtype}, expected {np.dtype(dtype)}")
    for key in {"start", "waypoints", "target"} & set(keys):
        if not np.isfinite(arrays[key]).all():
            raise DatasetError(f"{path}: {key} contains NaN or infinite values")
    return arrays


class PathDataset(Dataset):
    """One split in memory: item ``i`` is ``(volume uint8 (C,R,R,R), start (S,), waypoints (K,3) m)``.

    Indexing with a tensor of indices returns whole batches, which is how training reads it
    (far faster than collating single items). ``target`` and ``seed`` are kept for evaluation.
    """

    def __init__(self, meta: DatasetMeta, split: str, arrays: dict[str, np.ndarray]) -> None:
        self.meta = meta
        self.split = split
        self.volume = torch.from_numpy(arrays["volume"])
        self.start = torch.from_numpy(arrays["start"])
        self.waypoints = torch.from_numpy(arrays["waypoints"])
        self.target = torch.from_numpy(arrays["target"])
        self.seed = torch.from_numpy(arrays["seed"])

    def __len__(self) -> int:
        return len(self.seed)

    def __getitem__(self, index):
        return self.volume[index], self.start[index], self.waypoints[index]

    def to(self, device: torch.device | str) -> "PathDataset":
        """Move the tensors (volumes stay uint8) to ``device``; on a GPU this removes the copy per batch."""
        for name in ("volume", "start", "waypoints", "target", "seed"):
            setattr(self, name, getattr(self, name).to(device))
        return self

    def batches(self, batch_size: int, shuffle: bool = False,
                generator: torch.Generator | None = None) -> Iterator[tuple[torch.Tensor, ...]]:
        """``(volume, start, waypoints)`` batches; shuffled with ``generator`` when asked."""
        n = len(self)
        order = torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
        order = order.to(self.seed.device)
        for i in range(0, n, batch_size):
            yield self[order[i:i + batch_size]]


def _read_split(meta: DatasetMeta, split: str, keys: tuple[str, ...], limit: int | None,
                progress: bool) -> dict[str, np.ndarray]:
    """The arrays ``keys`` of every shard of ``split`` (at most ``limit`` scenarios), concatenated."""
    parts: list[dict[str, np.ndarray]] = []
    count = 0
    for path in tqdm(meta.shard_paths(split), desc=f"reading {split}", unit="shard", disable=not progress):
        if limit is not None and count >= limit:
            break
        arrays = read_shard(path, meta, keys)
        parts.append(arrays)
        count += len(arrays[keys[0]])
    if count == 0:
        raise DatasetError(f"{meta.root / 'meta.json'}: split {split!r} has no scenarios")
    return {key: np.concatenate([p[key] for p in parts])[:limit] for key in keys}


def load_split(root: str | Path | DatasetMeta, split: str, limit: int | None = None,
               progress: bool = False) -> PathDataset:
    """Read every shard of ``split`` (at most ``limit`` scenarios) into a :class:`PathDataset`."""
    meta = root if isinstance(root, DatasetMeta) else read_meta(root)
    return PathDataset(meta, split, _read_split(meta, split, _ARRAYS, limit, progress))


def load_volumes(root: str | Path | DatasetMeta, split: str, limit: int | None = None,
                 progress: bool = False) -> torch.Tensor:
    """The volumes of ``split`` alone, uint8 (N, C, R, R, R): no other array is read, so
    self-supervised pretraining never sees a path label (and runs on shards without any)."""
    meta = root if isinstance(root, DatasetMeta) else read_meta(root)
    return torch.from_numpy(_read_split(meta, split, ("volume",), limit, progress)["volume"])
