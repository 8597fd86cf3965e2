"""Per-session kinematic features for the skill assessor (:mod:`surgsim.scoring.assessor`).

The rubric's metrics (:mod:`surgsim.scoring.metrics`) say how a session compares with experts;
these features describe the motion more fully: translation, orientation and rotation, angular
velocity, gripper use, frequency content and tremor, per hand, between the hands, and master
against patient side where both are recorded (JIGSAWS imported with ``master=True``: tracks
``master_left`` / ``master_right``).

Every feature is a plain number in SI units (or a count, rate or fraction), named
``<track>.<feature>`` per instrument (``left.rotation``, ``tool.tremor_fraction``), averaged over
the instruments (``instruments.rotation``) and over the console arms (``master.rotation``), or
``<feature>`` per session (``completion_time``, ``bimanual_speed_correlation``). A feature whose
inputs are absent (no orientation, no gripper, one hand only, no master side) is ``None``, never
0. Signals are put on a uniform time grid first (positions and gripper linearly, orientation by
spherical interpolation), so irregularly sampled sessions are measured like regular ones.

:data:`SKILL_DOMAINS` is the assessor's fixed, a-priori list: which features it uses and in
which direction skill moves each, grouped by what they measure.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from scipy import signal
from scipy.spatial.transform import Rotation, Slerp

from surgsim.scoring.batch import Batch, Failure, _failure, _session_paths, run_all
from surgsim.scoring.calibrate import Measured
from surgsim.scoring.metrics import MetricSettings, compute_metrics
from surgsim.sessions.io import read_session
from surgsim.sessions.session import Session, Track

#: tracks of the surgeon's console (master side); the others are instruments (patient side)
MASTER_PREFIX = "master_"
#: prefixes of the per-side averages of the per-track features
AVERAGES = ("instruments", "master")
#: physiological tremor band (Hz): the share of velocity power in it is ``tremor_fraction``
TREMOR_BAND_HZ = (4.0, 12.0)
#: spectra ignore slower content than this (Hz): drift, not movement
SPECTRUM_MIN_HZ = 0.2
#: a gripper that moves less than this (rad, between its 5th and 95th percentiles) never opens
GRIPPER_MIN_RANGE = 0.05


@dataclass(frozen=True)
class FeatureInfo:
    """What a feature means, for reports and for the model's input transform."""

    unit: str
    label: str  #: plain words
    log: bool = False  #: a positive scale (time, length, energy): the model sees its logarithm


#: per-instrument features (named ``<track>.<key>``)
TRACK_FEATURES: dict[str, FeatureInfo] = {
    "path_length": FeatureInfo("m", "path length", log=True),
    "mean_speed": FeatureInfo("m/s", "mean speed"),
    "peak_speed": FeatureInfo("m/s", "peak speed (low-passed)"),
    "acceleration_rms": FeatureInfo("m/s^2", "RMS acceleration", log=True),
    "idle_fraction": FeatureInfo("1", "idle fraction"),
    "movements_per_minute": FeatureInfo("1/min", "movements per minute"),
    "ldlj": FeatureInfo("1", "smoothness (log dimensionless jerk)"),
    "sparc": FeatureInfo("1", "smoothness (spectral arc length)"),
    "workspace_volume": FeatureInfo("m^3", "workspace volume", log=True),
    "depth_perception": FeatureInfo("m", "motion along the tool axis", log=True),
    "tremor_fraction": FeatureInfo("1", "share of velocity power at 4-12 Hz (tremor)"),
    "spectral_centroid": FeatureInfo("Hz", "mean frequency of the velocity spectrum"),
    "rotation": FeatureInfo("rad", "total rotation of the instrument", log=True),
    "rotation_per_length": FeatureInfo("rad/m", "rotation per path length", log=True),
    "angular_speed_median": FeatureInfo("rad/s", "median angular speed"),
    "angular_speed_p90": FeatureInfo("rad/s", "90th percentile of angular speed"),
    "orientation_spread": FeatureInfo("rad", "RMS angle from the mean orientation"),
    "gripper_travel": FeatureInfo("rad", "gripper travel", log=True),
    "gripper_cycles_per_minute": FeatureInfo("1/min", "gripper open-close cycles per minute"),
    "gripper_open_fraction": FeatureInfo("1", "fraction of time the gripper is open"),
}
#: per-session features
SESSION_FEATURES: dict[str, FeatureInfo] = {
    "completion_time": FeatureInfo("s", "completion time", log=True),
    "bimanual_speed_correlation": FeatureInfo("1", "correlation of the two instruments' speeds"),
    "both_moving_fraction": FeatureInfo("1", "fraction of time both instruments move"),
    "hand_balance": FeatureInfo("1", "path length of the less used instrument / the more used one"),
    "tool_distance_mean": FeatureInfo("m", "mean distance between the instruments", log=True),
    "tool_distance_sd": FeatureInfo("m", "SD of the distance between the instruments", log=True),
    "motion_scale": FeatureInfo("1", "instrument path / console (master) path", log=True),
}


#: The assessor's features, by what they measure, each with the direction skill moves it (+1: a
#: higher value is more skilled). Set by domain knowledge (economy of motion,
#: speed, smoothness, bimanual dexterity), not fitted: a few surgeons cannot teach reliable weights
#: or signs, and a fixed list carries over to tasks nobody tuned it on. Patient side and per-session
#: features only, so the index means the same with or without the console arms. Each domain counts
#: equally, so features that measure the same thing share its weight.
SKILL_DOMAINS: dict[str, dict[str, int]] = {
    "efficiency": {"completion_time": -1, "instruments.path_length": -1, "instruments.depth_perception": -1,
                   "instruments.rotation": -1},
    "speed": {"instruments.mean_speed": +1, "instruments.peak_speed": +1, "instruments.angular_speed_p90": +1,
              "instruments.idle_fraction": -1},
    "smoothness": {"instruments.ldlj": +1, "instruments.sparc": +1, "instruments.tremor_fraction": -1},
    "bimanual": {"bimanual_speed_correlation": +1, "both_moving_fraction": +1},
    "gripper": {"instruments.gripper_travel": -1},
}


def feature_info(name: str) -> FeatureInfo | None:
    """The :class:`FeatureInfo` of a full feature name (``left.rotation`` or ``completion_time``);
    None for a name that is not one of these features (e.g. a rubric metric)."""
    if name in SESSION_FEATURES:
        return SESSION_FEATURES[name]
    return TRACK_FEATURES.get(name.rpartition(".")[2]) if "." in name else None


def feature_label(name: str) -> str:
    """Plain words for a full feature name: ``left.rotation`` -> ``left: total rotation ...``."""
    info = feature_info(name)
    if info is None:
        return name
    track, _, key = name.rpartition(".")
    label = info.label
    where = {"instruments": "instruments (mean)", "master": "console (mean)"}.get(track, track.replace("_", " "))
    return f"{where}: {label}" if track else label


def _average(name: str, values: list[float | None]) -> float | None:
    """Mean of the available values; geometric for positive scales (the model sees their log)."""
    values = [v for v in values if v is not None]
    if not values:
        return None
    if TRACK_FEATURES[name].log:
        return float(np.exp(np.mean(np.log(values)))) if min(values) > 0 else None
    return float(np.mean(values))


# ------------------------------------------------------------------ signals
def uniform(session: Session) -> Session:
    """``session`` on a uniform time grid of as many samples (itself when already uniform)."""
    time = np.asarray(session.time, dtype=float)
    n = len(time)
    duration = float(time[-1] - time[0]) if n else 0.0
    dt = np.diff(time)
    if n < 3 or dt.max() - dt.min() <= 1e-3 * duration / (n - 1):
        return session
    grid = np.linspace(time[0], time[-1], n)
    tracks = {}
    for name, track in session.tracks.items():
        position = np.column_stack([np.interp(grid, time, track.position[:, k]) for k in range(3)])
        orientation = None
        if track.orientation is not None:
            orientation = Slerp(time, Rotation.from_quat(track.orientation))(grid).as_quat()
        gripper = np.interp(grid, time, track.gripper) if track.gripper is not None else None
        tracks[name] = Track(position, orientation, gripper)
    return Session(grid, tracks, {}, session.meta)


def _lowpass(values: np.ndarray, fs: float, cutoff: float) -> np.ndarray:
    """Zero-phase 4th-order Butterworth low-pass along axis 0 (unchanged when it cannot apply)."""
    if not 2 * cutoff < fs or len(values) < 16:
        return values
    return signal.sosfiltfilt(signal.butter(4, cutoff, fs=fs, output="sos"), values, axis=0)


def velocity_spectrum(position: np.ndarray, fs: float) -> tuple[np.ndarray, np.ndarray] | None:
    """Frequencies (Hz) and power of the velocity (summed over x, y, z) above SPECTRUM_MIN_HZ (Welch)."""
    if len(position) < 16:
        return None
    velocity = np.diff(position, axis=0) * fs
    freq, power = signal.welch(velocity, fs=fs, nperseg=min(256, len(velocity)), axis=0)
    keep = freq > SPECTRUM_MIN_HZ
    return freq[keep], power.sum(axis=1)[keep]


def tremor_fraction(position: np.ndarray, fs: float) -> float | None:
    """Share of the velocity power in :data:`TREMOR_BAND_HZ` (None when the band is above Nyquist)."""
    low, high = TREMOR_BAND_HZ
    spectrum = velocity_spectrum(position, fs)
    if spectrum is None or fs / 2 <= low or not spectrum[1].sum() > 0:
        return None
    freq, power = spectrum
    return float(power[(freq >= low) & (freq <= high)].sum() / power.sum())


def spectral_centroid(position: np.ndarray, fs: float) -> float | None:
    """Power-weighted mean frequency (Hz) of the velocity."""
    spectrum = velocity_spectrum(position, fs)
    if spectrum is None or not spectrum[1].sum() > 0:
        return None
    freq, power = spectrum
    return float((freq * power).sum() / power.sum())


def rotation_steps(orientation: np.ndarray) -> np.ndarray:
    """Rotation vectors (n-1, 3), rad, from each orientation to the next, in the instrument's frame."""
    rotations = Rotation.from_quat(orientation)
    return (rotations[:-1].inv() * rotations[1:]).as_rotvec()


def orientation_spread(orientation: np.ndarray) -> float:
    """RMS angle (rad) between each orientation and their mean orientation."""
    rotations = Rotation.from_quat(orientation)
    angles = (rotations.mean().inv() * rotations).magnitude()
    return float(np.sqrt(np.mean(angles * angles)))


def gripper_cycles(gripper: np.ndarray) -> int:
    """Open-close cycles of a gripper angle: closings after an opening, with hysteresis.

    Open is above 70 % and closed below 30 % of the range between the 5th and 95th percentiles,
    so jitter around one threshold is no cycle; a range under :data:`GRIPPER_MIN_RANGE` has none.
    """
    low, high = np.percentile(gripper, [5, 95])
    if high - low < GRIPPER_MIN_RANGE:
        return 0
    state = np.where(gripper > low + 0.7 * (high - low), 1, np.where(gripper < low + 0.3 * (high - low), 0, -1))
    settled = state[state >= 0]  # the hysteresis band keeps the previous state
    return int(np.count_nonzero((settled[:-1] == 1) & (settled[1:] == 0)))


# ------------------------------------------------------------------ features
def _track_features(track: Track, metrics: dict[str, float | None], fs: float, duration: float,
                    settings: MetricSettings) -> dict[str, float | None]:
    f: dict[str, float | None] = dict.fromkeys(TRACK_FEATURES)
    for key in ("path_length", "mean_speed", "peak_speed", "idle_fraction", "ldlj", "sparc",
                "workspace_volume", "depth_perception", "gripper_travel"):
        f[key] = metrics.get(key)
    minutes = duration / 60
    if metrics.get("movements") is not None and minutes > 0:
        f["movements_per_minute"] = metrics["movements"] / minutes
    position = np.asarray(track.position, dtype=float)
    if len(position) >= 16:
        velocity = _lowpass(np.diff(position, axis=0) * fs, fs, settings.lowpass_hz)
        acceleration = np.diff(velocity, axis=0) * fs
        f["acceleration_rms"] = float(np.sqrt(np.mean(np.einsum("ij,ij->i", acceleration, acceleration))))
    f["tremor_fraction"] = tremor_fraction(position, fs)
    f["spectral_centroid"] = spectral_centroid(position, fs)
    if track.orientation is not None and len(position) >= 2:
        steps = rotation_steps(np.asarray(track.orientation, dtype=float))
        angles = np.linalg.norm(steps, axis=1)
        f["rotation"] = float(angles.sum())
        if f["path_length"]:
            f["rotation_per_length"] = f["rotation"] / f["path_length"]
        angular_speed = np.linalg.norm(_lowpass(steps * fs, fs, settings.lowpass_hz), axis=1)
        f["angular_speed_median"] = float(np.median(angular_speed))
        f["angular_speed_p90"] = float(np.percentile(angular_speed, 90))
        f["orientation_spread"] = orientation_spread(np.asarray(track.orientation, dtype=float))
    if track.gripper is not None and minutes > 0:
        gripper = np.asarray(track.gripper, dtype=float)
        f["gripper_cycles_per_minute"] = gripper_cycles(gripper) / minutes
        low, high = np.percentile(gripper, [5, 95])
        f["gripper_open_fraction"] = float(np.mean(gripper > (low + high) / 2)) if high - low >= GRIPPER_MIN_RANGE else 0.0
    return f


def session_features(session: Session, settings: MetricSettings | None = None) -> dict[str, float | None]:
    """Every feature of a valid session: ``<track>.<feature>`` per instrument, then per-session ones
    (see :data:`TRACK_FEATURES`, :data:`SESSION_FEATURES`); ``None`` where not available."""
    settings = settings or MetricSettings()
    session = uniform(session)
    duration = session.duration
    out: dict[str, float | None] = dict.fromkeys(SESSION_FEATURES)
    out["completion_time"] = duration
    if duration <= 0:
        return out
    fs = (session.n_samples - 1) / duration
    patient = {k: t for k, t in session.tracks.items() if not k.startswith(MASTER_PREFIX)}
    master = {k: t for k, t in session.tracks.items() if k.startswith(MASTER_PREFIX)}
    for average, side in zip(AVERAGES, (patient, master)):
        if not side:
            continue
        with np.errstate(all="ignore"):
            metrics = compute_metrics(Session(session.time, side, {}, {}), settings)
        per_track = {name: _track_features(track, metrics.instruments[name], fs, duration, settings)
                     for name, track in side.items()}
        for name, values in per_track.items():
            out.update({f"{name}.{key}": value for key, value in values.items()})
        for key in TRACK_FEATURES:
            out[f"{average}.{key}"] = _average(key, [values[key] for values in per_track.values()])
        if side is patient and len(side) == 2:
            out["bimanual_speed_correlation"] = metrics.combined.get("bimanual_dexterity")
            (_, s1), (_, s2) = metrics.speed.values()
            out["both_moving_fraction"] = float(np.mean((s1 >= settings.idle_speed) & (s2 >= settings.idle_speed)))
            paths = sorted(metrics.instruments[name]["path_length"] or 0.0 for name in side)
            out["hand_balance"] = paths[0] / paths[1] if paths[1] > 0 else None
            first, second = (np.asarray(t.position, dtype=float) for t in side.values())
            distance = np.linalg.norm(first - second, axis=1)
            out["tool_distance_mean"] = float(distance.mean())
            out["tool_distance_sd"] = float(distance.std())
    pairs = [(out.get(f"{name}.path_length"), out.get(f"{MASTER_PREFIX}{name}.path_length")) for name in patient]
    ratios = [p / m for p, m in pairs if p is not None and m]
    out["motion_scale"] = float(np.mean(ratios)) if ratios else None
    return {k: (v if v is None or math.isfinite(v) else None) for k, v in out.items()}


# ------------------------------------------------------------------ folders
def _measure_one(path: Path) -> Measured | Failure:
    try:
        session = read_session(path)
        return Measured(str(path), session_features(session), session.meta)
    except Exception as exc:  # one file, whatever went wrong, never the batch
        return _failure(path, exc)


def measure_features(paths: Sequence[str | Path], *, workers: int = 1, progress: bool = True) -> Batch:
    """The features (as :class:`Measured` values) and metadata of every session under ``paths``."""
    found, failures = _session_paths(paths)
    batch = Batch(failures=failures)
    for result in run_all(_measure_one, found, workers, "features", progress):
        (batch.failures if isinstance(result, Failure) else batch.results).append(result)
    return batch
