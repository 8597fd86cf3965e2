"""The in-memory recorded session: what the recorder and importers produce and the scorer reads.

A session is a time series of instrument motion (one or two hands) plus optional simulator
channels, with JSON-able metadata. Units are SI throughout (seconds, metres, radians, newtons).
This module has no PyBullet and no file format: see ``surgsim.sessions.io`` for Parquet.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from surgsim.errors import SurgsimError

FORMAT_VERSION = 1

#: optional per-sample channels a session may carry, with their unit
CHANNELS: dict[str, str] = {
    "reward": "",
    "contact_force": "N",
    "critical_contact": "bool",
    "clearance": "m",
    "depth": "m",
    "tissue_damage": "SurgicalPath m^2, Incision m (cumulative)",
    "distance_to_target": "m",
    "success": "bool",
}
#: action channels are named action_0, action_1, ...
ACTION_PREFIX = "action_"
#: observation channels (``SessionRecorder(record_obs=True)``) are named obs_0, obs_1, ...
OBS_PREFIX = "obs_"


class SessionError(SurgsimError):
    """A session that breaks the format; the message names the source and the problem."""


@dataclass
class Track:
    """One instrument's motion, sampled at the session's times."""

    position: np.ndarray  # (T, 3) tip position, m
    orientation: np.ndarray | None = None  # (T, 4) quaternion x, y, z, w
    gripper: np.ndarray | None = None  # (T,) gripper opening angle, rad


@dataclass
class Session:
    """A recorded session.

    ``tracks`` maps instrument names (``"tool"`` for one hand, ``"left"`` / ``"right"`` for two)
    to their motion; ``channels`` maps names from :data:`CHANNELS` (or ``action_<i>``) to (T,)
    arrays. ``meta`` is JSON-able: format_version, source, sampling_rate_hz, task, trainee,
    labels, reference_path (list of [x, y, z] in m), target ([x, y, z] in m), events
    (list of {"time": s, "name": str}), ...
    """

    time: np.ndarray
    tracks: dict[str, Track]
    channels: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)

    def validate(self, source: str = "session") -> "Session":
        """Raise :class:`SessionError` naming ``source`` and the problem; return self when fine."""
        t = np.asarray(self.time)
        if t.ndim != 1 or len(t) == 0:
            raise SessionError(f"{source}: empty session (no samples)")
        if not np.isfinite(t).all():
            raise SessionError(f"{source}: column 'time' has NaN or infinite values")
        steps = np.diff(t)
        if len(steps) and (steps <= 0).any():
            i = int(np.argmax(steps <= 0)) + 1
            raise SessionError(
                f"{source}: time is not strictly increasing at row {i} ({float(t[i - 1])!r} -> {float(t[i])!r})"
            )
        if not self.tracks:
            raise SessionError(f"{source}: no instrument track")
        n = len(t)
        for name, track in self.tracks.items():
            for part, values, width in (
                ("position", track.position, 3),
                ("orientation", track.orientation, 4),
                ("gripper", track.gripper, None),
            ):
                if values is None:
                    continue
                shape = (n, width) if width else (n,)
                _check_array(source, f"{name}.{part}", values, shape)
        for name, values in self.channels.items():
            if name not in CHANNELS and not name.startswith((ACTION_PREFIX, OBS_PREFIX)):
                raise SessionError(f"{source}: unknown channel {name!r}; known: {sorted(CHANNELS)}")
            _check_array(source, name, values, (n,))
        return self

    @property
    def n_samples(self) -> int:
        return len(self.time)

    @property
    def duration(self) -> float:
        return float(self.time[-1] - self.time[0])


def _check_array(source: str, name: str, values: np.ndarray, shape: tuple[int, ...]) -> None:
    array = np.asarray(values)
    if array.shape != shape:
        raise SessionError(f"{source}: {name} has shape {array.shape}, expected {shape}")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        row = int(np.argwhere(~np.isfinite(array))[0][0])
        raise SessionError(f"{source}: {name} has NaN or infinite values (first at row {row})")
