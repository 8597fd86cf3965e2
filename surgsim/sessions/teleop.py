"""Keyboard teleoperation of any surgsim env, recorded as sessions.

One key map serves both inputs: a PyBullet GUI window (keys held down are read at the env's
control rate, so time runs on while the trainee hesitates) and scripted keys for tests and demos
(one key per step). Both drive the same :func:`play` loop.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Protocol, Sequence

import gymnasium as gym
import numpy as np

from surgsim.actions import DiscreteActions
from surgsim.errors import SurgsimError

#: (plus key, minus key) of action axis 0, 1, 2, ...
AXIS_KEYS = (("d", "a"), ("w", "s"), ("e", "q"), ("l", "j"), ("i", "k"), ("o", "u"))
#: a step with no motion (time still passes)
NOOP_KEY = "."
#: end the episode now; it is kept, marked incomplete
END_KEY = "x"


@dataclass(frozen=True)
class KeyMap:
    """Keys -> an action of the env: +/- 1 per continuous axis, or the matching discrete index."""

    n_axes: int
    discrete: bool

    @classmethod
    def for_space(cls, space: gym.Space) -> "KeyMap":
        """The key map of a surgsim action space: Box(n) or Discrete(2n + 1)."""
        if isinstance(space, gym.spaces.Discrete):
            n, discrete = DiscreteActions.for_size(space.n).n, True
        elif isinstance(space, gym.spaces.Box) and len(space.shape) == 1:
            n, discrete = int(space.shape[0]), False
        else:
            raise SurgsimError(f"keyboard control needs a Box(n) or Discrete(2n+1) action space, got {space}")
        if n > len(AXIS_KEYS):
            raise SurgsimError(f"keyboard control covers {len(AXIS_KEYS)} action axes, the env has {n}")
        return cls(n, discrete)

    @property
    def keys(self) -> set[str]:
        """Every key this map understands."""
        return {k for pair in AXIS_KEYS[: self.n_axes] for k in pair} | {NOOP_KEY, END_KEY}

    def action(self, keys: set[str]) -> Any:
        """The action for the keys held: several axes at once when continuous, the first axis key when discrete."""
        unit = np.zeros(self.n_axes)
        for axis, (plus, minus) in enumerate(AXIS_KEYS[: self.n_axes]):
            unit[axis] = (plus in keys) - (minus in keys)
        return DiscreteActions(self.n_axes).encode(unit) if self.discrete else unit.astype(np.float32)


def describe_keys(n_axes: int = 3) -> str:
    """The key map in words, for --help and error messages."""
    axes = ", ".join(f"axis {i}: {plus} + / {minus} -" for i, (plus, minus) in enumerate(AXIS_KEYS[:n_axes]))
    return f"{axes}; '{NOOP_KEY}' no motion for a step; '{END_KEY}' ends the episode (kept as incomplete)"


def parse_keys(text: str, key_map: KeyMap, source: str = "--keys") -> list[str]:
    """Scripted keys, one step each; whitespace is ignored. Unknown keys are an error naming them."""
    keys = [c for c in text if not c.isspace()]
    unknown = sorted({c for c in keys if c not in key_map.keys})
    if unknown:
        raise SurgsimError(
            f"{source}: unknown key(s) {unknown}; this env's keys are {sorted(key_map.keys)} ({describe_keys(key_map.n_axes)})"
        )
    return keys


class KeySource(Protocol):
    def next_keys(self) -> set[str] | None:
        """The keys for the next step, or None when the input has ended."""


@dataclass
class ScriptedKeys:
    """One key per step from a string; None once it is used up."""

    keys: Sequence[str]
    _iter: Iterator[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._iter = iter(self.keys)

    def next_keys(self) -> set[str] | None:
        key = next(self._iter, None)
        return None if key is None else {key}


class WindowKeys:
    """Keys held in the env's PyBullet GUI window, read once per control period (real time)."""

    def __init__(self, env: gym.Env, rate_hz: float) -> None:
        self.world = env.unwrapped.world
        self.period = 1.0 / rate_hz
        self._next = time.perf_counter()

    def next_keys(self) -> set[str] | None:
        self._next += self.period
        time.sleep(max(0.0, self._next - time.perf_counter()))
        try:
            return self.world.keys_down()
        except RuntimeError:  # the window was closed
            return None


def gui_camera(eye: Sequence[float], target: Sequence[float]) -> tuple[float, float, float]:
    """(distance, yaw, pitch) in PyBullet's GUI convention for a camera at ``eye`` looking at ``target``."""
    offset = np.subtract(eye, target).astype(float)
    distance = float(np.linalg.norm(offset))
    pitch = -math.degrees(math.asin(offset[2] / distance))
    yaw = math.degrees(math.atan2(offset[0], -offset[1]))
    return distance, yaw, pitch


@dataclass
class PlayResult:
    """How a :func:`play` run ended, so the CLI can say when scripted keys ran out early."""

    episodes_started: int
    input_ended: bool


def play(
    env: gym.Env,
    source: KeySource,
    episodes: int,
    seed: int | None = None,
    options: dict[str, Any] | None = None,
) -> PlayResult:
    """Run ``episodes`` episodes driven by ``source`` (wrap ``env`` in a SessionRecorder to record).

    Episode ``i`` is reset with ``seed + i``. An episode ends when the env ends it, on the end key,
    or when the input ends (which also ends the session). The caller closes ``env``, which keeps an
    episode cut short as an incomplete session.
    """
    key_map = KeyMap.for_space(env.action_space)
    world = getattr(env.unwrapped, "world", None)
    camera = getattr(getattr(env.unwrapped, "task", None), "camera", None)
    if world is not None and camera is not None:  # the window looks where the task's camera does
        world.view_from(*gui_camera(camera.eye, camera.target), camera.target)
    for i in range(episodes):
        env.reset(seed=None if seed is None else seed + i, options=options)
        done = False
        while not done:
            keys = source.next_keys()
            if keys is None:
                return PlayResult(i + 1, True)
            if END_KEY in keys:
                break
            _, _, terminated, truncated, _ = env.step(key_map.action(keys))
            done = terminated or truncated
    return PlayResult(episodes, False)
