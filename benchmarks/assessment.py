"""Skill assessment against expert ratings on JIGSAWS: the best single metric, the rubric and the
assessor's skill index, cross-validated, per task, in one run.

    python benchmarks/assessment.py --jigsaws /tmp/jigsaws            # every task folder in it
    python benchmarks/assessment.py --jigsaws /tmp/jigsaws/Suturing   # one task
    python benchmarks/assessment.py --jigsaws DIR --json out.json

Each task folder (``meta_file_<Task>.txt``, ``kinematics/AllGestures/*.txt``) is imported into a
temporary folder (patient side: the assessor's features do not use the console arms). The same
pipeline runs on every task, with nothing tuned per task. Against the GRS label, with
leave-one-user-out (LOUO, the surgeon) and leave-one-supertrial-out (LOSO, the trial index)
cross-validation:

- *training mean*: each held-out group gets the mean GRS of the others (the no-information floor);
- *completion time alone*: shorter is better, nothing fitted (so every fold grades alike): the
  baseline any score must beat;
- *best metric*: in each training fold, the rubric metric whose Spearman correlation with GRS
  is largest in size, signed by that correlation, standardised like one assessor feature;
- *rubric*: ``surgsim score evaluate`` (expert references, non-negative weights, level cuts);
- *assessor*: ``surgsim score evaluate --model assessor`` (the skill index: fixed signed
  features, each domain weighted equally), then the GRS it predicts (index through each fold's
  line, whose intercept moves with the held-out surgeon), then the index with every feature
  weighted equally (no domains).

Columns: Spearman of the cross-validated score with GRS; level accuracy (the level against the
self-reported skill N / I / E: the rubric's score cuts, the others' predicted skill);
expert-vs-novice AUC of the score; for the assessor, the mean Spearman of the six predicted
OSATS sub-scores (for completion time, of the time itself). Below the table, per task, the
Spearman with GRS and with minus the completion time of the index and of each domain's share (a
model fitted on all trials: only the scales are fitted), and of each signed feature with minus
the completion time: how much of the index is duration.
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any, Sequence  # noqa: E402

import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from surgsim._files import atomic_write_json  # noqa: E402
from surgsim.scoring.assessor import (  # noqa: E402
    AssessorEvaluation, evaluate_assessor, expert_novice_auc, fit_assessor,
)
from surgsim.scoring.batch import measure_folder, workers_default  # noqa: E402
from surgsim.scoring.calibrate import SKILL_LEVELS, Measured, evaluate, group_of  # noqa: E402
from surgsim.scoring.features import SKILL_DOMAINS, measure_features  # noqa: E402
from surgsim.scoring.metrics import METRICS  # noqa: E402
from surgsim.sessions.importers import JIGSAWS_SUBSCORES, import_jigsaws  # noqa: E402

LABEL = "grs"
TIME = "completion_time"
CVS = ("louo", "loso")
#: the assessor's features with every feature weighted equally (one domain)
ONE_DOMAIN = {"all": {name: sign for signed in SKILL_DOMAINS.values() for name, sign in signed.items()}}


def task_folders(root: Path) -> list[Path]:
    """``root`` when it is a JIGSAWS task folder, else its task sub-folders."""
    if any(root.glob("meta_file_*.txt")):
        return [root]
    return sorted(p for p in root.iterdir() if p.is_dir() and any(p.glob("meta_file_*.txt")))


def best_metric(train: Sequence[Measured]) -> tuple[str, int]:
    """The metric most correlated (in size) with the label on the training sessions, and its sign."""
    y = [s.label(LABEL) for s in train]
    rhos = {}
    for name in METRICS:
        values = [s.values.get(name) for s in train]
        if all(v is not None for v in values) and np.ptp(values) > 0:
            rhos[name] = float(stats.spearmanr(values, y).statistic)
    name = max(rhos, key=lambda n: abs(rhos[n]))
    return name, 1 if rhos[name] >= 0 else -1


def evaluate_best_metric(sessions: Sequence[Measured], cv: str) -> dict[str, Any]:
    """Leave one group out: choose and sign the metric on the rest, grade the held-out group with it."""
    groups = [group_of(s, cv) for s in sessions]
    graded, chosen = [], []
    for fold in sorted(set(groups)):
        train = [s for s, g in zip(sessions, groups) if g != fold]
        name, sign = best_metric(train)
        chosen.append(name)
        model = fit_assessor(train, LABEL, domains={"metric": {name: sign}})
        graded += [(s, model.grade(s.values, s.source)) for s, g in zip(sessions, groups) if g == fold]
    scores = [grade.index for _, grade in graded]
    skills = [s.skill for s, _ in graded]
    return {
        "spearman": float(stats.spearmanr(scores, [s.label(LABEL) for s, _ in graded]).statistic),
        "level_accuracy": float(np.mean([g.level == SKILL_LEVELS[s.skill] for s, g in graded])),
        "auc": expert_novice_auc(scores, skills),
        "chosen": sorted(set(chosen)),
    }


def evaluate_mean(sessions: Sequence[Measured], cv: str) -> dict[str, Any]:
    """No information: each held-out group gets the mean label of the others. Under LOUO this is
    strongly anti-correlated with the label (holding out a well-rated surgeon lowers the mean of
    the rest), the floor every fitted intercept pulls towards."""
    groups = [group_of(s, cv) for s in sessions]
    labels = np.array([s.label(LABEL) for s in sessions])
    predicted = [float(labels[[g != h for h in groups]].mean()) for g in groups]
    return {"spearman": float(stats.spearmanr(predicted, labels).statistic), "level_accuracy": None,
            "auc": expert_novice_auc(predicted, [s.skill for s in sessions])}


def evaluate_time(sessions: Sequence[Measured]) -> dict[str, Any]:
    """Completion time alone, shorter = better. Nothing is learnt from the training folds, so a
    held-out session's score is the same under every cross-validation; no line, so no levels."""
    scores = [-s.values[TIME] for s in sessions]
    subscores = {name: float(stats.spearmanr(scores, [s.label(name) for s in sessions]).statistic)
                 for name in JIGSAWS_SUBSCORES}
    return {
        "spearman": float(stats.spearmanr(scores, [s.label(LABEL) for s in sessions]).statistic),
        "level_accuracy": None,
        "auc": expert_novice_auc(scores, [s.skill for s in sessions]),
        "subscores_mean_spearman": float(np.mean(list(subscores.values()))),
        "subscores": subscores,
    }


def evaluate_rubric(sessions: Sequence[Measured], cv: str) -> dict[str, Any]:
    result = evaluate(sessions, LABEL, cv)  # type: ignore[arg-type]
    return {
        "spearman": result.spearman,
        "level_accuracy": result.level_accuracy,
        "auc": expert_novice_auc([p["score"] for p in result.predictions], [p["skill"] for p in result.predictions]),
    }


def summarise(result: AssessorEvaluation, predicted: bool = False) -> dict[str, Any]:
    """The index's figures, or (``predicted``) those of the GRS it predicts."""
    subscores = [result.targets[name] for name in JIGSAWS_SUBSCORES if result.targets.get(name) is not None]
    scores = [p["predicted"][LABEL] if predicted else p["score"] for p in result.predictions]
    return {
        "spearman": result.spearman_predicted if predicted else result.spearman,
        "level_accuracy": result.level_accuracy,
        "auc": expert_novice_auc(scores, [p["skill"] for p in result.predictions]),
        "subscores_mean_spearman": float(np.mean(subscores)) if subscores else None,
        "subscores": {name: result.targets.get(name) for name in JIGSAWS_SUBSCORES},
    }


def domain_agreement(sessions: Sequence[Measured], reference: Sequence[float]) -> dict[str, float]:
    """Spearman with ``reference`` of the index and of each domain's share of it, for a model fitted
    on all ``sessions``."""
    model = fit_assessor(sessions, LABEL)
    grades = [model.grade(s.values, s.source) for s in sessions]
    shares = {"index": [g.index for g in grades]}
    shares.update({domain: [g.domains[domain] for g in grades] for domain in grades[0].domains})
    return {name: float(stats.spearmanr(values, reference).statistic) for name, values in shares.items()}


def features_vs_time(sessions: Sequence[Measured]) -> dict[str, float]:
    """Spearman of each of the index's features, signed as the index uses it, with minus the
    completion time: near 1 means the feature ranks trials much as their duration does."""
    shorter = [-s.values[TIME] for s in sessions]
    out = {}
    for signed in SKILL_DOMAINS.values():
        for name, sign in signed.items():
            pairs = [(sign * s.values[name], t) for s, t in zip(sessions, shorter) if s.values.get(name) is not None]
            out[name] = float(stats.spearmanr(*zip(*pairs)).statistic)
    return out


def run_task(folder: Path, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        import_jigsaws(folder, Path(tmp), progress=False)
        metrics = [m for m in measure_folder([tmp], workers=workers, progress=False).results if m.label(LABEL) is not None]
        features = [m for m in measure_features([tmp], workers=workers, progress=False).results
                    if m.label(LABEL) is not None]
    methods: dict[str, dict[str, Any]] = {}
    for cv in CVS:
        methods.setdefault("training mean (no features)", {})[cv] = evaluate_mean(metrics, cv)
        methods.setdefault("completion time alone (fixed sign, nothing fitted)", {})[cv] = evaluate_time(features)
        methods.setdefault("best metric", {})[cv] = evaluate_best_metric(metrics, cv)
        methods.setdefault("rubric", {})[cv] = evaluate_rubric(metrics, cv)
        result = evaluate_assessor(features, LABEL, cv)  # type: ignore[arg-type]
        methods.setdefault("assessor: skill index", {})[cv] = summarise(result)
        methods.setdefault("assessor: its predicted GRS", {})[cv] = summarise(result, predicted=True)
        methods.setdefault("assessor, features weighted equally (no domains)", {})[cv] = summarise(
            evaluate_assessor(features, LABEL, cv, domains=ONE_DOMAIN))  # type: ignore[arg-type]
    return {
        "task": folder.name,
        "sessions": len(features),
        "surgeons": len({s.meta.get("trainee") for s in features}),
        "methods": methods,
        "domains_vs_grs": domain_agreement(features, [s.label(LABEL) for s in features]),
        "domains_vs_shorter_time": domain_agreement(features, [-s.values[TIME] for s in features]),
        "features_vs_shorter_time": features_vs_time(features),
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
        for key, what in (("domains_vs_grs", "GRS"), ("domains_vs_shorter_time", "-completion time")):
            print(f"{r['task']}: Spearman with {what} of the index and of each domain's share: "
                  + ", ".join(f"{d} {rho:+.2f}" for d, rho in r[key].items()))
        print(f"{r['task']}: Spearman with -completion time of each feature, signed as the index uses it: "
              + ", ".join(f"{name} {rho:+.2f}" for name, rho in r["features_vs_shorter_time"].items()))
    if args.json:
        atomic_write_json(args.json, results)


if __name__ == "__main__":
    main()
