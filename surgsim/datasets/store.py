"""Demonstration datasets in Minari's format (Arrow storage), written whole or not at all.

Minari APIs used (minari 0.5): ``minari.data_collector.EpisodeBuffer`` (one episode's lists),
``minari.create_dataset_from_buffers`` (writes the dataset and its metadata: env spec, reference
scores), ``minari.load_dataset`` with ``MinariDataset.iterate_episodes``, ``.storage.metadata``
and ``.storage.get_episode_metadata`` (seeds), and ``minari.namespace.create_namespace``.
``minari.DataCollector`` is not used: it needs JAX, which surgsim does not install.

Minari finds datasets under ``MINARI_DATASETS_PATH``; the functions here take the root folder
explicitly and set that variable only while they call Minari. A dataset is built in a temporary
root inside ``root`` and moved into place by one rename, so a crash leaves no half-written
dataset under its id.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from surgsim._extras import require
from surgsim.errors import SurgsimError

NAMESPACE = "surgsim"
#: info entries stored per step (the reset's first): outcome, distances and the tip (SI units)
INFO_KEYS = ("is_success", "is_failure", "failure_reason", "distance_to_target", "clearance", "depth",
             "tissue_damage", "tip_position")


class DatasetError(SurgsimError):
    """A dataset that cannot be written or read; the message names it and the problem."""


#: a dataset name: letters, digits, _ and - (Minari's own id syntax adds the namespace, the env
#: and the version around it)
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def dataset_id(env_id: str, name: str) -> str:
    """``surgsim/<env name>/<name>-v0`` for an env id ``surgsim/<env name>-v0``; refuses a name
    Minari would misread (a path, a version suffix, spaces)."""
    if not _NAME.fullmatch(name) or re.search(r"-v\d+$", name):
        raise DatasetError(f"--name {name!r}: use letters, digits, _ and - (no path, no -v<N> version suffix)")
    env_name = env_id.split("/")[-1].rsplit("-v", 1)[0]
    return f"{NAMESPACE}/{env_name}/{name}-v0"


@contextlib.contextmanager
def datasets_path(root: str | Path) -> Iterator[None]:
    """Point Minari at ``root`` for the duration of the block. The path is made absolute: with a
    relative one, Minari 0.5.4 looks for its own files at the path joined twice and cannot write."""
    saved = os.environ.get("MINARI_DATASETS_PATH")
    os.environ["MINARI_DATASETS_PATH"] = str(Path(root).absolute())
    try:
        yield
    finally:
        if saved is None:
            del os.environ["MINARI_DATASETS_PATH"]
        else:
            os.environ["MINARI_DATASETS_PATH"] = saved


def dataset_dir(root: str | Path, dataset: str) -> Path:
    return Path(root) / dataset


def check_free(root: str | Path, dataset: str) -> None:
    """Refuse, before any work, a dataset id already taken under ``root``."""
    if dataset_dir(root, dataset).exists():
        raise DatasetError(f"{dataset_dir(root, dataset)} already exists: choose another --name or --out")


@dataclass
class Episode:
    """One episode as recorded: T+1 observations (the reset's first), T actions, rewards,
    terminations and truncations, the seed it was reset with, and T+1 infos (:data:`INFO_KEYS`)."""

    seed: int | None
    observations: list[Any]
    actions: list[Any]
    rewards: list[float]
    terminations: list[bool]
    truncations: list[bool]
    infos: dict[str, list[Any]]

    @property
    def total_return(self) -> float:
        return float(sum(self.rewards))


def info_row(info: dict[str, Any]) -> dict[str, Any]:
    """The stored part of one step's info (a failure reason of None is stored as "")."""
    row = {key: info[key] for key in INFO_KEYS if key in info}
    if "failure_reason" in row:
        row["failure_reason"] = row["failure_reason"] or ""
    if "tip_position" in row:
        row["tip_position"] = np.asarray(row["tip_position"], dtype=np.float64)
    return row


def write_dataset(
    root: str | Path, dataset: str, episodes: Sequence[Episode], env: gym.Env, *,
    algorithm: str, description: str, ref_min_score: float | None = None,
    ref_max_score: float | None = None, ref_episodes: int = 0, author: str = "surgsim",
) -> Path:
    """Write ``episodes`` as Minari dataset ``dataset`` under ``root``; returns its folder.
    ``ref_episodes`` is how many episodes the reference scores average (stored with them)."""
    require("datasets", "writing a Minari dataset")
    import minari
    from minari.data_collector import EpisodeBuffer
    from minari.namespace import create_namespace, list_local_namespaces

    if not episodes:
        raise DatasetError(f"{dataset}: no episodes to write")
    root = Path(root)
    check_free(root, dataset)
    root.mkdir(parents=True, exist_ok=True)
    buffers = [
        EpisodeBuffer(id=i, seed=e.seed, observations=_by_key(e.observations), actions=list(e.actions),
                      rewards=list(e.rewards), terminations=list(e.terminations),
                      truncations=list(e.truncations), infos=dict(e.infos))
        for i, e in enumerate(episodes)
    ]
    scratch = Path(tempfile.mkdtemp(prefix=".surgsim-dataset-", dir=root))
    try:
        with datasets_path(scratch), warnings.catch_warnings():
            # surgsim records no e-mail address or code link, and evaluates on the env that made the data
            warnings.filterwarnings("ignore", message=r"`(author_email|eval_env|code_permalink)` is set to None")
            minari.create_dataset_from_buffers(
                dataset, buffers, env=env, algorithm_name=algorithm, author=author,
                ref_min_score=ref_min_score, ref_max_score=ref_max_score,
                num_episodes_average_score=ref_episodes, description=description,
                data_format="arrow",
                requirements=[f"surgsim=={_version()}"],
            )
        with datasets_path(root):
            if NAMESPACE not in list_local_namespaces():
                create_namespace(NAMESPACE, description="surgsim demonstration datasets")
        final = dataset_dir(root, dataset)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.rename(dataset_dir(scratch, dataset), final)  # fails if another writer took the id
    except OSError as exc:
        raise DatasetError(f"cannot write {dataset_dir(root, dataset)}: {exc.strerror or exc}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return final


def _by_key(observations: list[Any]) -> list[Any] | dict[str, list[Any]]:
    """Dict observations (``obs_type="goal"``) as Minari wants them: a list per key."""
    if isinstance(observations[0], dict):
        return {key: [o[key] for o in observations] for key in observations[0]}
    return list(observations)


def _version() -> str:
    from surgsim import __version__

    return __version__


@dataclass
class Demonstrations:
    """A dataset's transitions as flat arrays (N transitions), for pretraining.

    ``observations[i]`` -> ``actions[i]`` -> ``rewards[i]``, ``next_observations[i]``;
    ``terminations[i]`` / ``truncations[i]`` end an episode; ``episode[i]`` is its index.
    """

    dataset: str
    env_spec: Any
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    next_observations: np.ndarray
    terminations: np.ndarray
    truncations: np.ndarray
    episode: np.ndarray
    seeds: list[int | None]
    successes: np.ndarray  # per episode, from the stored infos
    ref_min_score: float | None
    ref_max_score: float | None

    def __len__(self) -> int:
        return len(self.actions)

    @property
    def episodes(self) -> int:
        return len(self.seeds)

    def returns_to_go(self, gamma: float, rewards: np.ndarray | None = None) -> np.ndarray:
        """Discounted return from each transition to its episode's end, of ``rewards`` (default:
        the recorded ones; pretraining passes normalised ones). A truncated episode is not
        bootstrapped: a lower bound of the demonstrator's value."""
        rewards = self.rewards if rewards is None else rewards
        out = np.empty(len(rewards))
        running = 0.0
        for i in range(len(rewards) - 1, -1, -1):
            if self.terminations[i] or self.truncations[i]:
                running = 0.0
            running = rewards[i] + gamma * running
            out[i] = running
        return out

    @property
    def success_rate(self) -> float:
        """Share of the episodes that ended in success."""
        return float(np.mean(self.successes))


def load_demonstrations(root: str | Path, dataset: str) -> Demonstrations:
    """Read a Minari dataset under ``root`` into flat arrays (Box observations only)."""
    require("datasets", "reading a Minari dataset")
    import minari

    folder = dataset_dir(root, dataset)
    if not folder.is_dir():
        raise DatasetError(f"no dataset {dataset} under {root} (looked for {folder})")
    with datasets_path(root):
        try:
            data = minari.load_dataset(dataset)
        except Exception as exc:  # noqa: BLE001  (Minari raises bare ValueErrors and KeyErrors)
            raise DatasetError(f"cannot read dataset {folder}: {type(exc).__name__}: {exc}") from None
        episodes = list(data.iterate_episodes())
        seeds = [m.get("seed") for m in data.storage.get_episode_metadata(range(data.total_episodes))]
        meta = data.storage.metadata
    if not episodes:
        raise DatasetError(f"dataset {folder} has no episodes")
    if not isinstance(episodes[0].observations, np.ndarray):
        raise DatasetError(f"dataset {folder}: pretraining needs vector observations (obs_type state)")
    obs = [e.observations[:-1] for e in episodes]
    return Demonstrations(
        dataset=dataset,
        env_spec=data.spec.env_spec,
        observations=np.concatenate(obs).astype(np.float32),
        actions=np.concatenate([np.asarray(e.actions) for e in episodes]),
        rewards=np.concatenate([e.rewards for e in episodes]).astype(np.float64),
        next_observations=np.concatenate([e.observations[1:] for e in episodes]).astype(np.float32),
        terminations=np.concatenate([e.terminations for e in episodes]).astype(bool),
        truncations=np.concatenate([e.truncations for e in episodes]).astype(bool),
        episode=np.concatenate([np.full(len(e.rewards), i) for i, e in enumerate(episodes)]),
        seeds=seeds,
        successes=np.array([bool(np.asarray(e.infos.get("is_success", [False]))[-1]) for e in episodes]),
        ref_min_score=meta.get("ref_min_score"),
        ref_max_score=meta.get("ref_max_score"),
    )
