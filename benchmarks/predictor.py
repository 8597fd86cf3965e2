"""Path predictor benchmark: held-out accuracy, safety in PyBullet and speed against the planner.

Generates a dataset with the planner (unless ``--data`` already holds one), trains the
predictor, and evaluates it on the test split (patients never seen in training):

* mean and largest waypoint error, endpoint error (mm);
* share of predicted paths that are collision-free in PyBullet (the planner's own check),
  their minimum clearance against the planner's (mm);
* latency per scenario, single and batched, against the planner as ratios measured in the
  same run; training throughput (samples/s) on the device used.

Goals (issue 5): collision-free >= 98 %, mean waypoint error <= 2 mm, >= 100x faster than the
planner. The exit code is always 0: this is a measurement, not a test.

    python benchmarks/predictor.py -n 2000 --epochs 8                    # CPU, generates data/paths-bench
    python benchmarks/predictor.py --data data/paths --epochs 30 --device cuda
    python benchmarks/predictor.py --data data/paths --device cuda --no-pybullet   # GPU box without PyBullet
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import torch

from surgsim._files import atomic_write_json
from surgsim.predictor.train import TrainOptions, train

GOALS = {"collision_free_rate": 0.98, "mean_waypoint_error_mm": 2.0, "speedup_single": 100.0}


def ensure_dataset(args: argparse.Namespace) -> Path:
    """The dataset folder: ``--data`` when it holds one, else generated there with the planner."""
    data = Path(args.data)
    if (data / "meta.json").is_file():
        print(f"dataset: {data} (existing)")
        return data
    from surgsim.planning.dataset import generate  # PyBullet: only when data must be made

    print(f"generating {args.n} scenarios of {args.env} into {data} with {args.workers} workers")
    tic = time.perf_counter()
    generate(args.env, args.n, data, workers=args.workers, seed=args.seed, n_waypoints=args.waypoints,
             env_kwargs={}, progress=True)
    seconds = time.perf_counter() - tic
    meta = json.loads((data / "meta.json").read_text())
    print(f"generated in {seconds:.0f} s ({1000 * seconds / args.n:.1f} ms per scenario with "
          f"{args.workers} workers); counts {meta.get('counts')}, infeasible {meta.get('infeasible')}")
    return data


def verdicts(results: dict) -> list[str]:
    """One PASS / FAIL line per goal, with the measured value."""
    measured = {
        "collision_free_rate": results.get("collision_free_rate"),
        "mean_waypoint_error_mm": results["waypoint_error_mm"]["mean"],
        "speedup_single": (results.get("speedup") or {}).get("single"),
    }
    lines = []
    for name, goal in GOALS.items():
        value = measured[name]
        if value is None:
            lines.append(f"  {name}: not measured")
            continue
        ok = value <= goal if name.endswith("_mm") else value >= goal
        sign = "<=" if name.endswith("_mm") else ">="
        lines.append(f"  {name}: {value:.4g} (goal {sign} {goal:g}) {'PASS' if ok else 'FAIL'}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="data/paths-bench", help="dataset folder (generated there if empty)")
    parser.add_argument("--env", default="surgsim/SurgicalPath-v0")
    parser.add_argument("-n", type=int, default=2000, help="scenarios to generate when --data has none")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--waypoints", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--patience", type=int, default=6, help="early stopping: epochs without improvement")
    parser.add_argument("--clearance-weight", type=float, default=0.0)
    parser.add_argument("--widths", default="16,32,64")
    parser.add_argument("--device", default="auto", help="training device: auto, cpu or cuda")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads for training")
    parser.add_argument("--n-check", type=int, default=200, help="test scenarios checked in PyBullet")
    parser.add_argument("--no-pybullet", action="store_true",
                        help="skip the collision check and planner timing (PyBullet): errors, training "
                             "throughput and predictor latency on --device only")
    parser.add_argument("--out", default="benchmarks/out/predictor", help="folder for model and results")
    args = parser.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    print(f"host: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
          f"CUDA: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else 'none'}, "
          f"load average {os.getloadavg()[0]:.1f}")
    data = ensure_dataset(args)

    options = TrainOptions(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, device=args.device,
                           patience=args.patience, clearance_weight=args.clearance_weight,
                           widths=[int(w) for w in args.widths.split(",")], seed=args.seed)
    result = train(data, out / "path.pt", options)
    print(f"training on {result.device} ({result.device_name}, autocast {result.amp_dtype or 'off'}): "
          f"{result.samples_per_s:,.0f} samples/s, {result.n_train} train / {result.n_val} val, "
          f"{result.n_parameters:,} parameters, {result.seconds:.0f} s in all")
    print(f"best epoch {result.best_epoch}/{len(result.history)}: validation MSE "
          f"{result.best_val_loss / result.baseline_val_loss:.4f} x the mean-path baseline, "
          f"mean waypoint error {result.best_val_error_mm:.2f} mm")
    summary = {"command": " ".join(sys.argv), "training": {
        "device": result.device, "device_name": result.device_name, "amp": result.amp_dtype,
        "samples_per_s": result.samples_per_s, "n_train": result.n_train, "epochs": len(result.history),
        "best_val_error_mm": result.best_val_error_mm,
        "val_loss_over_baseline": result.best_val_loss / result.baseline_val_loss, "seconds": result.seconds,
    }}
    from surgsim.cli.predictor import format_results
    from surgsim.predictor.evaluate import EvalOptions, evaluate

    # latency against the planner is measured on 1 CPU thread (the planner's setting); without
    # PyBullet there is no planner, and the predictor's own latency is measured on --device
    device = result.device if args.no_pybullet else "cpu"
    results = evaluate(out / "path.pt", data, out / "eval-test.json",
                       EvalOptions(split="test", n_check=0 if args.no_pybullet else args.n_check, device=device))
    print(format_results(results))
    latency = results["latency_ms"]
    print(f"predictor latency on {device}: single {latency['predictor_single']:.3f} ms, "
          f"batched {latency['predictor_batched']:.4f} ms per scenario (batch of {latency['batch_size']})")
    print("goals (held-out test patients):")
    print("\n".join(verdicts(results)))
    summary["evaluation"] = results
    atomic_write_json(out / "summary.json", summary)
    print(f"results: {out / 'summary.json'}")


if __name__ == "__main__":
    main()
