"""Shared fixtures for the surgsim test suite (the helpers live in ``simhelpers.py``)."""

from __future__ import annotations

import gymnasium as gym
import pytest

import surgsim  # noqa: F401  (registers the ids)


@pytest.fixture
def make_env():
    """``make_env(env_id, **kwargs)``: ``gym.make`` whose envs are closed after the test."""
    made = []

    def _make(env_id: str, **kwargs):
        env = gym.make(env_id, **kwargs)
        made.append(env)
        return env

    yield _make
    for env in made:
        env.close()
