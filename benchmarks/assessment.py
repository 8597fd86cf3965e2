"""Skill assessment against expert ratings on JIGSAWS: the best single metric, the rubric and the
learned assessor, cross-validated, per task, in one run.

    python benchmarks/assessment.py --jigsaws /tmp/jigsaws            # every task folder in it
    python benchmarks/assessment.py --jigsaws /tmp/jigsaws/Suturing   # one task
    python benchmarks/assessment.py --jigsaws DIR --json out.json

Each task folder (``meta_file_<Task>.txt``, ``kinematics/AllGestures/*.txt``) is imported into a
temporary folder twice: patient side only (what the rubric and the metrics grade) and with the
console arms (``--master``, what the assessor also learns from). The same pipeline runs on every
task, with nothing tuned per task. Against the GRS label, with leave-one-user-out (LOUO, the
surgeon) and leave-one-supertrial-out (LOSO, the trial index) cross-validation:

- *best metric*: in each training fold, the rubric metric whose Spearman correlation with GRS
  is largest in size, fitted by the assessor's ridge (penalty by inner CV) on that one metric;
- *rubric*: ``surgsim score evaluate`` (expert references, non-negative weights, level cuts);
- *assessor*: ``surgsim score evaluate --model assessor`` (ridge on the features, penalties by
  inner LOUO on the training surgeons: nested CV), and the same on the patient side only.

A first row predicts each held-out group the mean GRS of the others: the no-information floor.
Columns: Spearman of the cross-validated score (predicted GRS) with GRS; level accuracy (the
level against the self-reported skill N / I / E: the rubric's score cuts, the models' predicted
skill); expert-vs-novice AUC of the score. The assessor's mean Spearman over the six OSATS
sub-scores is shown too, and the features a model fitted on all the task's trials weighs most.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from surgsim.scoring.assessor import (  # noqa: E402
    AssessorEvaluation, evaluate_assessor, expert_novice_auc, fit_assessor,
)
from surgsim.scoring.batch import measure_folder, workers_default  # noqa: E402
from surgsim.scoring.calibrate import SKILL_LEVELS, Measured, evaluate, group_of  # noqa: E402
from surgsim.scoring.features import MASTER_PREFIX, feature_label, measure_features  # noqa: E402
from surgsim.scoring.metrics import METRICS  # noqa: E402
from surgsim.sessions.importers import JIGSAWS_SUBSCORES, import_jigsaws  # noqa: E402

LABEL = "grs"
CVS = ("louo", "loso")


def task_folders(root: Path) -> list[Path]:
    """``root`` when it is a JIGSAWS task folder, else its task sub-folders."""
    if any(root.glob("meta_file_*.txt")):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("meta_file_*.txt")))


def best_metric(train: Sequence[Measured]) -> str:
    """The metric most correlated (in size) with the label on the training sessions."""
    y = [s.label(LABEL) for s in train]
    scores = {}
    for name in METRICS:
        values = [s.values.get(name) for s in train]
        if all(v is not None for v in values) and np.ptp(values) > 0:
            scores[name] = abs(stats.spearmanr(values, y).statistic)
    return max(scores, key=scores.get)


def evaluate_best_metric(sessions: Sequence[Measured], cv: str) -> dict[str, Any]:
    """Leave one group out: choose the metric on the rest, fit it, predict the held-out group."""
    groups = [group_of(s, cv) for s in sessions]
    scores, chosen = [], []
    for fold in sorted(set(groups)):
        train = [s for s, g in zip(sessions, groups) if g != fold]
        name = best_metric(train)
        chosen.append(name)
        model = fit_assessor(train, LABEL, features=[name])
        for s, g in zip(sessions, groups):
            if g == fold:
                grade = model.grade(s.values, s.source)
                scores.append((s, grade.predictions[LABEL], grade.level))
    labels = [s.label(LABEL) for s, _, _ in scores]
    skills = [s.skill for s, _, _ in scores]
    predicted = [p for _, p, _ in scores]
    return {
        "spearman": float(stats.spearmanr(predicted, labels).statistic),
        "level_accuracy": float(np.mean([level == SKILL_LEVELS[skill] for (_, _, level), skill in zip(scores, skills)])),
        "auc": expert_novice_auc(predicted, skills),
        "chosen": sorted(set(chosen)),
    }


def evaluate_mean(sessions: Sequence[Measured], cv: str) -> dict[str, Any]:
    """No information: each held-out group gets the mean label of the others. Under LOUO this is
    strongly anti-correlated with the label (holding out a well-rated surgeon lowers the mean of
    the rest), the floor every model has to climb from."""
    groups = [group_of(s, cv) for s in sessions]
    labels = np.array([s.label(LABEL) for s in sessions])
    predicted = [float(labels[[g != h for h in groups]].mean()) for g in groups]
    return {"spearman": float(stats.spearmanr(predicted, labels).statistic), "level_accuracy": None,
            "auc": expert_novice_auc(predicted, [s.skill for s in sessions])}


def evaluate_rubric(sessions: Sequence[Measured], cv: str) -> dict[str, Any]:
    result = evaluate(sessions, LABEL, cv)  # type: ignore[arg-type]
    return {
        "spearman": result.spearman,
        "level_accuracy": result.level_accuracy,
        "auc": expert_novice_auc([p["score"] for p in result.predictions], [p["skill"] for p in result.predictions]),
    }


def summarise(result: AssessorEvaluation) -> dict[str, Any]:
    subscores = [result.targets[name] for name in JIGSAWS_SUBSCORES if result.targets.get(name) is not None]
    return {
        "spearman": result.spearman,
        "level_accuracy": result.level_accuracy,
        "auc": result.auc_expert_novice,
        "subscores_mean_spearman": float(np.mean(subscores)) if subscores else None,
        "subscores": {name: result.targets.get(name) for name in JIGSAWS_SUBSCORES},
        "alphas": result.alphas[LABEL],
    }


def patient_side(sessions: Sequence[Measured]) -> list[Measured]:
    """The features without any console (master) arm feature."""
    def keep(name: str) -> bool:
        return not name.startswith((MASTER_PREFIX, "master.")) and name != "motion_scale"
    return [Measured(s.source, {k: v for k, v in s.values.items() if keep(k)}, s.meta) for s in sessions]


def run_task(folder: Path, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        plain, console = Path(tmp, "patient"), Path(tmp, "master")
        import_jigsaws(folder, plain, progress=False)
        import_jigsaws(folder, console, progress=False, master=True)
        metrics = [m for m in measure_folder([plain], workers=workers, progress=False).results if m.label(LABEL) is not None]
        features = [m for m in measure_features([console], workers=workers, progress=False).results
                    if m.label(LABEL) is not None]
    methods: dict[str, dict[str, Any]] = {}
    for cv in CVS:
        methods.setdefault("training mean (no features)", {})[cv] = evaluate_mean(metrics, cv)
        methods.setdefault("best metric", {})[cv] = evaluate_best_metric(metrics, cv)
        methods.setdefault("rubric", {})[cv] = evaluate_rubric(metrics, cv)
        methods.setdefault("assessor", {})[cv] = summarise(evaluate_assessor(features, LABEL, cv))  # type: ignore[arg-type]
        methods.setdefault("assessor, patient side only", {})[cv] = summarise(
            evaluate_assessor(patient_side(features), LABEL, cv))  # type: ignore[arg-type]
    model = fit_assessor(features, LABEL, task=folder.name)
    weights = model.targets[LABEL].weights
    top = sorted(zip(model.features, weights), key=lambda fw: -abs(fw[1]))[:5]
    return {
        "task": folder.name,
        "sessions": len(features),
        "surgeons": len({s.meta.get("trainee") for s in features}),
        "methods": methods,
        "top_features": [{"feature": f, "words": feature_label(f), "weight_per_sd": w} for f, w in top],
    }


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}"


def table(results: Sequence[dict[str, Any]]) -> str:
    lines = [
        "| task | method | Spearman LOUO | Spearman LOSO | level acc. LOUO | level acc. LOSO | AUC E vs N LOUO | AUC E vs N LOSO | OSATS items LOUO / LOSO |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        for method, by_cv in r["methods"].items():
            louo, loso = by_cv["louo"], by_cv["loso"]
            items = (f"{_fmt(louo['subscores_mean_spearman'])} / {_fmt(loso['subscores_mean_spearman'])}"
                     if "subscores_mean_spearman" in louo else "")
            lines.append(
                f"| {r['task']} ({r['sessions']} trials, {r['surgeons']} surgeons) | {method} | {_fmt(louo['spearman'])} | "
                f"{_fmt(loso['spearman'])} | {_fmt(louo['level_accuracy'])} | {_fmt(loso['level_accuracy'])} | "
                f"{_fmt(louo['auc'])} | {_fmt(loso['auc'])} | {items} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jigsaws", type=Path, required=True, help="JIGSAWS folder (task folders) or one task folder.")
    parser.add_argument("--json", type=Path, help="Also write every figure as JSON.")
    parser.add_argument("--workers", type=int, default=workers_default())
    args = parser.parse_args(argv)
    folders = task_folders(args.jigsaws)
    if not folders:
        raise SystemExit(f"{args.jigsaws}: no JIGSAWS task folder (meta_file_<Task>.txt) here or below")
    start = time.perf_counter()
    results = [run_task(folder, args.workers) for folder in folders]
    elapsed = time.perf_counter() - start
    print(f"Skill assessment on JIGSAWS vs GRS ({platform.machine()}, {os.cpu_count()} CPUs, {elapsed:.0f} s)\n")
    print(table(results))
    for r in results:
        print(f"\n{r['task']}: best single metric chosen in the folds: "
              f"LOUO {', '.join(r['methods']['best metric']['louo']['chosen'])}; "
              f"LOSO {', '.join(r['methods']['best metric']['loso']['chosen'])}")
        print(f"{r['task']}: assessor fitted on all trials, largest weights (GRS points per SD):")
        for t in r["top_features"]:
            print(f"  {t['weight_per_sd']:+.2f}  {t['words']} ({t['feature']})")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
