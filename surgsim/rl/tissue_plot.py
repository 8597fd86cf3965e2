"""Elastic-tissue figure of one episode: the force on the tool (puncture marked) and what the load
did to the anatomy (the lesion's displacement), or on Incision the blade depth and the groove.

``EpisodeTrace`` is a wrapper that keeps the infos of an env's first episode, so any loop that
drives the env (``run_episodes``, the demo) can be drawn afterwards without changing it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import gymnasium as gym
import matplotlib
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from surgsim._files import atomic_save  # noqa: E402
from surgsim.tasks.base import CONTROL_RATE_HZ  # noqa: E402

MM = 1000.0  # m -> mm


def find_puncture(forces: Sequence[float], rise: float = 0.2, drop: float = 0.3) -> int | None:
    """Index of the first step whose force fell by more than ``drop`` (a fraction) from a
    previous step above ``rise`` (N): where the capsule gave way. None if it never did."""
    for i in range(1, len(forces)):
        before = forces[i - 1]
        if before > rise and forces[i] < (1.0 - drop) * before:
            return i
    return None


def plot_tissue(
    steps: Sequence[dict[str, Any]],
    path: str | Path,
    title: str,
    safe_force: float,
    max_force: float,
    *,
    port: Sequence[float] | None = None,
    puncture: int | None = None,
    cut_depth: Sequence[float] | None = None,
    line_length: float | None = None,
) -> Path:
    """Write a PNG of one elastic-tissue episode; return its path.

    ``steps``: the reset info, then one info per step (so entry i is at i / 20 Hz), each with
    ``tool_force`` (N) and ``depth`` (m), and ``target_position`` (m) on position-goal tasks.
    Panel 1: the force on the tool against time, with ``safe_force`` / ``max_force`` (N) dashed
    and the puncture (``puncture``, an index into ``steps``; found by :func:`find_puncture` if
    None) marked. Panel 2: the lesion's displacement from its position at reset (magnitude and,
    with the trocar's ``port`` (m), the component along the shaft, positive inwards); without
    ``target_position`` the depth instead. With ``cut_depth`` (m, samples equally spaced over
    ``line_length``, m) a third panel draws the groove's depth along the line.
    """
    if not steps or "tool_force" not in steps[0]:
        raise ValueError("plot_tissue needs an elastic-tissue episode's infos (with tool_force)")
    time = np.arange(len(steps)) / CONTROL_RATE_HZ
    force = np.array([s["tool_force"] for s in steps])
    if puncture is None:
        puncture = find_puncture(force)
    lesion = "target_position" in steps[0]
    groove = cut_depth is not None and line_length is not None
    panels = 3 if groove else 2
    fig, axes = plt.subplots(panels, 1, figsize=(7, 2.4 * panels + 0.4))
    top, middle = axes[0], axes[1]

    top.plot(time, force, marker=".", color="tab:blue", label="force on the tool")
    critical = np.array([s.get("critical_force", 0.0) for s in steps])
    if critical.any():
        top.plot(time, critical, marker=".", color="tab:purple",
                 label="force on a critical structure")
    top.axhline(safe_force, color="tab:orange", linestyle="--", label=f"safe {safe_force:g} N")
    top.axhline(max_force, color="tab:red", linestyle="--", label=f"max {max_force:g} N")
    if puncture is not None:
        for ax in axes[:2]:
            ax.axvline(time[puncture], color="grey", linestyle=":")
        top.text(time[puncture], 0.6, " puncture", transform=top.get_xaxis_transform(),
                 color="dimgrey")
    top.set_ylabel("force (N)")
    top.set_ylim(0, max_force * 1.15 if force.max() < max_force else force.max() * 1.1)
    top.set_title(title)
    top.legend(loc="best", fontsize="small")

    if lesion:
        position = np.array([s["target_position"] for s in steps], dtype=float)
        shift = position - position[0]
        middle.plot(time, MM * np.linalg.norm(shift, axis=1), marker=".", color="tab:green",
                    linewidth=3, label="lesion (target) displacement")
        if port is not None:
            tips = np.array([s["tip_position"] for s in steps], dtype=float)
            axis = tips - np.asarray(port, dtype=float)
            axis /= np.linalg.norm(axis, axis=1, keepdims=True)
            middle.plot(time, MM * np.einsum("ij,ij->i", shift, axis), marker=".",
                        color="tab:olive", linestyle="--", label="along the shaft (+: pushed in)")
        middle.axhline(0.0, color="black", linewidth=0.5)
        middle.set_ylabel("target displacement (mm)")
        middle.legend(loc="best", fontsize="small")
    else:
        middle.plot(time, MM * np.array([s["depth"] for s in steps]), marker=".", color="tab:brown")
        middle.set_ylabel("blade depth (mm)")
        middle.invert_yaxis()
    middle.set_xlabel(f"time (s, {CONTROL_RATE_HZ} Hz control steps)")
    top.sharex(middle)

    if groove:
        depth = MM * np.asarray(cut_depth, dtype=float)
        along = MM * np.linspace(0.0, line_length, len(depth))
        bottom = axes[2]
        bottom.fill_between(along, depth, color="tab:brown", alpha=0.3)
        bottom.plot(along, depth, color="tab:brown")
        bottom.set_xlabel("along the line (mm)")
        bottom.set_ylabel("groove depth (mm)")
        bottom.set_ylim(max(depth.max() * 1.2, 0.5), 0)
    for ax in axes:
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return out


class EpisodeTrace(gym.Wrapper):
    """Keep the infos of the first episode (its reset info, then one per step) and, at its end,
    what :func:`plot_tissue` needs from the task: the port, the groove depth profile, the forces."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.infos: list[dict[str, Any]] = []
        self.done = False
        self.port: np.ndarray | None = None
        self.cut_depth: np.ndarray | None = None
        self.line_length: float | None = None

    @property
    def elastic(self) -> bool:
        """Whether the recorded episode reported tissue forces (not with ``tissue="rigid"``)."""
        return bool(self.infos) and "tool_force" in self.infos[0]

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        if not self.infos:
            self.infos.append(dict(info))
            port = getattr(self.env.unwrapped.task, "port", None)
            self.port = None if port is None else np.array(port, dtype=float)
        else:
            self.done = True  # a second reset ends the first episode, finished or not
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        if self.infos and not self.done:
            self.infos.append(dict(info))
            if terminated or truncated:
                self.done = True
                task = self.env.unwrapped.task
                if getattr(task, "cut_depth", None) is not None:
                    self.cut_depth = np.array(task.cut_depth, dtype=float)
                    self.line_length = float(task.length)
        return obs, reward, terminated, truncated, info

    def plot(self, path: str | Path, title: str) -> Path | None:
        """Write the recorded episode's figure; None (nothing written) without tissue forces."""
        if not self.elastic:
            return None
        spec = self.env.unwrapped.task_spec.tissue
        return plot_tissue(self.infos, path, title, spec.safe_force_n, spec.max_force_n,
                           port=self.port, cut_depth=self.cut_depth, line_length=self.line_length)
