"""The discrete-action rule, written once: 2n+1 actions for n degrees of freedom, 0 the no-op, then
``2i + 1`` plus and ``2i + 2`` minus a full step along axis ``i``. The env, its scripted expert
and keyboard teleoperation all go through :class:`DiscreteActions`."""

from __future__ import annotations

from typing import Any

import numpy as np

from surgsim.errors import EnvError


class DiscreteActions:
    """Codec between discrete actions and unit actions in [-1, 1]^n."""

    def __init__(self, n: int) -> None:
        if n < 1:
            raise ValueError(f"a discrete action space needs at least one axis, got {n}")
        self.n = n
        #: the unit action of each discrete action, row by row
        self.table = np.zeros((2 * n + 1, n))
        for i in range(n):
            self.table[2 * i + 1, i] = 1.0
            self.table[2 * i + 2, i] = -1.0
        # read-only: decode hands out its rows themselves, so nothing may write into them
        self.table.flags.writeable = False

    @classmethod
    def for_size(cls, size: int) -> "DiscreteActions":
        """The codec of a Discrete(size) space; ``size`` must be 2n+1."""
        n = (int(size) - 1) // 2
        if int(size) != 2 * n + 1 or n < 1:
            raise ValueError(f"a discrete action space needs 2n+1 actions (no-op, then +/- per axis), got {size}")
        return cls(n)

    @property
    def size(self) -> int:
        """Number of discrete actions (2n+1)."""
        return len(self.table)

    def decode(self, action: Any) -> np.ndarray:
        """The unit action of discrete action ``action``; a clear error for anything else."""
        try:
            k = int(action)
        except (TypeError, ValueError):
            raise EnvError(f"discrete action must be an integer, got {action!r}") from None
        if not 0 <= k < self.size or k != np.asarray(action):
            raise EnvError(f"discrete action {action!r} is outside 0..{self.size - 1}")
        return self.table[k]  # a read-only row: no copy per step

    def encode(self, unit: np.ndarray) -> int:
        """The discrete action nearest a unit action: a step along its largest component (the
        first, on ties), or the no-op when every component is below one half."""
        k = int(np.argmax(np.abs(unit)))
        if abs(unit[k]) < 0.5:
            return 0
        return 2 * k + (1 if unit[k] > 0 else 2)
