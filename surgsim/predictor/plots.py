"""Figures for the predictor: the training loss curve and predicted versus planned paths."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from surgsim._files import atomic_save  # noqa: E402


def _save(fig, out: Path) -> Path:
    atomic_save(out, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return out


def loss_curve(history: list[dict[str, float]], baseline: float, out: Path, title: str) -> Path:
    """Train / validation MSE (log scale, with the mean-path baseline) and validation error in mm."""
    epochs = [h["epoch"] for h in history]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True)
    top.semilogy(epochs, [h["train_loss"] for h in history], marker="o", label="train")
    top.semilogy(epochs, [h["val_loss"] for h in history], marker="o", label="validation")
    top.axhline(baseline, color="grey", linestyle="--", label="mean-path baseline (validation)")
    top.set_ylabel("MSE (volume frame)")
    top.set_title(title)
    top.legend()
    bottom.plot(epochs, [h["val_error_mm"] for h in history], marker="o", color="tab:green")
    bottom.set_ylabel("validation mean waypoint error (mm)")
    bottom.set_xlabel("epoch")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    fig.tight_layout()
    return _save(fig, out)


def path_figure(planned: np.ndarray, predicted: np.ndarray, labels: Sequence[str], out: Path) -> Path:
    """One row per patient: x-z and y-z projections of the planned and predicted tip paths (mm)."""
    n = len(planned)
    fig, axes = plt.subplots(n, 2, figsize=(8, 3.2 * n), squeeze=False)
    for row, (plan, pred, label) in enumerate(zip(planned, predicted, labels)):
        plan, pred = 1000.0 * np.asarray(plan), 1000.0 * np.asarray(pred)
        for col, (axis, name) in enumerate(((0, "x"), (1, "y"))):
            ax = axes[row, col]
            ax.plot(plan[:, axis], plan[:, 2], "-o", ms=3, label="planner")
            ax.plot(pred[:, axis], pred[:, 2], "--x", ms=4, label="predictor")
            ax.plot(plan[-1, axis], plan[-1, 2], "r*", ms=12, label="target")
            ax.set_xlabel(f"{name} (mm)")
            ax.set_ylabel("z (mm)")
            ax.set_aspect("equal", adjustable="datalim")
            ax.grid(alpha=0.3)
            ax.set_title(label, fontsize=9)
        if row == 0:
            axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    return _save(fig, out)
