"""Training presets: rl_zoo3-style YAML files in ``agents/<algo>.yml`` keyed by env id."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from surgsim._data import data_dir
from surgsim.errors import SurgsimError, yaml_problem

ALGOS = ("ppo", "dqn", "sac")
#: keys of a preset that configure the run rather than the algorithm (as in rl_zoo3)
RUN_KEYS = ("n_timesteps", "policy", "n_envs", "normalize")


def preset_path(algo: str) -> Path:
    return data_dir("agents") / f"{algo}.yml"


def load_preset(algo: str, env_id: str, obs_type: str = "state") -> dict[str, Any]:
    """The preset for ``env_id`` from ``agents/<algo>.yml``, or the file's ``default`` entry.

    Entries keyed ``<env id> <obs_type>`` or ``default <obs_type>`` (e.g. ``default goal``, SAC
    with HER) come first for that observation type; rl_zoo3 looks up plain env ids and skips them.
    """
    path = preset_path(algo)
    if not path.is_file():
        raise SurgsimError(f"unknown algorithm {algo!r}; expected one of {list(ALGOS)}")
    presets = yaml.safe_load(path.read_text()) or {}
    for key in (f"{env_id} {obs_type}", f"default {obs_type}", env_id, "default"):
        if key in presets:
            return dict(presets[key])
    raise SurgsimError(f"{path}: no preset for {env_id!r} and no 'default' entry")


def parse_value(text: str) -> Any:
    """A number when it reads as one (PyYAML reads ``3e-4`` as a string), else YAML."""
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return yaml.safe_load(text)


def parse_overrides(items: list[str] | None, what: str) -> dict[str, Any]:
    """``["learning_rate:3e-4", "policy_kwargs:{net_arch: [64, 64]}"]`` -> dict (numbers, else YAML)."""
    result: dict[str, Any] = {}
    for item in items or []:
        key, sep, raw = item.partition(":")
        if not sep or not key.strip():
            raise SurgsimError(f"{what} entry {item!r} is not of the form key:value")
        try:
            value = parse_value(raw)
        except yaml.YAMLError as exc:
            raise SurgsimError(f"{what} entry {item!r}: value is not valid YAML ({yaml_problem(exc)})") from None
        result[key.strip()] = value
    return result
