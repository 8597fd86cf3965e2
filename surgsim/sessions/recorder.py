"""Record every episode of a surgsim env as a session file, safely against crashes.

While an episode runs, its samples go to a journal ``<trainee>-<NNNN>.parquet.partial``: an Arrow
IPC *stream*, appended one record batch per second of session time and flushed to the operating
system each time. A stream stays readable up to its last complete batch when the writer is
killed, so a crash or kill loses at most the last unflushed second. When the episode ends the
whole session is written as ``<trainee>-<NNNN>.parquet`` (metadata ``complete: true``) by a
temp file and a rename, and only then is the journal deleted; a journal is never mistaken for
a session (it is not Parquet). :func:`recover_partial` (``surgsim session recover``) turns a
left-over journal into a session marked ``complete: false``.

The recorder holds an exclusive advisory lock (``flock``) on its journal while the episode runs;
the operating system drops it when the process ends, however it ends. A locked journal therefore
belongs to a recording still running, and recovery leaves it alone.
"""

from __future__ import annotations

import datetime
import fcntl
import math
import os
import re
from pathlib import Path
from typing import Any, BinaryIO

import gymnasium as gym
import numpy as np
import pyarrow as pa

from surgsim._files import claim_numbered
from surgsim.outcome import episode_outcome
from surgsim.sessions.io import (
    META_KEY,
    canonical_json,
    channel_order,
    jsonable,
    session_from_table,
    strict_json,
    track_columns,
    write_session,
)
from surgsim.sessions.session import ACTION_PREFIX, OBS_PREFIX, SessionError

JOURNAL_SUFFIX = ".partial"
INSTRUMENT = "tool"
#: info keys recorded as channels of the same name (SI units, see CHANNELS)
#: channel -> the info key it records (``tool_force``: elastic tissue only)
INFO_CHANNELS = {
    "clearance": "clearance",
    "depth": "depth",
    "tissue_damage": "tissue_damage",
    "distance_to_target": "distance_to_target",
    "contact_force": "tool_force",
}
#: words in a failure_reason that make it a critical-structure contact
CRITICAL_WORDS = ("critical", "vessel", "nerve")
_TRAINEE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


class JournalInUse(SessionError):
    """The journal belongs to a recording still running (it is locked); it is not recovered."""


def is_critical(failure_reason: str | None) -> bool:
    """True when a failure reason names a vessel, a nerve or another critical structure."""
    return bool(failure_reason) and any(word in failure_reason for word in CRITICAL_WORDS)


def reserve_session(directory: Path, trainee: str) -> tuple[Path, BinaryIO]:
    """Claim ``<directory>/<trainee>-<NNNN>.parquet``, the next number not taken by a session or a
    journal, by creating its journal exclusively; return the path and the open, locked journal.

    Safe against other recorders and importers in the same folder: the number is claimed by
    ``open(..., "xb")`` and held (locked) until :func:`release_journal`.
    """
    directory.mkdir(parents=True, exist_ok=True)
    return claim_numbered(directory, trainee, _claim_journal, suffix=".parquet", digits=4,
                          also=(".parquet" + JOURNAL_SUFFIX,))


def _claim_journal(path: Path) -> BinaryIO:
    """Create and lock the journal of session ``path``; ``FileExistsError`` when the number is taken."""
    journal = open(str(path) + JOURNAL_SUFFIX, "xb", buffering=0)
    if path.exists():  # a session finished between the folder scan and this claim
        journal.close()
        Path(journal.name).unlink()
        raise FileExistsError(path)
    fcntl.flock(journal, fcntl.LOCK_EX)  # waits only while a recover looks at the empty journal
    if not _same_file(Path(journal.name), journal):
        journal.close()  # that recover removed it as empty: take the next number
        raise FileExistsError(path)
    return journal


def _same_file(path: Path, fh: BinaryIO) -> bool:
    """True while ``path`` still names the file open as ``fh`` (not removed, not replaced)."""
    try:
        return os.path.samestat(os.stat(path), os.fstat(fh.fileno()))
    except FileNotFoundError:
        return False


def release_journal(journal: BinaryIO) -> None:
    """Delete a journal claimed by :func:`reserve_session`, then drop its lock by closing it."""
    Path(journal.name).unlink(missing_ok=True)
    journal.close()


def check_trainee(trainee: str) -> str:
    """A pseudonymous trainee id that is safe in a file name, or :class:`SessionError`."""
    if not _TRAINEE.fullmatch(trainee or ""):
        raise SessionError(
            f"trainee id {trainee!r} is not valid: use letters, digits, '.', '_' or '-' (a pseudonym, not a name)"
        )
    return trainee


class SessionRecorder(gym.Wrapper):
    """Record each episode as a session ``<directory>/<trainee>-<NNNN>.parquet`` (never overwriting).

    Row 0 is the state after ``reset``; row ``k`` is the state after the ``k``-th step, with the
    action and reward of that step (row 0: zeros). Time is ``k / rate_hz``, where ``rate_hz`` is
    the env's control rate, ``metadata["render_fps"]`` (20 Hz for surgsim envs) unless given.
    Recorded: the tool tip's position and orientation (track ``tool``), ``action_<i>`` (the
    action as given; a discrete action is its index), ``reward``, ``clearance``, ``depth``,
    ``tissue_damage``, ``distance_to_target``, ``contact_force`` (the tool force, N; elastic
    tissue) when the env's info has them, ``critical_contact`` (a touch, or a failure naming a
    critical structure) and ``success``; events (the failure reason, ``success`` or ``time_limit`` at its time), the
    reference path and target when the env has them. An episode cut short by ``reset`` or
    ``close`` is kept with ``complete: false`` and a ``stopped`` event; one with no step is dropped.

    Args:
        env: a surgsim env (its step info must carry ``tip_position`` and ``tip_orientation``).
        directory: where sessions go; created if missing.
        trainee: pseudonymous trainee id, the file name prefix.
        rate_hz: control rate in Hz (default: the env's ``render_fps``).
        flush_every_s: journal flush interval in session seconds.
        labels: labels stored in every session's metadata (e.g. ``{"skill": "E"}``).
        record_obs: also record the observation the policy saw, as channels ``obs_<i>`` (row 0:
            the reset's), so that ``surgsim dataset from-sessions`` can make a dataset of them;
            vector observations only (``obs_type="state"``).
    """

    def __init__(
        self,
        env: gym.Env,
        directory: str | Path,
        trainee: str,
        rate_hz: float | None = None,
        flush_every_s: float = 1.0,
        labels: dict[str, Any] | None = None,
        record_obs: bool = False,
    ) -> None:
        super().__init__(env)
        self.trainee = check_trainee(trainee)
        rate = rate_hz if rate_hz is not None else env.metadata.get("render_fps")
        if rate is None or not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise SessionError(
                f"cannot tell the control rate of {env}: metadata['render_fps'] is {rate!r}; pass rate_hz"
            )
        if not flush_every_s > 0:
            raise SessionError(f"flush_every_s must be > 0, got {flush_every_s!r}")
        self.rate_hz = float(rate)
        self.flush_every_s = float(flush_every_s)
        self.labels = dict(labels or {})
        space = env.action_space
        self._n_actions = 1 if isinstance(space, gym.spaces.Discrete) else int(np.prod(space.shape))
        self._n_obs = 0
        if record_obs:
            obs_space = env.observation_space
            if not (isinstance(obs_space, gym.spaces.Box) and len(obs_space.shape) == 1):
                raise SessionError(f"record_obs needs vector observations (obs_type 'state'); {env} has {obs_space}")
            self._n_obs = obs_space.shape[0]
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        #: sessions written so far, in order
        self.written: list[Path] = []
        self._episode: _Episode | None = None
        self._episodes = 0
        self._measured: list[str] = []  # info channels recorded this episode

    # ---------------------------------------------------------------- gym API
    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None):
        self._stop()
        obs, info = self.env.reset(seed=seed, options=options)
        meta, columns = self._meta(seed, options), self._columns(info)
        self._episode = _Episode(*reserve_session(self.directory, self.trainee), meta, columns)
        self._episode.add(self._row(0, None, 0.0, info, obs), self.flush_every_s)
        self._episodes += 1
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        episode = self._episode
        if episode is not None:
            k = episode.rows
            time = k / self.rate_hz
            episode.add(self._row(k, action, reward, info, obs), self.flush_every_s)
            if terminated or truncated:
                episode.events.append({"time": time, "name": episode_outcome(info)})
                self._finish(complete=True)
        return obs, reward, terminated, truncated, info

    def close(self) -> None:
        self._stop()
        super().close()

    # ---------------------------------------------------------------- internals
    def _stop(self) -> None:
        """End an episode in progress: kept as incomplete if it has a step, else dropped."""
        episode = self._episode
        if episode is None:
            return
        if episode.rows > 1:
            episode.events.append({"time": (episode.rows - 1) / self.rate_hz, "name": "stopped"})
            self._finish(complete=False)
        else:
            episode.discard()
            self._episode = None

    def _finish(self, complete: bool) -> None:
        episode, self._episode = self._episode, None
        self.written.append(episode.finish(complete))

    def _meta(self, seed: int | None, options: dict[str, Any] | None) -> dict[str, Any]:
        unwrapped = self.env.unwrapped
        spec = getattr(unwrapped, "task_spec", None)
        task = getattr(unwrapped, "task", None)
        reference = unwrapped.reference_path() if hasattr(unwrapped, "reference_path") else None
        target = task.path_end() if hasattr(task, "path_end") else None
        env_spec = self.env.spec
        return jsonable({
            "source": {
                "kind": "simulator",
                "env_id": env_spec.id if env_spec is not None else type(unwrapped).__name__,
                "spec": spec.name if spec is not None else None,
                "seed": seed,
                "options": dict(options or {}),
                "difficulty": getattr(unwrapped, "difficulty", None),
                "action_type": getattr(unwrapped, "action_type", None),
            },
            "sampling_rate_hz": self.rate_hz,
            "task": spec.name if spec is not None else None,
            "trainee": self.trainee,
            "labels": self.labels,
            "reference_path": reference,
            "target": target,
            "events": [],
            "complete": False,
            "recorded_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="milliseconds"),
            "episode": self._episodes + 1,
        })

    def _columns(self, info: dict[str, Any]) -> list[str]:
        """The episode's columns; also picks the info channels it records (those finite at reset)."""
        for key in ("tip_position", "tip_orientation"):
            if key not in info:
                raise SessionError(f"SessionRecorder needs '{key}' in the env's info; {self.env} has none")
        channels = [f"{ACTION_PREFIX}{i}" for i in range(self._n_actions)]
        # a channel the env cannot measure (NeedleReach's clearance is infinite: nothing to hit) is left out
        self._measured = [c for c, key in INFO_CHANNELS.items() if key in info and math.isfinite(float(info[key]))]
        channels += ["reward", *self._measured, "critical_contact", "success"]
        channels += [f"{OBS_PREFIX}{i}" for i in range(self._n_obs)]
        return ["time", *track_columns(INSTRUMENT, True, False), *channel_order(channels)]

    def _row(self, k: int, action: Any, reward: float, info: dict[str, Any], obs: Any) -> dict[str, Any]:
        row: dict[str, Any] = {"time": k / self.rate_hz}
        position = np.asarray(info["tip_position"], dtype=np.float64)
        orientation = np.asarray(info["tip_orientation"], dtype=np.float64)
        for name, value in zip(track_columns(INSTRUMENT, True, False), (*position, *orientation)):
            row[name] = float(value)
        actions = np.zeros(self._n_actions, dtype=np.float64)
        if action is not None:
            actions[:] = np.asarray(action, dtype=np.float64).ravel()
        for i, value in enumerate(actions):
            row[f"{ACTION_PREFIX}{i}"] = float(value)
        row["reward"] = float(reward)
        for name in self._measured:
            key = INFO_CHANNELS[name]
            value = float(info[key])
            if not math.isfinite(value):
                raise SessionError(f"SessionRecorder: info[{key!r}] is {value} at step {k}; it was finite at reset")
            row[name] = value
        # elastic tissue reports a touch below the rupture force, which does not end the episode
        row["critical_contact"] = bool(info.get("critical_contact")) or is_critical(info.get("failure_reason"))
        row["success"] = bool(info.get("is_success", False))
        if self._n_obs:
            for i, value in enumerate(np.asarray(obs, dtype=np.float64).tolist()):
                row[f"{OBS_PREFIX}{i}"] = value
        return row


class _Episode:
    """One episode's samples: all rows in memory, and the journal of those flushed so far."""

    def __init__(self, path: Path, journal: BinaryIO, meta: dict[str, Any], columns: list[str]) -> None:
        self.path = path
        self.meta = meta
        self.events: list[dict[str, Any]] = []
        bools = ("critical_contact", "success")
        self.schema = pa.schema(
            [pa.field(c, pa.bool_() if c in bools else pa.float64()) for c in columns],
            metadata={META_KEY: canonical_json(meta)},
        )
        self.data: dict[str, list] = {c: [] for c in columns}
        self.rows = 0
        self._flushed_rows = 0
        self._flushed_time = 0.0
        self._file = journal  # unbuffered and locked (reserve_session): each batch reaches the OS
        self._writer = pa.ipc.new_stream(self._file, self.schema)

    def add(self, row: dict[str, Any], flush_every_s: float) -> None:
        for name, values in self.data.items():
            values.append(row[name])
        self.rows += 1
        if row["time"] - self._flushed_time >= flush_every_s:
            self.flush()

    def flush(self) -> None:
        """Append the rows not yet in the journal as one record batch."""
        if self._flushed_rows == self.rows:
            return
        batch = pa.record_batch(
            {name: values[self._flushed_rows:] for name, values in self.data.items()}, schema=self.schema
        )
        self._writer.write_batch(batch)
        self._file.flush()
        self._flushed_rows = self.rows
        self._flushed_time = self.data["time"][-1]

    def finish(self, complete: bool) -> Path:
        """Write the session file atomically, then delete the journal."""
        table = pa.table(self.data, schema=self.schema)
        meta = {**self.meta, "events": self.events, "complete": complete}
        session = session_from_table(table, meta, str(self.path))
        write_session(session, self.path)
        self.discard()
        return self.path

    def discard(self) -> None:
        self._writer.close()
        release_journal(self._file)


def recover_partial(path: str | Path) -> Path | None:
    """Turn a journal left by a crash into a session marked ``complete: false``; return its path.

    ``path`` is the ``.parquet.partial`` journal (or the ``.parquet`` name it belongs to). The
    samples up to the last complete record batch are kept, an event ``recording_interrupted`` marks
    the last of them, and the journal is deleted once the session is written. A journal holding
    no sample (the recorder stopped before its first flush) is deleted and ``None`` returned.
    Raises :class:`JournalInUse` for the journal of a recording still running.
    """
    path = Path(path)
    if not path.name.endswith(JOURNAL_SUFFIX) and Path(str(path) + JOURNAL_SUFFIX).exists():
        path = Path(str(path) + JOURNAL_SUFFIX)
    if not path.exists():
        raise SessionError(f"{path}: no such file")
    if not path.name.endswith(".parquet" + JOURNAL_SUFFIX):
        raise SessionError(f"{path}: not a recording journal (expected a name ending in .parquet{JOURNAL_SUFFIX})")
    target = path.with_name(path.name[: -len(JOURNAL_SUFFIX)])
    try:
        fh = open(path, "rb")
    except OSError as exc:
        raise SessionError(f"{path}: cannot read the journal ({exc.strerror})") from None
    with fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise JournalInUse(f"{path}: a recording is still running (its journal is locked); left alone") from None
        if not _same_file(path, fh):  # the recording finished between our open and our lock
            return None
        if target.exists():
            raise SessionError(
                f"{path}: {target.name} already exists (the episode was written completely); delete this journal"
            )
        table = _read_journal(path, fh)
        if table.num_rows == 0:  # the recorder stopped before its first flush
            path.unlink()
            return None
        session = session_from_table(table, _journal_meta(path, table.schema), str(path))
        session.meta["events"].append({"time": float(session.time[-1]), "name": "recording_interrupted"})
        session.meta["complete"] = False
        write_session(session, target)
        path.unlink()  # while still locked: nobody else sees a journal whose session exists
    return target


def _read_journal(path: Path, fh: BinaryIO) -> pa.Table:
    """The complete record batches of a journal; no columns for an empty file (a number reserved,
    nothing written yet)."""
    if os.fstat(fh.fileno()).st_size == 0:
        return pa.table({})
    try:
        reader = pa.ipc.open_stream(fh)
    except (pa.ArrowInvalid, OSError) as exc:
        raise SessionError(f"{path}: not a recording journal ({exc})") from None
    if META_KEY not in (reader.schema.metadata or {}):
        raise SessionError(f"{path}: not a surgsim recording journal (no 'surgsim' metadata)")
    batches = []
    while True:
        try:
            batches.append(reader.read_next_batch())
        except StopIteration:
            break
        except (pa.ArrowInvalid, OSError):
            break  # the batch being written when the recorder died: everything before it is kept
    return pa.Table.from_batches(batches, schema=reader.schema)


def _journal_meta(path: Path, schema: pa.Schema) -> dict[str, Any]:
    """The metadata a journal's stream schema carries, with a list of events."""
    try:
        meta = strict_json(schema.metadata[META_KEY])
    except (ValueError, RecursionError) as exc:
        raise SessionError(f"{path}: the journal's 'surgsim' metadata is not valid JSON ({exc})") from None
    if not isinstance(meta, dict) or not isinstance(meta.setdefault("events", []), list):
        raise SessionError(f"{path}: the journal's 'surgsim' metadata is not an object with a list of events")
    return meta
