"""Critical errors of a recorded attempt: what fails or caps a grade whatever the motion metrics say.

A skills lab does not trade a vessel hit against smooth motion: critical errors are gates, not
weighted metrics (a calibration that sees no hit in its sessions would give them weight 0). Each
rubric states what each kind does (see :mod:`surgsim.scoring.rubric`); this module finds them in
a session, each with its time (seconds from the session's first sample) and what happened:

- ``critical_contact``: each onset (0 -> 1) of the ``critical_contact`` channel, and each event
  that names a critical structure, vessel or nerve;
- ``excessive_force``: each time ``contact_force`` rises above ``settings.force_threshold``, and
  each ``excessive_force`` event;
- ``bleeding``: each ``bleeding`` event (the recorder writes one when an Incision cut reaches the
  vessel layer; an importer may too);
- ``failed``: the attempt ended by a failure (its last event names one, e.g. ``off_path``) or,
  recorded complete, without success (``success`` channel or meta false at the end);
- ``incomplete``: the recording stopped before the attempt ended (meta ``complete: false``).

An event at the time of an error of the same kind found in a channel is the same error, once.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from surgsim.errors import SurgsimError
from surgsim.scoring.metrics import MetricSettings, apart_from, sample_steps
from surgsim.sessions.session import Session

#: every kind, in the order reports list them when they happen at the same time
KINDS = ("critical_contact", "excessive_force", "bleeding", "failed", "incomplete")
#: metrics that only restate a critical error: calibrated rubrics leave them to the gates
GATED_METRICS = ("critical_contacts", "critical_contact_time", "contact_force_time", "success")
#: words in an event name that make it a critical-structure contact
_CRITICAL_WORDS = ("critical", "vessel", "nerve")
#: event names that end an attempt without a failure of its own
_NOT_FAILURES = ("success", "time_limit", "stopped", "recording_interrupted")


class CriticalEventError(SurgsimError):
    """A session whose meta events cannot be read (a critical error must never be missed quietly)."""


@dataclass(frozen=True)
class CriticalError:
    """One critical error: its kind (one of :data:`KINDS`), when, and what happened in words."""

    kind: str
    time_s: float  #: seconds from the session's first sample
    what: str

    def as_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "time_s": round(self.time_s, 3), "what": self.what}


def event_kind(name: str) -> str | None:
    """The critical-error kind an event name reports, or None (``success``, ``time_limit``, ...)."""
    lowered = name.lower()
    if any(word in lowered for word in _CRITICAL_WORDS):
        return "critical_contact"
    if lowered in ("excessive_force", "bleeding"):
        return lowered
    return None


def _events(session: Session) -> list[tuple[float, str]]:
    """(time, name) of the meta events, in time order; :class:`CriticalEventError` for a bad one."""
    events = session.meta.get("events") or []
    if not isinstance(events, list):
        raise CriticalEventError(f"meta events: expected a list of {{time, name}}, got {type(events).__name__}")
    out = []
    for i, event in enumerate(events):
        time = event.get("time") if isinstance(event, dict) else None
        name = event.get("name") if isinstance(event, dict) else None
        if not (isinstance(time, (int, float)) and not isinstance(time, bool) and math.isfinite(time)
                and isinstance(name, str)):
            raise CriticalEventError(f"meta events[{i}]: expected {{time: seconds, name: text}}, got {event!r}")
        out.append((float(time), name))
    return sorted(out, key=lambda e: e[0])


def _onsets(flag: np.ndarray) -> np.ndarray:
    """Indices where ``flag`` turns on (a flag already on at the first sample counts)."""
    return np.flatnonzero(flag & ~np.concatenate([[False], flag[:-1]]))


def _force_errors(session: Session, limit: float) -> list[CriticalError]:
    force = np.asarray(session.channels["contact_force"], dtype=float)
    above = force > limit
    time = session.time
    steps = sample_steps(time)
    errors = []
    for start in _onsets(above):
        stop = start + int(np.argmin(above[start:])) if not above[start:].all() else len(above)
        peak = float(force[start:stop].max())
        seconds = float(steps[start:stop].sum())
        errors.append(CriticalError(
            "excessive_force", float(time[start] - time[0]),
            f"contact force {apart_from(peak, limit)} N, above the {limit:g} N limit for {seconds:.2f} s"))
    return errors


def _ending(session: Session, events: list[tuple[float, str]], found: list[CriticalError]) -> list[CriticalError]:
    """The ``failed`` or ``incomplete`` error of how the attempt ended, if any."""
    end = float(session.time[-1] - session.time[0])
    t0 = float(session.time[0])
    if session.meta.get("complete") is False:
        how = events[-1][1] if events and events[-1][1] in ("stopped", "recording_interrupted") else None
        return [CriticalError("incomplete", end, "the recording stopped before the attempt ended"
                              + (f" ({how})" if how else ""))]
    if events and events[-1][1] not in _NOT_FAILURES:
        time, name = events[-1]
        kind = event_kind(name)
        if kind is not None and any(e.kind == kind for e in found):
            return []  # the ending is already that critical error
        return [CriticalError("failed", time - t0, f"the attempt ended in failure: {name.replace('_', ' ')}")]
    if "success" in session.channels:
        succeeded = bool(np.asarray(session.channels["success"])[-1] > 0.5)
    elif isinstance(session.meta.get("success"), bool):
        succeeded = session.meta["success"]
    else:
        return []  # nothing says whether it succeeded (imported motion): no verdict
    if succeeded:
        return []
    why = " (time limit)" if events and events[-1][1] == "time_limit" else ""
    time = events[-1][0] - t0 if events else end
    return [CriticalError("failed", time, f"the attempt ended without success{why}")]


def detect_critical_errors(session: Session, settings: MetricSettings | None = None) -> list[CriticalError]:
    """Every critical error of ``session`` (see the module docstring), in time order."""
    settings = settings or MetricSettings()
    time = np.asarray(session.time, dtype=float)
    t0 = float(time[0])
    events = _events(session)
    found: list[CriticalError] = []
    if "critical_contact" in session.channels:
        contact = np.asarray(session.channels["critical_contact"]) > 0.5
        found += [CriticalError("critical_contact", float(time[i] - t0), "contact with a critical structure")
                  for i in _onsets(contact)]
    if "contact_force" in session.channels:
        found += _force_errors(session, settings.force_threshold)
    # an event within one sample of an error of its kind found in a channel is that error
    step = float(np.diff(time).max()) if len(time) > 1 else 0.0
    for when, name in events:
        kind = event_kind(name)
        if kind is None:
            continue
        at = when - t0
        if not any(e.kind == kind and abs(e.time_s - at) <= step for e in found):
            found.append(CriticalError(kind, at, f"{name.replace('_', ' ')} (recorded event)"))
    found += _ending(session, events, found)
    return sorted(found, key=lambda e: (e.time_s, KINDS.index(e.kind)))
