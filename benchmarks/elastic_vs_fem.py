#!/usr/bin/env python
"""The elastic tier checked against the fem tier on the same motions, and the elastic model's
parameters fitted to the fem runs (issue 14, point 4).

The instruments are kinematic (the tissue does not push them off their course), so the same
actions give the same tool motion in both tiers: each motion is an action sequence, made once
and replayed in both.

- **insertion**: SurgicalPath's scripted expert (aim, then advance to the lesion), its actions
  recorded on elastic tissue, one patient per seed;
- **sweep**: SurgicalPath, the expert's actions until 20 mm of shaft is inside the organ, then
  yaw +1 for 4 steps and -1 for 8 (the shaft swept sideways through the tissue), then withdrawal;
- **cut**: Incision's scripted expert (press in, cut along the line), recorded on elastic tissue.

Per motion and tier: peak force on the tool (N), the RMS difference of the force over the steps
(N, and as a share of the fem peak), the lesion's peak displacement and the RMS difference of its
displacement (mm; SurgicalPath). Goal: RMS force difference within 25 % of the fem peak over an
insertion, lesion displacement within 1 mm.

**Fit** (``--fit``): the insertion's fem forces against the elastic model's laws, by least
squares: ``k1 d + k2 d^2`` on the steps before puncture (``d``: the tip's depth in the organ),
the puncture force (the fem force at puncture), friction per mm on the steps after it (force
against the length inside), and the load radius by a scan of the lesion's displacement error;
then the insertion again with the fitted elastic model, and the same fit on a finer fem mesh
(``--fine-cell``) to show how much of the fit is the mesh.

    OMP_NUM_THREADS=1 python benchmarks/elastic_vs_fem.py --fit          # ~5 min on 2 cores
    OMP_NUM_THREADS=1 python benchmarks/elastic_vs_fem.py --seeds 2      # smoke run
"""

from __future__ import annotations

import argparse
import os
import platform
from dataclasses import dataclass
from pathlib import Path

import gymnasium as gym
import numpy as np

import surgsim  # noqa: F401  (registers the envs)
from surgsim.tasks.spec import TaskSpec

MM = 1e-3
SWEEP_INSIDE = 0.02  #: m of shaft inside the organ before the sweep starts
SWEEP = [(1.0, 0.0, 0.0)] * 4 + [(-1.0, 0.0, 0.0)] * 8 + [(0.0, 0.0, -1.0)] * 30
FIGURE = Path(__file__).resolve().parent.parent / "assets" / "figures" / "elastic_vs_fem.png"


@dataclass
class Trace:
    """One replayed motion: per step the force (N), its axial part (N, pushing the tool back),
    the depth of the tip in the tissue and the length inside (m), the lesion's displacement (m),
    whether the tissue is punctured, and how the episode ended."""

    force: np.ndarray
    axial: np.ndarray
    inside: np.ndarray
    shift: np.ndarray
    punctured: np.ndarray
    outcome: str


def with_tissue(spec: TaskSpec, **tissue) -> TaskSpec:
    """``spec`` with some ``tissue:`` fields replaced."""
    return spec.model_copy(update={"tissue": spec.tissue.model_copy(update=tissue)})


def record_actions(env_id: str, seed: int, motion: str) -> list[np.ndarray]:
    """The action sequence of a motion, made on elastic tissue."""
    env = gym.make(env_id, tissue="elastic")
    env.reset(seed=seed)
    task, actions = env.unwrapped.task, []
    swept = False
    while True:
        if motion == "sweep" and not swept and task.tissue_length >= SWEEP_INSIDE:
            swept = True
            actions += [np.asarray(a, dtype=np.float32) for a in SWEEP]
            break
        action = env.unwrapped.expert_action()
        actions.append(action)
        _, _, term, trunc, _ = env.step(action)
        if term or trunc:
            break
    env.close()
    return actions


def replay(env_id: str, seed: int, actions: list[np.ndarray], tissue: str, spec: TaskSpec | None = None) -> Trace:
    """The actions replayed on a tissue tier (stopping where the episode ends)."""
    kwargs = {"task_spec": spec} if spec is not None else {}
    env = gym.make(env_id, tissue=tissue, **kwargs)
    env.reset(seed=seed)
    task = env.unwrapped.task
    rows, outcome = [], "truncated"
    for action in actions:
        _, _, term, trunc, info = env.step(action)
        vector = np.asarray(info["tool_force_vector"])
        direction = np.asarray(getattr(task.tool, "direction", (0.0, 0.0, -1.0)))
        inside = task.tissue_length if hasattr(task, "tissue_length") else info["depth"]
        rows.append((info["tool_force"], -float(vector @ direction), inside,
                     float(np.linalg.norm(task.target_shift)), task._contact.punctured))
        if term or trunc:
            outcome = "success" if info["is_success"] else (info.get("failure_reason") or "truncated")
            break
    env.close()
    force, axial, inside, shift, punctured = (np.array(c) for c in zip(*rows))
    return Trace(force, axial, inside, shift, punctured.astype(bool), outcome)


def compare(a: Trace, b: Trace) -> tuple[float, float, float]:
    """RMS force difference (N), as a share of b's peak, RMS lesion-shift difference (m)."""
    n = min(len(a.force), len(b.force))
    rms = float(np.sqrt(np.mean((a.force[:n] - b.force[:n]) ** 2)))
    shift = float(np.sqrt(np.mean((a.shift[:n] - b.shift[:n]) ** 2)))
    return rms, rms / max(float(b.force.max()), 1e-9), shift


def fit(traces: list[Trace]) -> dict[str, float]:
    """The elastic model's insertion parameters from fem insertions (spec units)."""
    before = [(t.inside[i], t.axial[i]) for t in traces for i in range(len(t.force))
              if not t.punctured[i] and t.inside[i] > 0]
    after = [(t.inside[i], t.axial[i]) for t in traces for i in range(len(t.force))
             if t.punctured[i] and t.inside[i] > 0]
    fitted = {}
    if before:
        d, f = (np.array(c) for c in zip(*before))
        k, *_ = np.linalg.lstsq(np.column_stack([d, d * d]), f, rcond=None)
        k = np.clip(k, 0.0, None)  # the elastic model takes non-negative stiffnesses
        fitted["stiffness_n_per_mm"] = float(k[0] * MM)
        fitted["stiffness_n_per_mm2"] = float(k[1] * MM * MM)
    peaks = [float(t.axial[:np.argmax(t.punctured) + 1].max()) for t in traces if t.punctured.any()]
    if peaks:
        fitted["puncture_force_n"] = float(np.median(peaks))
    if after:
        length, f = (np.array(c) for c in zip(*after))
        fitted["friction_n_per_mm"] = max(float(np.sum(length * f) / np.sum(length * length) * MM), 0.0)
    return fitted


def figure(path: Path, runs: dict[str, Trace], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    styles = {"elastic (shipped)": "C0-", "elastic (fitted to fem)": "C2--", "fem": "C3-"}
    for name, t in runs.items():
        steps = np.arange(1, len(t.force) + 1) / 20.0
        top.plot(steps, t.force, styles[name], marker=".", label=name)
        bottom.plot(steps, t.shift * 1e3, styles[name], marker=".", label=name)
    top.set_ylabel("force on the tool (N)")
    bottom.set_ylabel("lesion displacement (mm)")
    bottom.set_xlabel("time (s, 20 Hz control steps)")
    top.set_title(title)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    plt.close(fig)
    os.replace(tmp, path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", type=int, default=6, help="patients per motion")
    ap.add_argument("--fit", action="store_true", help="fit the elastic parameters to the fem insertions")
    ap.add_argument("--fine-cell", type=float, default=10.0, help="mm: the finer fem mesh of the fit's check")
    ap.add_argument("--figure", type=Path, default=FIGURE)
    args = ap.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}\n")
    seeds = range(args.seeds)
    motions = (("insertion", "surgsim/SurgicalPath-v0"), ("sweep", "surgsim/SurgicalPath-v0"),
               ("cut", "surgsim/Incision-v0"))
    recorded = {(m, s): record_actions(env_id, s, m) for m, env_id in motions for s in seeds}
    results: dict[tuple[str, int], tuple[Trace, Trace]] = {}
    print("| motion | seed | steps | outcome elastic / fem | peak force elastic / fem (N) | RMS force diff (N) | "
          "share of fem peak | peak lesion shift elastic / fem (mm) | RMS shift diff (mm) |")
    print("|---|--:|--:|---|--:|--:|--:|--:|--:|")
    for motion, env_id in motions:
        shares, shifts = [], []
        for seed in seeds:
            actions = recorded[motion, seed]
            e = replay(env_id, seed, actions, "elastic")
            f = replay(env_id, seed, actions, "fem")
            results[motion, seed] = (e, f)
            rms, share, shift = compare(e, f)
            shares.append(share)
            shifts.append(shift)
            print(f"| {motion} | {seed} | {len(actions)} | {e.outcome} / {f.outcome} | {e.force.max():.2f} / "
                  f"{f.force.max():.2f} | {rms:.2f} | {share:.0%} | {e.shift.max() * 1e3:.2f} / "
                  f"{f.shift.max() * 1e3:.2f} | {shift * 1e3:.2f} |", flush=True)
        print(f"| {motion} | mean | | | | | {np.mean(shares):.0%} | | {np.mean(shifts) * 1e3:.2f} (worst "
              f"{max(shifts) * 1e3:.2f}) |", flush=True)

    if not args.fit:
        return
    spec = gym.make("surgsim/SurgicalPath-v0").unwrapped.task_spec
    insertions = [results["insertion", s][1] for s in seeds]
    fitted = fit(insertions)
    shipped = {k: getattr(spec.tissue, k) for k in fitted}
    print("\n## Fit of the elastic insertion parameters to the fem insertions\n")
    print("| parameter | shipped | fitted (fem, default mesh) |")
    print("|---|--:|--:|")
    for k in fitted:
        print(f"| {k} | {shipped[k]:.4g} | {fitted[k]:.4g} |")
    # the load radius: the scan that best matches the lesion's displacement
    best = None
    for radius in (2.5, 5.0, 10.0, 15.0, 20.0):
        trial = with_tissue(spec, **fitted, load_radius_mm=radius)
        errs = [compare(replay("surgsim/SurgicalPath-v0", s, recorded["insertion", s], "elastic", trial),
                        results["insertion", s][1])[2] for s in seeds]
        print(f"load_radius_mm {radius:g}: mean RMS lesion-shift difference {np.mean(errs) * 1e3:.2f} mm")
        if best is None or np.mean(errs) < best[1]:
            best = (radius, float(np.mean(errs)))
    fitted["load_radius_mm"] = best[0]
    fitted_spec = with_tissue(spec, **fitted)
    print("\n| seed | RMS force diff shipped / fitted (N) | share of fem peak shipped / fitted | "
          "RMS shift diff shipped / fitted (mm) |")
    print("|--:|--:|--:|--:|")
    before_after = []
    for seed in seeds:
        e, f = results["insertion", seed]
        g = replay("surgsim/SurgicalPath-v0", seed, recorded["insertion", seed], "elastic", fitted_spec)
        a, b = compare(e, f), compare(g, f)
        before_after.append((a, b))
        print(f"| {seed} | {a[0]:.2f} / {b[0]:.2f} | {a[1]:.0%} / {b[1]:.0%} | {a[2] * 1e3:.2f} / {b[2] * 1e3:.2f} |")
        if seed == 0:
            figure(args.figure, {"elastic (shipped)": e, "elastic (fitted to fem)": g, "fem": f},
                   "SurgicalPath seed 0, the expert's insertion replayed in each tier")
    print(f"| mean | {np.mean([a[0] for a, _ in before_after]):.2f} / {np.mean([b[0] for _, b in before_after]):.2f} "
          f"| {np.mean([a[1] for a, _ in before_after]):.0%} / {np.mean([b[1] for _, b in before_after]):.0%} "
          f"| {np.mean([a[2] for a, _ in before_after]) * 1e3:.2f} / {np.mean([b[2] for _, b in before_after]) * 1e3:.2f} |")
    print(f"written: {args.figure}")

    fine = with_tissue(spec, fem_cell_mm=args.fine_cell)
    fine_traces = [replay("surgsim/SurgicalPath-v0", s, recorded["insertion", s], "fem", fine) for s in seeds]
    refit = fit(fine_traces)
    print(f"\n## The same fit on a finer fem mesh ({args.fine_cell:g} mm cells)\n")
    print("| parameter | fitted, default mesh | fitted, finer mesh | change |")
    print("|---|--:|--:|--:|")
    for k in refit:
        print(f"| {k} | {fitted[k]:.4g} | {refit[k]:.4g} | {refit[k] / fitted[k] - 1:+.0%} |"
              if fitted[k] else f"| {k} | {fitted[k]:.4g} | {refit[k]:.4g} | |")


if __name__ == "__main__":
    main()
