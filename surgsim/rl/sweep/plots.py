"""A sweep's success curve: per config, the mean over seeds and its 95 % confidence band."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from surgsim._files import atomic_save

#: one seed's evaluations: timesteps and success rates
Curve = tuple[np.ndarray, np.ndarray]


def mean_and_band(curves: list[Curve]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Timesteps, mean, and 95 % t-interval over seeds on the union of their evaluation timesteps.

    A seed counts at a timestep only up to its own last evaluation (a trial stopped early does
    not drag the mean down afterwards); between evaluations it is interpolated. Values are
    clipped to [0, 1], the range of a success rate.
    """
    from scipy import stats

    grid = np.unique(np.concatenate([steps for steps, _ in curves]))
    stacked = np.full((len(curves), len(grid)), np.nan)
    for i, (steps, values) in enumerate(curves):
        inside = grid <= steps[-1]
        stacked[i, inside] = np.interp(grid[inside], steps, values)
    count = np.sum(~np.isnan(stacked), axis=0)
    mean = np.nanmean(stacked, axis=0)
    half = np.zeros_like(mean)
    several = count > 1
    if several.any():
        sem = np.nanstd(stacked[:, several], axis=0, ddof=1) / np.sqrt(count[several])
        half[several] = stats.t.ppf(0.975, count[several] - 1) * sem
    return grid, mean, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1)


def plot_success(lines: dict[str, list[Curve]], path: Path, title: str) -> Path | None:
    """Success rate against timesteps, one line (mean) and band per label; None when no curve is drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = 0
    for label, curves in lines.items():
        if curves:
            steps, mean, low, high = mean_and_band(curves)
            line, = ax.plot(steps, 100 * mean, label=f"{label} ({len(curves)} seeds)")
            ax.fill_between(steps, 100 * low, 100 * high, color=line.get_color(), alpha=0.2)
            drawn += 1
    if drawn:
        ax.set_xlabel("timesteps")
        ax.set_ylabel("evaluation success rate (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(title + "\nmean over seeds, band: 95 % confidence interval of the mean")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
        fig.tight_layout()
        atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return path if drawn else None
