"""Label efficiency of the path predictor: pretrained encoder against training from scratch.

One run: generate a dataset with the planner (unless ``--data`` holds one), pretrain the
encoder once by masked-volume reconstruction on the train split's volumes (no path labels),
then for each number of labelled paths (the first N of the train split) and each training seed
train the predictor twice with that seed and the same budget, from scratch and from the
pretrained encoder (``--init-from``), and evaluate both on the test split (patients never seen):

* mean and p95 waypoint error (mm) on the whole test split;
* the share of predicted paths that are collision-free in PyBullet (``surgsim predictor eval``'s
  check) on the first ``--n-check`` test patients.

Budget rule: every fine-tuning run gets the same number of optimiser steps (at least ``--steps``
batches of ``--batch-size``: epochs = ceil(steps / batches per epoch)), whatever N, so that small
N is not starved of updates; no early stopping; the checkpoint kept is the best epoch by the
validation MSE on the first ``--val`` validation patients (the same for both arms).

Goal (issue 16): pretrained with 300 labelled paths matches scratch with 1,000 (mean over the
seeds of the waypoint error no larger, of the collision-free share no smaller). The exit code is
always 0: a measurement.

    python benchmarks/predictor_label_efficiency.py                  # ~20 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import itertools
import math
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch
from predictor import ensure_dataset  # benchmarks/predictor.py: generate unless --data has one

from surgsim._files import atomic_write_json
from surgsim.predictor.data import read_meta
from surgsim.predictor.evaluate import EvalOptions, evaluate
from surgsim.predictor.pretrain import PretrainOptions, pretrain
from surgsim.predictor.train import TrainOptions, train


def fine_tune_runs(args: argparse.Namespace, data: Path, encoder: Path, n_train: int) -> list[dict]:
    """Train and evaluate both arms for every label count and seed; one row each."""
    rows = []
    widths = [int(w) for w in args.widths.split(",")]
    for label in args.labels.split(","):
        n = n_train if label == "all" else min(int(label), n_train)
        epochs = math.ceil(args.steps / math.ceil(n / args.batch_size))
        for seed, arm in itertools.product(args.seed_list, ("scratch", "pretrained")):
            name = f"{arm}-{n}-seed{seed}"
            options = TrainOptions(
                epochs=epochs, patience=epochs + 1, batch_size=args.batch_size, lr=args.lr, widths=widths,
                device="cpu", seed=seed, limit_train=n, limit_val=args.val, progress=False,
                init_from=encoder if arm == "pretrained" else None,
                freeze_encoder_epochs=round(args.freeze_frac * epochs) if arm == "pretrained" else 0,
            )
            result = train(data, args.out / f"{name}.pt", options)
            report = evaluate(args.out / f"{name}.pt", data, args.out / f"{name}.eval-test.json", EvalOptions(
                split="test", n_check=args.n_check, n_single=1, n_plot=0, threads=args.threads, progress=False))
            row = {
                "labels": n, "arm": arm, "seed": seed, "epochs": epochs, "steps": epochs * math.ceil(n / args.batch_size),
                "best_epoch": result.best_epoch, "train_seconds": result.seconds,
                "val_error_mm": result.best_val_error_mm,
                "test_error_mm": report["waypoint_error_mm"]["mean"], "test_p95_mm": report["waypoint_error_mm"]["p95"],
                "collision_free": report["collision_free_rate"], "reaches_target": report["reaches_target_rate"],
                "checked": report["checked"],
            }
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


HEADER = ("| labelled paths | encoder | seed | epochs (steps) | best epoch | train s | test waypoint error mm (p95) "
          "| collision-free | reach target |\n|--:|---|--:|--:|--:|--:|--:|--:|--:|")
SUMMARY_HEADER = ("| labelled paths | encoder | test waypoint error mm: mean of seeds (each) "
                  "| collision-free: mean of seeds |\n|--:|---|--:|--:|")


def format_row(r: dict) -> str:
    return (f"| {r['labels']} | {r['arm']} | {r['seed']} | {r['epochs']} ({r['steps']}) | {r['best_epoch']} "
            f"| {r['train_seconds']:.0f} | {r['test_error_mm']:.2f} ({r['test_p95_mm']:.2f}) "
            f"| {r['collision_free']:.1%} of {r['checked']} | {r['reaches_target']:.1%} |")


def summarise(rows: list[dict]) -> dict[tuple[int, str], dict]:
    """Per (labels, arm): the seeds' errors and their means."""
    groups: dict[tuple[int, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["labels"], r["arm"]), []).append(r)
    return {key: {"errors": [r["test_error_mm"] for r in group],
                  "error_mm": statistics.fmean(r["test_error_mm"] for r in group),
                  "collision_free": statistics.fmean(r["collision_free"] for r in group)}
            for key, group in groups.items()}


def format_summary(summary: dict[tuple[int, str], dict]) -> str:
    lines = [SUMMARY_HEADER]
    for (labels, arm), s in summary.items():
        each = ", ".join(f"{e:.2f}" for e in s["errors"])
        lines.append(f"| {labels} | {arm} | {s['error_mm']:.2f} ({each}) | {s['collision_free']:.1%} |")
    return "\n".join(lines)


def verdict(summary: dict[tuple[int, str], dict]) -> str:
    """The goal: pretrained with 300 labels against scratch with 1,000 (means over the seeds)."""
    pre, scratch = summary.get((300, "pretrained")), summary.get((1000, "scratch"))
    if pre is None or scratch is None:
        return "goal: not measured (needs 300 and 1000 in --labels)"
    ok = pre["error_mm"] <= scratch["error_mm"] and pre["collision_free"] >= scratch["collision_free"]
    return (f"goal: pretrained@300 {pre['error_mm']:.2f} mm, {pre['collision_free']:.1%} collision-free vs "
            f"scratch@1000 {scratch['error_mm']:.2f} mm, {scratch['collision_free']:.1%}: "
            f"{'PASS' if ok else 'FAIL'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/tmp/surgsim-paths-3000", help="dataset folder (generated there if empty)")
    parser.add_argument("--env", default="surgsim/SurgicalPath-v0")
    parser.add_argument("-n", type=int, default=3000, help="scenarios to generate when --data has none")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--waypoints", type=int, default=16)
    parser.add_argument("--seed", type=int, default=0, help="generation and pretraining seed")
    parser.add_argument("--seeds", default="0,1", help="training seeds (each arm, each label count)")
    parser.add_argument("--labels", default="100,300,1000,all", help="labelled training paths per run")
    parser.add_argument("--widths", default="8,16,32")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=2e-3)
    parser.add_argument("--steps", type=int, default=300, help="optimiser steps per fine-tuning run (at least)")
    parser.add_argument("--val", type=int, default=100, help="validation patients for the best epoch")
    parser.add_argument("--freeze-frac", type=float, default=0.0,
                        help="share of a pretrained run's epochs with the encoder frozen")
    parser.add_argument("--pretrain-epochs", type=int, default=3)
    parser.add_argument("--mask-frac", type=float, default=0.5)
    parser.add_argument("--n-check", type=int, default=100, help="test patients checked in PyBullet")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/out/label-efficiency"))
    args = parser.parse_args()
    args.seed_list = [int(s) for s in args.seeds.split(",")]

    torch.set_num_threads(args.threads)
    began = time.perf_counter()
    print(f"host: {platform.node()}, {os.cpu_count()} CPUs, torch {torch.__version__} on {args.threads} thread(s), "
          f"CUDA: none used, load average {os.getloadavg()[0]:.1f}")
    data = ensure_dataset(args)
    counts = read_meta(data).counts
    print(f"splits {counts}; budget: >= {args.steps} steps of batch {args.batch_size} per run, "
          f"widths {args.widths}, best epoch on {args.val} val patients")

    encoder = args.out / "encoder.pt"
    pre = pretrain(data, encoder, PretrainOptions(
        epochs=args.pretrain_epochs, batch_size=args.batch_size, lr=args.lr, mask_frac=args.mask_frac,
        widths=[int(w) for w in args.widths.split(",")], device="cpu", seed=args.seed,
        limit_val=args.val, progress=False))
    print(f"pretext (masked-volume reconstruction, {pre.n_train} unlabelled train volumes, {len(pre.history)} epochs, "
          f"{pre.seconds:.0f} s): validation MSE {pre.history[0]['val_loss']:.3e} after epoch 1, "
          f"{pre.best_val_loss:.3e} at epoch {pre.best_epoch} = {pre.best_val_loss / pre.baseline_val_loss:.3f} "
          f"x the channel-mean baseline", flush=True)
    print(HEADER, flush=True)
    rows = fine_tune_runs(args, data, encoder, counts["train"])
    summary = summarise(rows)
    print(format_summary(summary))
    print(verdict(summary))
    seconds = time.perf_counter() - began
    print(f"whole run: {seconds / 60:.1f} min")
    atomic_write_json(args.out / "summary.json", {
        "command": " ".join(sys.argv), "args": vars(args), "pretrain": {
            "history": pre.history, "baseline_val_loss": pre.baseline_val_loss, "seconds": pre.seconds},
        "rows": rows, "verdict": verdict(summary), "seconds": seconds,
    })


if __name__ == "__main__":
    main()
