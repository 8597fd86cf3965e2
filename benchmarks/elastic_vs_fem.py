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
displacement (mm), and the organ surface's deepest dimple (the largest displacement of the drawn
surface's vertices) and the RMS difference of it (mm; SurgicalPath). Goal: RMS force difference
within 25 % of the fem peak over an insertion, lesion displacement within 1 mm.

**Fit** (``--fit``): the fem reference is not mesh-converged (the tool grips the nodes of the
elements it enters, so the contact patch is set by the grid: neighbouring meshes differ by about
20 % of the peak force, as much as the two tiers do), so the elastic parameters (``FITTED``) are
fitted to the insertions and sweeps on several fem meshes at once (``--fit-cells``, the default
one among them): Nelder-Mead on their logarithms, starting from the published values and kept
within a factor of ``BOUND`` of them,
minimising the two goals' measures, each over its goal (``share / 0.25 + lesion / 1 mm``), mean
over the fit patients, motions and meshes. Every elastic run is the env itself replaying the
actions, so the fit sees exactly what the tier does. Then: the fitted values on patients the fit
did not see, against each mesh and against the default one. The shipped values of SurgicalPath's
tissue (``envs/surgical_path.yaml``) come from this fit.

    OMP_NUM_THREADS=1 python benchmarks/elastic_vs_fem.py --fit          # ~25 min on 2 cores
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
from scipy.optimize import minimize

import surgsim  # noqa: F401  (registers the envs)
from surgsim.tasks.spec import TaskSpec, TissueSpec

MM = 1e-3
SWEEP_INSIDE = 0.02  #: m of shaft inside the organ before the sweep starts
SWEEP = [(1.0, 0.0, 0.0)] * 4 + [(-1.0, 0.0, 0.0)] * 8 + [(0.0, 0.0, -1.0)] * 30
SURGICAL_PATH = "surgsim/SurgicalPath-v0"
#: the elastic parameters the fit sets by default: those the fem tier does not take as input (the
#: capsule's stiffness before puncture, cutting at the tip, the sideways springs). The puncture
#: force and the shaft's friction are inputs of both tiers (fem: when the surface gives way, and
#: the grip per length), so fitting them to fem would be circular. ``load_radius_mm`` can be
#: fitted too (``--fit-params``); by default it stays a shaft's size (its fit runs to the bound,
#: the size of a fem cell, and flattens the organ's dimple: benchmarks/RESULTS.md).
FITTED = ("stiffness_n_per_mm", "stiffness_n_per_mm2", "cutting_force_n", "lateral_stiffness_n_per_mm2")
BOUND = 5.0  #: the fit keeps each parameter within this factor of its published value
GOAL_SHARE, GOAL_SHIFT = 0.25, 1.0 * MM  #: point 4's goals: RMS force within 25 % of the fem peak, lesion 1 mm
FIGURE = Path(__file__).resolve().parent.parent / "assets" / "figures" / "elastic_vs_fem.png"


@dataclass
class Trace:
    """One replayed motion: per step the force (N), its axial part (N, pushing the tool back),
    the length of tool inside (m), the lesion's displacement (m), the organ surface's deepest
    dimple (m; NaN where not measured), whether the tissue is punctured, and how the episode ended."""

    force: np.ndarray
    axial: np.ndarray
    inside: np.ndarray
    shift: np.ndarray
    surface: np.ndarray
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


def replay(env_id: str, seed: int, actions: list[np.ndarray], tissue: str, spec: TaskSpec | None = None,
           surface: bool = False) -> Trace:
    """The actions replayed on a tissue tier (stopping where the episode ends); ``surface``: with
    the organ's drawn surface (a rendered world; SurgicalPath), to measure its dimple."""
    kwargs = {"task_spec": spec} if spec is not None else {}
    if surface:
        kwargs["render_mode"] = "rgb_array"
    env = gym.make(env_id, tissue=tissue, **kwargs)
    env.reset(seed=seed)
    task = env.unwrapped.task
    rows, outcome = [], "truncated"
    for action in actions:
        _, _, term, trunc, info = env.step(action)
        vector = np.asarray(info["tool_force_vector"])
        direction = np.asarray(getattr(task.tool, "direction", (0.0, 0.0, -1.0)))
        inside = task.tissue_length if hasattr(task, "tissue_length") else info["depth"]
        drawn = getattr(task, "_surface", None)
        dimple = (float(np.linalg.norm(task._displacement[drawn[0]], axis=1).max()) if drawn is not None
                  else float("nan"))
        rows.append((info["tool_force"], -float(vector @ direction), inside,
                     float(np.linalg.norm(task.target_shift)), dimple, task._contact.punctured))
        if term or trunc:
            outcome = "success" if info["is_success"] else (info.get("failure_reason") or "truncated")
            break
    env.close()
    force, axial, inside, shift, dimple, punctured = (np.array(c) for c in zip(*rows))
    if not (np.isfinite(force).all() and np.isfinite(shift).all()):
        raise RuntimeError(f"{env_id} seed {seed} on {tissue}: a force or lesion shift is not finite")
    return Trace(force, axial, inside, shift, dimple, punctured.astype(bool), outcome)


def compare(a: Trace, b: Trace) -> tuple[float, float, float, float]:
    """RMS differences over the steps both ran: force (N), force as a share of b's peak, lesion
    shift (m), surface dimple (m; NaN where not measured)."""
    n = min(len(a.force), len(b.force))

    def rms(x: np.ndarray, y: np.ndarray) -> float:
        return float(np.sqrt(np.mean((x[:n] - y[:n]) ** 2)))

    force = rms(a.force, b.force)
    return force, force / max(float(b.force.max()), 1e-9), rms(a.shift, b.shift), rms(a.surface, b.surface)


def disagreement(spec: TaskSpec, cases: list[tuple[int, list[np.ndarray], Trace]]) -> float:
    """The fit's objective: the elastic tier with ``spec`` replaying each case's actions, against
    its fem trace: RMS force difference over 25 % of the fem peak plus RMS lesion-shift difference
    over 1 mm, mean over the cases."""
    elastic: dict[int, Trace] = {}
    total = 0.0
    for seed, actions, fem in cases:
        key = id(actions)  # one elastic replay per motion, however many fem meshes it is compared with
        if key not in elastic:
            elastic[key] = replay(SURGICAL_PATH, seed, actions, "elastic", spec)
        _, share, shift, _ = compare(elastic[key], fem)
        total += share / GOAL_SHARE + shift / GOAL_SHIFT
    return total / len(cases)


def fit(spec: TaskSpec, cases: list[tuple[int, list[np.ndarray], Trace]], names: list[str],
        evaluations: int) -> dict[str, float]:
    """The elastic parameters ``names`` (spec units) that minimise ``disagreement`` over the cases."""
    published = np.log([getattr(TissueSpec(), k) for k in names])

    def values(x: np.ndarray) -> dict[str, float]:
        """The parameters at log-values ``x``, within the bounds."""
        x = np.clip(x, published - np.log(BOUND), published + np.log(BOUND))
        return dict(zip(names, np.exp(x).tolist()))

    def objective(x: np.ndarray) -> float:
        return disagreement(with_tissue(spec, **values(x)), cases)

    best = minimize(objective, published, method="Nelder-Mead",
                    options={"maxfev": evaluations, "xatol": 0.01, "fatol": 1e-3, "initial_simplex":
                             np.vstack([published, published + 0.3 * np.eye(len(names))])})
    print(f"fit: {best.nfev} evaluations, objective {best.fun:.3f} (published values: {objective(published):.3f})")
    return values(best.x)


def figure(path: Path, runs: dict[str, Trace], title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 5.5), sharex=True)
    styles = ("C0-", "C2--", "C3-", "C1:")
    for (name, t), style in zip(runs.items(), styles):
        steps = np.arange(1, len(t.force) + 1) / 20.0
        top.plot(steps, t.force, style, marker=".", label=name)
        bottom.plot(steps, t.shift * 1e3, style, marker=".", label=name)
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
    ap.add_argument("--seeds", type=int, default=6, help="patients per motion (the fit: as many again held out)")
    ap.add_argument("--fit", action="store_true", help="fit the elastic parameters to the fem insertions and sweeps")
    ap.add_argument("--fit-cells", type=float, nargs="+", default=[14.0, 10.0, 8.0, 6.0],
                    help="mm: the fem meshes the fit is made against")
    ap.add_argument("--fit-params", nargs="+", default=list(FITTED), help="the tissue fields the fit sets")
    ap.add_argument("--evaluations", type=int, default=300, help="the fit's budget of objective evaluations")
    ap.add_argument("--figure", type=Path, default=FIGURE)
    args = ap.parse_args()
    print(f"machine: {platform.platform()}, {os.cpu_count()} cores; OMP_NUM_THREADS="
          f"{os.environ.get('OMP_NUM_THREADS')}\n")
    seeds = range(args.seeds)
    motions = (("insertion", SURGICAL_PATH), ("sweep", SURGICAL_PATH), ("cut", "surgsim/Incision-v0"))
    recorded = {(m, s): record_actions(env_id, s, m) for m, env_id in motions for s in seeds}
    print("## The shipped elastic tier against the default fem mesh\n")
    print("| motion | seed | steps | outcome elastic / fem | peak force elastic / fem (N) | RMS force diff (N) | "
          "share of fem peak | peak lesion shift elastic / fem (mm) | RMS shift diff (mm) | "
          "deepest dimple elastic / fem (mm) | RMS dimple diff (mm) |")
    print("|---|--:|--:|---|--:|--:|--:|--:|--:|--:|--:|")
    for motion, env_id in motions:
        rows = []
        for seed in seeds:
            actions = recorded[motion, seed]
            surface = env_id == SURGICAL_PATH
            e = replay(env_id, seed, actions, "elastic", surface=surface)
            f = replay(env_id, seed, actions, "fem", surface=surface)
            rms, share, shift, dimple = compare(e, f)
            rows.append((share, shift, dimple))
            print(f"| {motion} | {seed} | {len(actions)} | {e.outcome} / {f.outcome} | {e.force.max():.2f} / "
                  f"{f.force.max():.2f} | {rms:.2f} | {share:.0%} | {e.shift.max() * 1e3:.2f} / "
                  f"{f.shift.max() * 1e3:.2f} | {shift * 1e3:.2f} | {np.max(e.surface) * 1e3:.2f} / "
                  f"{np.max(f.surface) * 1e3:.2f} | {dimple * 1e3:.2f} |", flush=True)
        share, shift, dimple = np.array(rows).T
        print(f"| {motion} | mean | | | | | {share.mean():.0%} | | {shift.mean() * 1e3:.2f} (worst "
              f"{shift.max() * 1e3:.2f}) | | {dimple.mean() * 1e3:.2f} |", flush=True)
    if args.fit:
        fit_and_check(args, recorded)


def fit_and_check(args: argparse.Namespace, recorded: dict[tuple[str, int], list[np.ndarray]]) -> None:
    """The mesh study, the fit on ``--seeds`` patients and its check on as many held out."""
    spec = gym.make(SURGICAL_PATH).unwrapped.task_spec
    fit_seeds, held_out = range(args.seeds), range(args.seeds, 2 * args.seeds)
    motions = ("insertion", "sweep")
    for m in motions:
        for s in held_out:
            recorded[m, s] = record_actions(SURGICAL_PATH, s, m)
    default = spec.tissue.fem_cell_mm
    cells = sorted({default, *args.fit_cells}, reverse=True)  # coarse to fine
    fem = {(m, s, c): replay(SURGICAL_PATH, s, recorded[m, s], "fem", with_tissue(spec, fem_cell_mm=c), surface=True)
           for c in cells for m in motions for s in [*fit_seeds, *held_out]}

    print("\n## The fem reference against its mesh (insertions, all patients)\n")
    print("| fem cell (mm) | peak force, median (N) | peak lesion shift, median (mm) | deepest dimple, median (mm) | "
          "RMS force diff to the previous mesh, share of its peak | RMS shift diff to it (mm) |")
    print("|--:|--:|--:|--:|--:|--:|")
    everyone = [*fit_seeds, *held_out]
    for i, c in enumerate(cells):
        traces = [fem["insertion", s, c] for s in everyone]
        step = [compare(fem["insertion", s, c], fem["insertion", s, cells[i - 1]]) for s in everyone] if i else []
        print(f"| {c:g} | {np.median([t.force.max() for t in traces]):.2f} | "
              f"{np.median([t.shift.max() for t in traces]) * 1e3:.2f} | "
              f"{np.median([np.max(t.surface) for t in traces]) * 1e3:.2f} | "
              + (f"{np.mean([x[1] for x in step]):.0%} | {np.mean([x[2] for x in step]) * 1e3:.2f} |" if i else " | |"))

    cases = [(s, recorded[m, s], fem[m, s, c]) for c in args.fit_cells for m in motions for s in fit_seeds]
    fitted = fit(spec, cases, args.fit_params, args.evaluations)
    published = {k: getattr(TissueSpec(), k) for k in args.fit_params}
    print("\n| parameter | published | shipped | fitted |")
    print("|---|--:|--:|--:|")
    for k in args.fit_params:
        print(f"| {k} | {published[k]:.4g} | {getattr(spec.tissue, k):.4g} | {fitted[k]:.4g} |")
    print("\nfor envs/surgical_path.yaml: tissue: {" + ", ".join(f"{k}: {v:.3g}" for k, v in fitted.items()) + "}")

    variants = {"published": with_tissue(spec, **published), "fitted": with_tissue(spec, **fitted)}
    elastic = {(name, m, s): replay(SURGICAL_PATH, s, recorded[m, s], "elastic", v, surface=True)
               for name, v in variants.items() for m in motions for s in everyone}
    print("\n## Agreement with the published and the fitted values (mean over patients; worst in brackets)\n")
    print("| motion | patients | fem mesh | RMS force diff, share of fem peak: published / fitted | "
          "RMS lesion shift diff (mm): published / fitted | RMS dimple diff (mm): published / fitted |")
    print("|---|---|---|--:|--:|--:|")
    for m in motions:
        for label, group in (("fit", fit_seeds), ("held out", held_out)):
            for mesh_label, mesh in ((f"default ({default:g} mm)", [default]), ("the fit's meshes", args.fit_cells)):
                cols = []
                for measure, scale, fmt in ((1, 1.0, "{:.0%}"), (2, 1e3, "{:.2f}"), (3, 1e3, "{:.2f}")):
                    both = []
                    for name in variants:
                        x = [compare(elastic[name, m, s], fem[m, s, c])[measure] * scale for c in mesh for s in group]
                        both.append(fmt.format(np.mean(x)) + " (" + fmt.format(np.max(x)) + ")")
                    cols.append(" / ".join(both))
                print(f"| {m} | {label} | {mesh_label} | " + " | ".join(cols) + " |", flush=True)

    figure(args.figure, {"elastic (published values)": elastic["published", "insertion", 0],
                         "elastic (fitted: shipped)": elastic["fitted", "insertion", 0],
                         f"fem ({default:g} mm cells, default)": fem["insertion", 0, default],
                         f"fem ({cells[-1]:g} mm cells)": fem["insertion", 0, cells[-1]]},
           "SurgicalPath seed 0, the expert's insertion replayed in each tier")
    print(f"written: {args.figure}")


if __name__ == "__main__":
    main()
