"""Motion metrics of a recorded session: what a skills lab measures, per instrument and combined.

Every metric is computed in SI units from the session's arrays with vectorised numpy / scipy
(no Python loop over samples). A metric whose inputs are absent from the session (no
orientation, no reference path, no contact channel, ...) is ``None``: *not available*, never 0.

Notation: samples ``p_i`` at times ``t_i`` (i = 0..n-1), steps ``d_i = p_{i+1} - p_i``,
``dt_i = t_{i+1} - t_i``, duration ``T = t_{n-1} - t_0``. Time integrals hold each sample over
its following interval (the last sample has no duration). The *low-passed velocity* ``v~`` is
the finite-difference velocity filtered forward and backward (zero phase) by a 4th-order
Butterworth low-pass at ``settings.lowpass_hz``; its norm is the *low-passed speed* ``s~``.
Signal metrics (movements, idle, peak speed, smoothness, bimanual) need uniform sampling: an
irregularly sampled track is first interpolated linearly onto a uniform grid of as many samples.
:data:`METRICS` holds each metric's formula; the README has them as a table.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from scipy import signal
from scipy.spatial import ConvexHull, QhullError

from surgsim.polyline import distance_to_polyline, progress_along_polyline, scaling_exponent
from surgsim.sessions.session import Session

Better = Literal["lower", "higher", "both"]


@dataclass(frozen=True)
class MetricInfo:
    """What a metric means: unit, which direction is better, how people read it."""

    unit: str  #: SI unit of the value
    better: Better  #: "lower" / "higher" is better, or "both" (any departure from experts is worse)
    resolution: float  #: smallest meaningful difference (SI): the floor of a calibrated std
    label: str  #: plain words for reports
    formula: str  #: the definition, for the docs
    report_unit: str = ""  #: the unit reports print (mm for lengths)
    report_scale: float = 1.0  #: value * report_scale is in report_unit
    per_instrument: bool = True  #: also reported per instrument
    #: metrics that measure the same thing share a group: calibration gives a group one weight,
    #: split equally among its metrics, and a rubric's max_share limits a group's share
    group: str = ""
    short: str = ""  #: a label that fits beside a bar in a figure (default: label)

    @property
    def shown_unit(self) -> str:
        return self.report_unit or self.unit

    @property
    def short_label(self) -> str:
        return self.short or self.label


_MM = dict(report_unit="mm", report_scale=1e3)
_MM_S = dict(report_unit="mm/s", report_scale=1e3)
#: the unit of a ratio, a correlation or a log
DIMENSIONLESS = "dimensionless"
#: tissue damage's unit is the task's (see TISSUE_DAMAGE_UNITS); other tasks have no tissue damage
TASK_DEFINED = "per task: SurgicalPath m^2 (area swept), Incision m (length cut off the band or line)"

#: every metric, in report order
METRICS: dict[str, MetricInfo] = {
    "completion_time": MetricInfo(
        "s", "lower", 0.5, "completion time", "T = t[n-1] - t[0]", per_instrument=False),
    "path_length": MetricInfo(
        "m", "lower", 0.002, "path length", "sum |d_i|; combined: sum over instruments", **_MM,
        group="efficiency"),
    "economy_of_motion": MetricInfo(
        DIMENSIONLESS, "higher", 0.02, "economy of motion",
        "how far along the reference path the instrument got (the arc length of its furthest point "
        "past its start's) / the path length it took; an attempt that stops early gets no credit "
        "for the path it did not cover", group="efficiency"),
    "movements": MetricInfo(
        "count", "lower", 1.0, "number of movements",  # a count resolves one, not half
        "peaks of s~ higher than idle_speed with prominence >= idle_speed; combined: sum", short="movements"),
    "idle_fraction": MetricInfo(
        DIMENSIONLESS, "lower", 0.02, "idle fraction",
        "fraction of time with s~ < idle_speed; combined: every instrument idle at once"),
    "depth_perception": MetricInfo(
        "m", "lower", 0.002, "depth perception (motion along the tool axis)",
        "sum |d_i . z_i|, z_i the tool axis (orientation's z axis); combined: sum", **_MM, short="depth perception"),
    "mean_speed": MetricInfo(
        "m/s", "both", 0.002, "mean speed",
        "path length / T; combined: mean over instruments", **_MM_S, group="speed"),
    "peak_speed": MetricInfo(
        "m/s", "both", 0.005, "peak speed", "max s~; combined: max over instruments", **_MM_S, group="speed"),
    "ldlj": MetricInfo(
        DIMENSIONLESS, "higher", 0.1, "smoothness (log dimensionless jerk)",
        "-ln(T^3 / max(s~)^2 * integral |d2 v~/dt2|^2 dt); combined: mean over instruments",
        group="smoothness", short="smoothness (LDLJ)"),
    "sparc": MetricInfo(
        DIMENSIONLESS, "higher", 0.05, "smoothness (spectral arc length)",
        "-arc length of the DC-normalised speed spectrum up to the last frequency <= 10 Hz whose "
        "magnitude is >= 0.05 (Balasubramanian 2015); combined: mean over instruments",
        group="smoothness", short="smoothness (SPARC)"),
    "relative_acceleration": MetricInfo(
        "1/s", "lower", 0.1, "unsteadiness (mean acceleration / mean speed)",
        "mean |a_i| / mean |v_i|, v_i = d_i / dt and a_i = (v_{i+1} - v_i) / dt unfiltered (every velocity "
        "change counts, however short the session); combined: mean over instruments",
        group="smoothness", short="unsteadiness"),
    "bimanual_dexterity": MetricInfo(
        DIMENSIONLESS, "higher", 0.05, "bimanual dexterity (left-right speed correlation)",
        "Pearson correlation of the two instruments' s~ (two-hand sessions only)",
        per_instrument=False, short="bimanual dexterity"),
    "workspace_volume": MetricInfo(
        "m^3", "lower", 1e-6, "workspace volume (convex hull)",
        "volume of the convex hull of the positions; combined: hull of all instruments' positions",
        report_unit="cm^3", report_scale=1e6, short="workspace volume"),
    "gripper_travel": MetricInfo(
        "rad", "lower", 0.05, "gripper travel", "sum |g_{i+1} - g_i|; combined: sum"),
    "critical_contacts": MetricInfo(
        "count", "lower", 0.25, "critical-structure contacts",
        "number of contact onsets (0 -> 1) in critical_contact, counting a contact at t0",
        per_instrument=False, group="critical contact", short="critical contacts"),
    "critical_contact_time": MetricInfo(
        "s", "lower", 0.05, "time in critical-structure contact",
        "sum dt_i over samples in contact",
        per_instrument=False, group="critical contact", short="critical contact time"),
    "contact_force_peak": MetricInfo(
        "N", "lower", 0.1, "peak contact force", "max contact_force", per_instrument=False, group="force"),
    "contact_force_time": MetricInfo(
        "s", "lower", 0.05, "time above the force threshold",
        "sum dt_i over samples with contact_force > force_threshold",
        per_instrument=False, group="force", short="time above force limit"),
    "tissue_damage": MetricInfo(
        TASK_DEFINED, "lower", 1e-9, "tissue damage",
        "last value of the cumulative tissue_damage: SurgicalPath the area swept by the shaft inside the "
        "organ (m^2), Incision the length cut outside the band or off the line (m); not available in "
        "sessions of other tasks (no unit)", per_instrument=False),
    "deviation_mean": MetricInfo(
        "m", "lower", 0.0005, "mean deviation from the reference path",
        "mean over samples of the distance to the reference polyline",
        **_MM, group="path deviation", short="mean deviation"),
    "deviation_rms": MetricInfo(
        "m", "lower", 0.0005, "RMS deviation from the reference path",
        "root mean square over samples of the distance to the reference polyline",
        **_MM, group="path deviation", short="RMS deviation"),
    "deviation_max": MetricInfo(
        "m", "lower", 0.0005, "largest deviation from the reference path",
        "max over samples of the distance to the reference polyline",
        **_MM, group="path deviation", short="largest deviation"),
    "final_error": MetricInfo(
        "m", "lower", 0.0005, "final error to the target",
        "|p[n-1] - target| (meta target), else the last distance_to_target", **_MM, short="final error"),
    "success": MetricInfo(
        "bool", "higher", 0.25, "success", "last value of the success channel (or meta success)",
        per_instrument=False),
}

#: tissue_damage is each task's own measure: (SI unit, report unit, report scale) per task
TISSUE_DAMAGE_UNITS = {"SurgicalPath": ("m^2", "mm^2", 1e6), "Incision": ("m", "mm", 1e3)}


def sample_steps(time: np.ndarray) -> np.ndarray:
    """The time each sample stands for: the step to the next one, and for the last sample the step
    before it (so an event on the last sample lasts a step, not 0 s)."""
    time = np.asarray(time, dtype=float)
    if len(time) < 2:
        return np.zeros(len(time))
    return np.append(np.diff(time), time[-1] - time[-2])


def apart_from(value: float, threshold: float, least: int = 1) -> str:
    """``value`` with the fewest decimals (``least`` to 4) at which it does not read as ``threshold``,
    so that "2.01 N above the 2 N limit" never prints as "2.0 N above the 2 N limit"."""
    for decimals in range(least, 5):
        if round(value, decimals) != round(threshold, decimals):
            return f"{value:.{decimals}f}"
    return f"{value:.{least}f}" if value == threshold else f"{value:.6f}"


def metric_group(name: str) -> str:
    """The group of metrics that measure the same thing as ``name`` (itself when alone)."""
    return METRICS[name].group or name


def metric_units(name: str, task: object = None) -> tuple[str, str, float]:
    """(SI unit, report unit, report scale) of a metric in sessions of ``task``; only tissue damage
    depends on the task (swept area in SurgicalPath, length of bad cut in Incision)."""
    info = METRICS[name]
    if name == "tissue_damage" and isinstance(task, str) and task in TISSUE_DAMAGE_UNITS:
        return TISSUE_DAMAGE_UNITS[task]
    return info.unit, info.shown_unit, info.report_scale


def shown_decimals(name: str, task: object = None) -> int:
    """Decimals that show a metric in its report unit to 1/10,000 of its resolution, at most 6: a
    value far below the resolution (a small task's workspace volume) keeps two or three digits,
    float residue (1e-13 mm^2 of tissue damage) shows as 0, and a resolution made for another unit
    (tissue damage's 1e-9 is an area's; in Incision it is a length in mm) shows no nanometres."""
    resolution = METRICS[name].resolution * metric_units(name, task)[2]
    return min(max(0, math.ceil(-math.log10(resolution))) + 4, 6)


#: metrics computed from the reference path / target of the instrument that follows it
REFERENCE_METRICS = ("economy_of_motion", "deviation_mean", "deviation_rms", "deviation_max", "final_error")


@dataclass(frozen=True)
class MetricSettings:
    """Thresholds of the metrics (SI); a rubric may override them."""

    idle_speed: float = 0.005  #: m/s: slower is idle; also the prominence a movement needs
    lowpass_hz: float = 6.0  #: cutoff of the low-pass filter on velocity
    force_threshold: float = 2.0  #: N: contact force above this counts as excessive
    sparc_max_hz: float = 10.0  #: highest frequency SPARC considers
    sparc_threshold: float = 0.05  #: SPARC's amplitude threshold on the normalised spectrum

    def __post_init__(self) -> None:
        """Refuse values that leave a metric undefined (rubric files set them)."""
        for name, (allowed, ok) in _SETTING_RANGES.items():
            value = getattr(self, name)
            if not ok(value):
                raise ValueError(f"{name} must be {allowed}, got {value!r}")


def _between(low: float, high: float, unit: str, low_open: bool = True) -> tuple[str, object]:
    """(in words, test) of a setting in ``(low, high]`` (``[low, high]`` when not ``low_open``)."""
    words = f"in {'(' if low_open else '['}{low:g}, {high:g}] {unit}"
    return words, (lambda v: low < v <= high) if low_open else (lambda v: low <= v <= high)


#: what each setting may be: (in words, test); NaN fails every test. The bounds are generous for
#: hand motion (speeds under 0.5 m/s, smoothness below 100 Hz, forces under 1 kN) and refuse
#: values that would silently grade nothing; a cutoff at or above a session's Nyquist frequency
#: (15 Hz for JIGSAWS' 30 Hz kinematics) leaves its velocity unfiltered, as for any session
_SETTING_RANGES = {
    "idle_speed": _between(0, 0.5, "m/s"),
    "lowpass_hz": _between(0, 100, "Hz"),
    "force_threshold": _between(0, 1000, "N", low_open=False),
    "sparc_max_hz": _between(0, 100, "Hz"),
    "sparc_threshold": ("between 0 and 1 (exclusive)", lambda v: 0 < v < 1),
}


@dataclass
class SessionMetrics:
    """Metric values (SI, ``None`` = not available): combined and per instrument."""

    combined: dict[str, float | None]
    instruments: dict[str, dict[str, float | None]]
    #: the instrument whose path was compared with the reference path / target, if any
    reference_track: str | None = None
    #: per instrument: (time of each low-passed speed sample (s), low-passed speed (m/s))
    speed: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict, repr=False)


# ------------------------------------------------------------------ helpers
def _lowpass(values: np.ndarray, fs: float, cutoff: float) -> np.ndarray:
    """Zero-phase 4th-order Butterworth low-pass along the last axis; unchanged when it cannot apply:
    too short, a cutoff at or above the Nyquist frequency, or one so far below it (sampling at over
    1e6 x the cutoff) that the filter is numerically unstable."""
    n = values.shape[-1]
    if not 2 * cutoff < fs <= 1e6 * cutoff or n < 4:
        return values
    sos = signal.butter(4, cutoff, fs=fs, output="sos")
    return signal.sosfiltfilt(sos, values, axis=-1, padlen=min(3 * (2 * len(sos) + 1), n - 1))


def tool_axis(orientation: np.ndarray) -> np.ndarray:
    """The z axis (n, 3) of quaternions (n, 4) in x, y, z, w order (any non-zero norm)."""
    orientation = np.asarray(orientation, dtype=float)
    orientation = np.ldexp(orientation, -scaling_exponent(orientation, axis=1)[:, None])  # per row, exactly
    x, y, z, w = np.ascontiguousarray(orientation.T)  # contiguous: faster arithmetic
    scale = 2.0 / (x * x + y * y + z * z + w * w)  # rotation matrix of a non-unit quaternion
    return np.column_stack([scale * (x * z + w * y), scale * (y * z - w * x), 1.0 - scale * (x * x + y * y)])


def convex_hull_volume(points: np.ndarray) -> float:
    """Volume (m^3) of the convex hull of ``points``; 0 for flat or degenerate sets."""
    return _hull(points)[0]


def _hull(points: np.ndarray) -> tuple[float, np.ndarray]:
    """Convex hull volume (m^3) and the hull's vertices (all points when it is degenerate)."""
    if len(points) < 4:
        return 0.0, points
    try:
        hull = ConvexHull(points)
    except QhullError:  # all points on a plane or a line: no volume
        return 0.0, points
    return float(hull.volume), points[hull.vertices]


def _uniform_steps(time: np.ndarray, position: np.ndarray, steps: np.ndarray) -> tuple[np.ndarray, float]:
    """Position steps (n-1, 3) on a uniform time grid, and its sampling rate (Hz).

    ``steps`` (the raw ``diff`` of ``position``) is returned as is when sampling is already uniform.
    """
    n = len(time)
    duration = float(time[-1] - time[0])
    fs = (n - 1) / duration
    dt = np.diff(time)
    if dt.max() - dt.min() <= 1e-3 * duration / (n - 1):
        return steps, fs
    grid = np.linspace(time[0], time[-1], n)
    return np.diff(np.column_stack([np.interp(grid, time, position[:, k]) for k in range(3)]), axis=0), fs


def _sparc(speed: np.ndarray, fs: float, max_hz: float, threshold: float) -> float | None:
    """Spectral arc length of a speed profile (Balasubramanian et al. 2015)."""
    n = len(speed)
    if n < 4 or not speed.any():
        return None
    size = 1 << max(1, math.ceil(math.log2(n)))
    # zero-padding 16x smooths the spectrum of short movements; long signals are fine-grained already
    nfft = max(size, min(size << 4, 1 << 16))
    spectrum = np.abs(np.fft.rfft(speed, nfft))
    spectrum /= spectrum[0]
    top = int(min(max_hz, fs / 2) * nfft / fs)
    above = np.flatnonzero(spectrum[: top + 1] >= threshold)
    if not len(above):  # a threshold above the DC term, or a spectrum that overflowed
        return None
    last = int(above[-1])
    if last == 0:
        return 0.0
    cut = spectrum[: last + 1]
    df_over_fc = 1.0 / last  # uniform frequency steps, normalised by the cutoff
    return -float(np.sqrt(df_over_fc * df_over_fc + np.diff(cut) ** 2).sum())


# ------------------------------------------------------------------ per instrument
@dataclass
class _Track:
    """Intermediate results of one instrument, reused by the combined metrics."""

    metrics: dict[str, float | None]
    speed_time: np.ndarray
    speed: np.ndarray  # low-passed speed on a uniform grid
    idle: np.ndarray  # bool per low-passed speed sample
    exponent: int  # the positions were scaled by 2**-exponent for the computations
    hull_points: np.ndarray  # scaled
    deviation: np.ndarray | None


def _track_metrics(session: Session, track, settings: MetricSettings, reference) -> _Track:
    time = session.time
    position = np.asarray(track.position, dtype=float)
    # motion is computed on scaled positions; lengths, speeds and volumes are scaled back with
    # ldexp, and may then be infinite (not available)
    exponent = scaling_exponent(position)
    scaled = np.ldexp(position, -exponent)
    steps = np.diff(scaled, axis=0)
    step_length = np.sqrt(np.einsum("ij,ij->i", steps, steps))
    duration = float(time[-1] - time[0])
    path = float(np.ldexp(step_length.sum(), exponent))
    m: dict[str, float | None] = dict.fromkeys(
        name for name, info in METRICS.items() if info.per_instrument
    )
    m["path_length"] = path
    m["mean_speed"] = path / duration if duration > 0 else None

    if track.orientation is not None and len(steps):
        axis = tool_axis(np.asarray(track.orientation, dtype=float)[:-1])
        m["depth_perception"] = float(np.ldexp(np.abs(np.einsum("ij,ij->i", steps, axis)).sum(), exponent))
    if track.gripper is not None:
        m["gripper_travel"] = float(np.abs(np.diff(np.asarray(track.gripper, dtype=float))).sum())

    speed_time, speed, idle = np.empty(0), np.empty(0), np.empty(0, dtype=bool)
    if duration > 0:
        uniform_steps, fs = _uniform_steps(time, scaled, steps)
        velocity = np.ascontiguousarray(uniform_steps.T) * fs  # (3, n-1), scaled
        raw_speed = (
            step_length * fs if uniform_steps is steps else np.sqrt(np.einsum("ij,ij->j", velocity, velocity))
        )
        smooth = _lowpass(velocity, fs, settings.lowpass_hz)
        scaled_speed = np.sqrt(np.einsum("ij,ij->j", smooth, smooth))
        speed = np.ldexp(scaled_speed, exponent)
        speed_time = time[0] + (np.arange(len(speed)) + 0.5) / fs
        idle = speed < settings.idle_speed
        m["idle_fraction"] = float(idle.mean())
        m["peak_speed"] = float(speed.max())
        peaks, _ = signal.find_peaks(
            speed, height=settings.idle_speed, prominence=settings.idle_speed
        )
        m["movements"] = float(len(peaks))
        if len(speed) >= 3:  # dimensionless: the same on scaled values, in log form (T^3 overflows)
            jerk = np.diff(smooth, n=2, axis=1) * (fs * fs)
            jerk2 = np.einsum("ij,ij->", jerk, jerk) / fs
            m["ldlj"] = float(2 * np.log(scaled_speed.max()) - 3 * np.log(duration) - np.log(jerk2))
        m["sparc"] = _sparc(raw_speed, fs, settings.sparc_max_hz, settings.sparc_threshold)
        if len(raw_speed) >= 2:  # velocity changes over a speed: the positions' scale cancels
            change = np.diff(velocity, axis=1)
            m["relative_acceleration"] = float(
                np.sqrt(np.einsum("ij,ij->j", change, change)).mean() * fs / raw_speed.mean())

    volume, hull_points = _hull(scaled)
    m["workspace_volume"] = float(np.ldexp(volume, 3 * exponent))

    deviation = None
    reference_path, target = reference
    if reference_path is not None:
        deviation = distance_to_polyline(position, reference_path)
        m["deviation_mean"] = float(deviation.mean())
        m["deviation_rms"] = float(np.sqrt(np.mean(deviation * deviation)))
        m["deviation_max"] = float(deviation.max())
        if path > 0:  # the part of the reference the instrument got along, over the path it took
            progress = progress_along_polyline(scaled, np.ldexp(reference_path, -exponent))  # no overflow
            covered = float(np.ldexp(max(progress.max() - progress[0], 0.0), exponent))
            m["economy_of_motion"] = covered / path
    if target is not None:
        m["final_error"] = float(np.linalg.norm(position[-1] - target))
    return _Track(m, speed_time, speed, idle, exponent, hull_points, deviation)


def _reference(meta: dict) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The reference polyline (m, 3) and target (3,) from the metadata, when present and usable."""
    path = meta.get("reference_path")
    target = meta.get("target")
    path = np.asarray(path, dtype=float) if path is not None and len(path) else None
    if path is not None and (path.ndim != 2 or path.shape[1] != 3 or not np.isfinite(path).all()):
        raise ValueError(f"meta reference_path must be a list of finite [x, y, z], got shape {path.shape}")
    target = np.asarray(target, dtype=float) if target is not None else None
    if target is not None and (target.shape != (3,) or not np.isfinite(target).all()):
        raise ValueError(f"meta target must be a finite [x, y, z], got {target.tolist()}")
    return path, target


def _pick_reference_track(session: Session, tracks: dict[str, _Track]) -> str | None:
    """The instrument the reference path belongs to: meta reference_track, the only one, or the closest."""
    named = session.meta.get("reference_track")
    if named is not None:
        if named not in tracks:
            raise ValueError(f"meta reference_track {named!r} is not a track; tracks: {sorted(tracks)}")
        return named
    if len(tracks) == 1:
        return next(iter(tracks))
    scored = [(t.metrics["deviation_mean"], name) for name, t in tracks.items() if t.deviation is not None]
    if scored:
        return min(scored)[1]
    scored = [(t.metrics["final_error"], name) for name, t in tracks.items() if t.metrics["final_error"] is not None]
    return min(scored)[1] if scored else None


# ------------------------------------------------------------------ session
def compute_metrics(session: Session, settings: MetricSettings | None = None) -> SessionMetrics:
    """Every metric of a valid session (see :data:`METRICS`); ``None`` where its inputs are absent
    or its value is not a finite number (e.g. a path length beyond 1e308 m)."""
    with np.errstate(all="ignore"):  # overflow gives inf, 0/0 NaN: both become "not available"
        metrics = _compute_metrics(session, settings or MetricSettings())
    for values in (metrics.combined, *metrics.instruments.values()):
        for name, value in values.items():
            if value is not None and not math.isfinite(value):
                values[name] = None
    return metrics


def _compute_metrics(session: Session, settings: MetricSettings) -> SessionMetrics:
    time = np.asarray(session.time, dtype=float)
    session = Session(time, session.tracks, session.channels, session.meta)
    reference = _reference(session.meta)
    tracks = {name: _track_metrics(session, track, settings, reference) for name, track in session.tracks.items()}
    duration = float(time[-1] - time[0])

    combined: dict[str, float | None] = dict.fromkeys(METRICS)
    combined["completion_time"] = duration
    per = [t.metrics for t in tracks.values()]

    def collect(name: str) -> list[float]:
        return [m[name] for m in per if m[name] is not None]

    for name in ("path_length", "movements", "depth_perception", "gripper_travel"):
        values = collect(name)
        combined[name] = float(sum(values)) if values else None
    for name in ("mean_speed", "ldlj", "sparc", "relative_acceleration"):
        values = collect(name)
        combined[name] = float(np.mean(values)) if values else None
    peaks = collect("peak_speed")
    combined["peak_speed"] = max(peaks) if peaks else None
    if duration > 0:
        idle = np.logical_and.reduce([t.idle for t in tracks.values()])
        combined["idle_fraction"] = float(idle.mean())
    if len(tracks) == 1:
        combined["workspace_volume"] = next(iter(tracks.values())).metrics["workspace_volume"]
    else:  # every hull on the largest track's scale
        exponent = max(t.exponent for t in tracks.values())
        points = np.vstack([np.ldexp(t.hull_points, t.exponent - exponent) for t in tracks.values()])
        combined["workspace_volume"] = float(np.ldexp(convex_hull_volume(points), 3 * exponent))
    if len(tracks) == 2 and duration > 0:
        left, right = (t.speed for t in tracks.values())
        if left.std() > 0 and right.std() > 0:
            combined["bimanual_dexterity"] = float(np.corrcoef(left, right)[0, 1])

    reference_track = _pick_reference_track(session, tracks)
    if reference_track is not None:
        for name in REFERENCE_METRICS:
            combined[name] = tracks[reference_track].metrics[name]
    _channel_metrics(session, settings, combined)
    return SessionMetrics(
        combined=combined,
        instruments={name: t.metrics for name, t in tracks.items()},
        reference_track=reference_track,
        speed={name: (t.speed_time, t.speed) for name, t in tracks.items()},
    )


def _channel_metrics(session: Session, settings: MetricSettings, out: dict[str, float | None]) -> None:
    """Metrics of the simulator's optional channels (contacts, force, damage, success)."""
    channels, meta = session.channels, session.meta
    dt = sample_steps(session.time)
    if "critical_contact" in channels:
        contact = np.asarray(channels["critical_contact"]) > 0.5
        out["critical_contacts"] = float(contact[0]) + float(np.count_nonzero(contact[1:] & ~contact[:-1]))
        out["critical_contact_time"] = float(dt[contact].sum())
    if "contact_force" in channels:
        force = np.asarray(channels["contact_force"], dtype=float)
        out["contact_force_peak"] = float(force.max())
        out["contact_force_time"] = float(dt[force > settings.force_threshold].sum())
    task = meta.get("task")  # any JSON value
    if "tissue_damage" in channels and isinstance(task, str) and task in TISSUE_DAMAGE_UNITS:
        out["tissue_damage"] = float(channels["tissue_damage"][-1])
    if out["final_error"] is None and "distance_to_target" in channels:
        out["final_error"] = float(channels["distance_to_target"][-1])
    if "success" in channels:
        out["success"] = float(np.asarray(channels["success"])[-1] > 0.5)
    elif isinstance(meta.get("success"), bool):
        out["success"] = float(meta["success"])
