"""Learning-curve figure: evaluation success rate and return against timesteps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from surgsim._files import atomic_save  # noqa: E402


def learning_curve(history: list[dict[str, Any]], out: Path, title: str) -> Path:
    """Write a two-panel PNG from evaluation records (timesteps, success_rate, returns)."""
    steps = [h["timesteps"] for h in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.plot(steps, [100 * h["success_rate"] for h in history], marker="o", label="success")
    top.plot(steps, [100 * h["critical_failure_rate"] for h in history], marker="x",
             color="tab:red", label="critical-structure failure")
    top.set_ylabel("episodes (%)")
    top.set_ylim(-2, 102)
    top.legend(loc="center right")
    top.set_title(title)
    mean = [h["mean_return"] for h in history]
    std = [h["std_return"] for h in history]
    bottom.plot(steps, mean, marker="o", color="tab:green")
    bottom.fill_between(steps, [m - s for m, s in zip(mean, std)], [m + s for m, s in zip(mean, std)],
                        color="tab:green", alpha=0.2)
    bottom.set_ylabel("evaluation return")
    bottom.set_xlabel("timesteps")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    atomic_save(out, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return out
