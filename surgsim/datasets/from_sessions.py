"""Demonstration datasets from recorded sessions (trainees at the keyboard, agents, experts).

A session becomes one episode when it was recorded with observations
(``SessionRecorder(record_obs=True)``, channels ``obs_<i>``). Row 0 holds the reset's observation,
row k the observation, action and reward of step k. The episode was terminated when its last
event is a success or a failure, truncated when it is ``time_limit``, ``stopped`` or
``recording_interrupted`` (a session recovered from a crashed recording's journal).
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
from tqdm import tqdm

from surgsim.datasets.store import DatasetError, Episode, check_free, dataset_id, write_dataset
from surgsim.sessions import read_session
from surgsim.sessions.io import indexed_channels, session_files
from surgsim.sessions.session import ACTION_PREFIX, OBS_PREFIX, Session

#: last events that end an episode by truncation rather than termination
TRUNCATING_EVENTS = ("time_limit", "stopped", "recording_interrupted")


def _indexed(session: Session, prefix: str) -> np.ndarray:
    """The channels ``<prefix><i>`` stacked by index, (T, n)."""
    names = indexed_channels(session.channels, prefix)
    return np.column_stack([session.channels[n] for n in names]) if names else np.empty((session.n_samples, 0))


def session_episode(session: Session, source: str, discrete: bool) -> Episode:
    """One session as one episode (see the module docstring)."""
    obs = _indexed(session, OBS_PREFIX).astype(np.float32)
    if obs.shape[1] == 0:
        raise DatasetError(f"{source}: no observations (obs_<i> channels); record with record_obs=True")
    if session.n_samples < 2:
        raise DatasetError(f"{source}: no step recorded")
    actions = _indexed(session, ACTION_PREFIX)[1:]
    events = session.meta.get("events") or []
    last = events[-1]["name"] if events else "stopped"
    n = session.n_samples - 1
    terminations = [False] * n
    truncations = [False] * n
    (truncations if last in TRUNCATING_EVENTS else terminations)[-1] = True
    channels = session.channels
    success = np.asarray(channels.get("success", np.zeros(session.n_samples, bool)), dtype=bool)
    infos = {
        "is_success": success.tolist(),
        "tip_position": list(session.tracks["tool"].position),
    }
    for key in ("distance_to_target", "clearance", "depth", "tissue_damage"):
        if key in channels:
            infos[key] = np.asarray(channels[key], dtype=np.float64).tolist()
    return Episode(
        seed=session.meta.get("source", {}).get("seed"),
        observations=list(obs),
        actions=[int(a[0]) for a in actions] if discrete else list(actions.astype(np.float32)),
        rewards=np.asarray(channels["reward"][1:], dtype=np.float64).tolist(),
        terminations=terminations,
        truncations=truncations,
        infos=infos,
    )


def from_sessions(folder: str | Path, root: str | Path, name: str = "sessions", progress: bool = True) -> Path:
    """Turn every session under ``folder`` (all of one env id and difficulty) into dataset
    ``surgsim/<env>/<name>-v0`` under ``root``."""
    files = session_files(Path(folder))
    if not files or not files[0].exists():
        raise DatasetError(f"{folder}: no session files (*.parquet)")
    sessions = []
    for path in tqdm(files, desc="reading sessions", unit="session", disable=not progress):
        sessions.append((path, read_session(path)))
    env_ids = {s.meta.get("source", {}).get("env_id") for _, s in sessions}
    if len(env_ids) != 1 or None in env_ids:
        raise DatasetError(f"{folder}: sessions must come from one simulator env; found env ids {sorted(map(str, env_ids))}")
    env_id = env_ids.pop()
    # the dataset's env spec holds one setting of what the recorder records of the env (the other
    # keyword arguments, e.g. reward_type, are not recorded: the env id's defaults are assumed)
    settings = {}
    for key, default in (("difficulty", "medium"), ("action_type", None)):
        found = {s.meta["source"].get(key) or default for _, s in sessions}
        if len(found) != 1:
            raise DatasetError(f"{folder}: sessions must come from one {key} of {env_id}; found {sorted(map(str, found))}")
        value = found.pop()
        if value is not None:
            settings[key] = value
    dataset = dataset_id(env_id, name)
    check_free(root, dataset)
    env = gym.make(env_id, **settings)
    try:
        discrete = isinstance(env.action_space, gym.spaces.Discrete)
        episodes = [session_episode(s, str(p), discrete) for p, s in sessions]
        obs_width = env.observation_space.shape[0]
        action_width = 1 if discrete else env.action_space.shape[0]
        for (path, session), episode in zip(sessions, episodes):
            if len(episode.observations[0]) != obs_width:
                raise DatasetError(f"{path}: {len(episode.observations[0])} observation values, {env_id} has {obs_width}")
            actions = len(indexed_channels(session.channels, ACTION_PREFIX))
            if actions != action_width:
                raise DatasetError(f"{path}: {actions} action channels, {env_id} ({settings}) takes {action_width}")
        return write_dataset(root, dataset, episodes, env, algorithm="recorded sessions",
                             description=f"{len(episodes)} recorded sessions from {folder} on {env_id}")
    finally:
        env.close()
