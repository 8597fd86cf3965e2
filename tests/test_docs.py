"""The README documents every observation entry exactly as the tasks declare them."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import pytest

import surgsim
from surgsim.tasks.docs import observation_tables

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_holds_the_observation_tables_as_printed():
    assert observation_tables() in README.read_text(), "run `python -m surgsim.tasks.docs` and paste it into README.md"


@pytest.mark.parametrize("env_id", sorted(surgsim.REGISTERED))
def test_every_observation_entry_is_declared(env_id):
    env = gym.make(env_id)
    try:
        declared = env.unwrapped.task.OBSERVATION
        assert env.observation_space.shape == (len(declared),)
        assert len({e.name for e in declared}) == len(declared)  # names are unique
        assert all(e.meaning and e.unit and e.scale for e in declared)
    finally:
        env.close()
