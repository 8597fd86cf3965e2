"""The public face of a trained predictor: load a checkpoint, predict waypoints in metres.

A checkpoint is ONE file (``models/path.pt`` by convention) written by :func:`save_checkpoint`:
``torch.save`` of ``{"format", "config" (the PredictorConfig as a JSON string), "state_dict"}``.
It is read only with ``torch.load(weights_only=True)``, which accepts tensors, strings and
containers and refuses any other pickled object, so a checkpoint received from someone else
cannot run code.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch
from pydantic import BaseModel, ValidationError
from torch import nn

from surgsim._files import atomic_save
from surgsim.errors import SurgsimError, validation_problem
from surgsim.predictor.data import DatasetMeta
from surgsim.predictor.model import CONFIG_FORMAT, PathNet, PredictorConfig

C = TypeVar("C", bound=BaseModel)

#: largest batch sent through the network at once by :meth:`PathPredictor.predict`
PREDICT_CHUNK = 256


class PredictorError(SurgsimError):
    """A checkpoint that cannot be used, or input that does not fit it; names the file."""


def config_problem(exc: ValidationError) -> str:
    """A pydantic error as one line: ``field: problem`` for each, joined by ``; ``."""
    return validation_problem(exc, "config", limit=60)


def resolve_device(device: str | torch.device) -> torch.device:
    """``"auto"``: CUDA when present, else CPU; ``"cuda"`` without a GPU is an error, not a fallback."""
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise PredictorError(f"device {device!r} is not valid; expected auto, cpu or cuda[:n]") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise PredictorError(f"device {device!r} asked for, but no CUDA GPU is available; use auto or cpu")
    return resolved


def save_checkpoint(model: PathNet, config: PredictorConfig, path: str | Path) -> Path:
    """Write weights + config to ``path`` atomically (a temp file beside it, then a rename)."""
    payload = {
        "format": CONFIG_FORMAT,
        "config": config.model_dump_json(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
    }
    return atomic_save(path, lambda tmp: torch.save(payload, tmp))


def read_checkpoint(path: Path, device: torch.device, tag: str, kind: str) -> dict:
    """The payload dict of a checkpoint file whose ``format`` is ``tag`` (e.g. ``surgsim-path-predictor``),
    read with ``weights_only=True``; ``kind`` (``predictor``, ``encoder``) names it in errors."""
    if not path.is_file():
        hint = " (a folder; pass the .pt file inside)" if path.is_dir() else ""
        raise PredictorError(f"{path}: {kind} checkpoint not found{hint}")
    try:
        payload = torch.load(path, map_location=device, weights_only=True)
    except Exception as exc:  # torch raises RuntimeError, UnpicklingError, EOFError, ... on bad files
        raise PredictorError(
            f"{path}: not a readable {kind} checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != tag:
        raise PredictorError(f"{path}: not a {tag.replace('-', ' ')} checkpoint (no {tag!r} format tag)")
    return payload


def checkpoint_config(payload: dict, path: Path, config_type: type[C], kind: str) -> C:
    """The pydantic config stored (as JSON) in a checkpoint's payload, or an error naming ``path``."""
    try:
        return config_type.model_validate_json(payload["config"])
    except ValidationError as exc:
        raise PredictorError(f"{path}: bad {kind} config: {config_problem(exc)}") from None
    except (KeyError, TypeError) as exc:
        raise PredictorError(f"{path}: bad {kind} config: {type(exc).__name__}: {exc}") from None


def load_weights(module: nn.Module, payload: dict, path: Path) -> None:
    """Load the payload's ``state_dict`` into ``module`` (strictly), or raise naming ``path``."""
    state = payload.get("state_dict")
    if not isinstance(state, dict):
        raise PredictorError(f"{path}: checkpoint holds no state_dict")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        detail = " ".join(str(exc).split())  # torch lists every key over several lines
        raise PredictorError(
            f"{path}: weights do not match the config stored with them: {detail[:300]}"
            + ("..." if len(detail) > 300 else "")
        ) from None


class PathPredictor:
    """A trained path predictor: ``PathPredictor.load(path).predict(volume, start)`` -> waypoints (m)."""

    def __init__(self, model: PathNet, config: PredictorConfig, path: Path, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.config = config
        self.path = path
        self.device = device

    @classmethod
    def load(cls, path: str | Path, device: str | torch.device = "cpu",
             task: str | None = None) -> "PathPredictor":
        """Load a checkpoint; ``task`` (e.g. ``"surgical_path"``) refuses one trained for another task."""
        path = Path(path)
        target = resolve_device(device)
        payload = read_checkpoint(path, target, CONFIG_FORMAT, "predictor")
        config = checkpoint_config(payload, path, PredictorConfig, "predictor")
        if task is not None and config.task != task:
            raise PredictorError(
                f"{path}: checkpoint was trained for task {config.task!r} ({config.env_id}), not {task!r}"
            )
        try:
            model = PathNet(config)
        except ValueError as exc:
            raise PredictorError(f"{path}: bad predictor config: {exc}") from None
        load_weights(model, payload, path)
        return cls(model, config, path, target)

    # ------------------------------------------------------------- checks
    @property
    def volume_shape(self) -> tuple[int, int, int, int]:
        r = self.config.resolution
        return (len(self.config.channels), r, r, r)

    def check_dataset(self, meta: DatasetMeta) -> None:
        """Raise unless ``meta`` describes data of the kind this checkpoint was trained on."""
        c = self.config
        pairs = {
            "task": (c.task, meta.task),
            "resolution": (c.resolution, meta.resolution),
            "channels": (list(c.channels), list(meta.channels)),
            "start_fields": (list(c.start_fields), list(meta.start_fields)),
            "n_waypoints": (c.n_waypoints, meta.n_waypoints),
        }
        bad = [f"{k}: checkpoint {mine!r}, dataset {theirs!r}" for k, (mine, theirs) in pairs.items()
               if mine != theirs]
        if bad:
            raise PredictorError(
                f"{self.path} does not fit the dataset {meta.root}: " + "; ".join(bad)
            )

    def _inputs(self, volume: Any, start: Any) -> tuple[np.ndarray, np.ndarray, bool]:
        volume, start = np.asarray(volume), np.asarray(start)
        single = volume.ndim == 4
        if single:
            volume, start = volume[None], start[None]
        expected = self.volume_shape
        if volume.ndim != 5 or volume.shape[1:] != expected:
            raise PredictorError(
                f"volume has shape {np.asarray(volume).shape[int(single):]}, but {self.path} expects "
                f"{expected} (channels {self.config.channels}, resolution {self.config.resolution}) "
                "or a batch (B, *that)"
            )
        n_fields = len(self.config.start_fields)
        if start.shape != (volume.shape[0], n_fields):
            shape = start.shape[1:] if single else start.shape
            want = (n_fields,) if single else (volume.shape[0], n_fields)
            raise PredictorError(
                f"start has shape {shape}, expected {want} (fields {self.config.start_fields})"
            )
        if not (np.issubdtype(volume.dtype, np.number) or volume.dtype == bool):
            raise PredictorError(f"volume dtype {volume.dtype} is not numeric")
        if not np.isfinite(start).all():
            raise PredictorError(f"start contains NaN or infinite values: {start.tolist()}")
        return volume, start.astype(np.float32), single

    # ------------------------------------------------------------ predict
    @torch.inference_mode()
    def predict(self, volume: Any, start: Any) -> np.ndarray:
        """Waypoints of the tool tip in metres: (C,R,R,R) + (S,) -> (K, 3); (B,C,R,R,R) + (B,S) -> (B, K, 3)."""
        volume, start, single = self._inputs(volume, start)
        if volume.dtype == bool:
            volume = volume.astype(np.uint8)
        out = []
        for i in range(0, len(volume), PREDICT_CHUNK):
            v = torch.from_numpy(np.ascontiguousarray(volume[i:i + PREDICT_CHUNK])).to(self.device)
            s = torch.from_numpy(start[i:i + PREDICT_CHUNK]).to(self.device)
            out.append(self.model.from_unit(self.model(v, s)).cpu().numpy())
        waypoints = np.concatenate(out).astype(np.float64)
        return waypoints[0] if single else waypoints
