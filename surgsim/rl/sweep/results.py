"""A sweep's results: every trial's status and evaluations, the table, the ranking, the best preset."""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ray import tune

from surgsim._files import atomic_write_text
from surgsim.rl.sweep.plan import SweepSpec, base_preset, planned_timesteps, planned_trials, read_plan
from surgsim.rl.sweep.plots import Curve, plot_success
from surgsim.rl.sweep.trainable import latest_run, trial_name
from surgsim.rl.train import read_evaluations

#: Ray Tune's experiment folder inside the sweep folder
EXPERIMENT = "ray"


@dataclass
class TrialResult:
    """One trial as the sweep saw it: Ray's status and error, the run folder's evaluations."""

    name: str
    config_id: int
    seed: int
    hyperparams: dict[str, Any]
    status: str  # done | stopped early | error | not finished
    run_dir: str = ""
    error: str = ""
    wall_time_s: float | None = None
    history: list[dict[str, Any]] = field(default_factory=list)

    def final(self, key: str) -> Any:
        return self.history[-1][key] if self.history else None


@dataclass
class SweepOutcome:
    """What a sweep produced: every trial and the paths of the table, plot and best preset."""

    sweep_dir: Path
    spec: SweepSpec
    configs: list[dict[str, Any]]
    trials: list[TrialResult]
    table: Path
    plot: Path | None
    best_preset: Path | None
    best_config_id: int | None

    @property
    def failed(self) -> list[TrialResult]:
        return [t for t in self.trials if t.status == "error"]

    @property
    def unfinished(self) -> list[TrialResult]:
        return [t for t in self.trials if t.status == "not finished"]


def _error_message(trial: Any) -> str:
    """The trial's exception as ``Type: message`` (Ray wraps it; its text form is a traceback)."""
    error = trial.get_pickled_error()  # Ray's own file of this experiment, not user input
    if error is not None:
        cause = getattr(error, "cause", None) or error
        return f"{type(cause).__name__}: {cause}".strip()
    lines = [line for line in str(trial.get_error() or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"


def _history(run_dir: Path | None) -> list[dict[str, Any]]:
    return read_evaluations(run_dir) if run_dir else []


def collect_trials(sweep_dir: Path, spec: SweepSpec, configs: list[dict[str, Any]]) -> list[TrialResult]:
    """Every planned trial with its Ray status and error and its run folder's evaluations."""
    experiment = sweep_dir / EXPERIMENT
    ray_trials = {trial_name(t): t for t in tune.ExperimentAnalysis(str(experiment)).trials} \
        if experiment.is_dir() else {}
    results = []
    for planned in planned_trials(spec, configs):
        run_dir = latest_run(sweep_dir / "runs" / planned.name, spec.template.algo, spec.template.env_id)
        result = TrialResult(
            name=planned.name, config_id=planned.config_id, seed=planned.seed,
            hyperparams=planned.hyperparams, status="not finished",
            run_dir=str(run_dir or ""), history=_history(run_dir),
        )
        trial = ray_trials.get(planned.name)
        if trial is not None:
            result.wall_time_s = trial.last_result.get("time_total_s")
            if trial.status == "ERROR":
                result.status, result.error = "error", _error_message(trial)
            elif trial.status == "TERMINATED":
                finished = run_dir is not None and (run_dir / "summary.json").is_file()
                result.status = "done" if finished else "stopped early"
                if run_dir is None:
                    result.error = "run folder not visible here; on a cluster -f must be on shared storage"
        results.append(result)
    return results


def _fmt(value: Any) -> Any:
    if value is None:
        return ""
    return json.dumps(value) if isinstance(value, (dict, list)) else value


def write_table(trials: list[TrialResult], path: Path) -> Path:
    """CSV, one row per trial; each swept hyperparameter gets a column."""
    keys = sorted({k for t in trials for k in t.hyperparams})
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["trial", "config", "seed", *keys, "status", "timesteps", "final_success_rate",
                     "best_success_rate", "final_mean_return", "final_critical_failure_rate",
                     "wall_time_s", "run_dir", "error"])
    for t in trials:
        best = max((h["success_rate"] for h in t.history), default=None)
        wall = round(t.wall_time_s, 1) if t.wall_time_s is not None else None
        writer.writerow([_fmt(v) for v in (
            t.name, t.config_id, t.seed, *(t.hyperparams.get(k) for k in keys), t.status,
            t.final("timesteps"), t.final("success_rate"), best, t.final("mean_return"),
            t.final("critical_failure_rate"), wall, t.run_dir, t.error,
        )])
    atomic_write_text(path, out.getvalue())
    return path


def config_label(config: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_fmt(v)}" for k, v in config.items()) or "base preset"


def rank_configs(trials: list[TrialResult], n_configs: int) -> list[tuple[int, float, float]]:
    """(config, mean final success, mean final return), best first, of configs whose every seed finished.

    Only configs trained to the full budget on every seed compete, so that all are judged on the
    same seeds and timesteps (ASHA may stop one seed of a config early).
    """
    ranked = []
    for k in range(n_configs):
        own = [t for t in trials if t.config_id == k]
        if own and all(t.status == "done" and t.history for t in own):
            ranked.append((k, float(np.mean([t.final("success_rate") for t in own])),
                           float(np.mean([t.final("mean_return") for t in own]))))
    return sorted(ranked, key=lambda r: (r[1], r[2]), reverse=True)


def write_best_preset(spec: SweepSpec, configs: list[dict[str, Any]], best: tuple[int, float, float], path: Path) -> Path:
    """The best config merged into the base preset, as an ``agents/<algo>.yml`` entry keyed by env id."""
    k, success, mean_return = best
    algo, env_id = spec.template.algo, spec.template.env_id
    preset = base_preset(spec) | configs[k] | {"n_timesteps": planned_timesteps(spec, configs[k])}
    header = (
        f"# Best config of sweep {spec.name} (c{k}: {config_label(configs[k])}): mean final success "
        f"{success:.1%}, mean final return {mean_return:.2f} over seeds {spec.seeds}.\n"
        f"# rl_zoo3 format, like agents/{algo}.yml: copy the entry there, or "
        f"python -m rl_zoo3.train --algo {algo} --env {env_id} --gym-packages surgsim -conf {path.name}\n"
    )
    atomic_write_text(path, header + yaml.safe_dump({env_id: preset}, sort_keys=False))
    return path


def _success_curves(trials: list[TrialResult], configs: list[dict[str, Any]]) -> dict[str, list[Curve]]:
    """Per config label, each seed's (timesteps, success rate) evaluations."""
    return {
        f"c{k}: {config_label(config)}": [
            (np.array([h["timesteps"] for h in t.history], float),
             np.array([h["success_rate"] for h in t.history], float))
            for t in trials if t.config_id == k and t.history
        ]
        for k, config in enumerate(configs)
    }


def summarise(sweep_dir: Path) -> SweepOutcome:
    """Collect every trial and (re)write the table, the plot and the best preset."""
    spec, configs = read_plan(sweep_dir)
    algo = spec.template.algo
    trials = collect_trials(sweep_dir, spec, configs)
    table = write_table(trials, sweep_dir / "trials.csv")
    plot = plot_success(_success_curves(trials, configs), sweep_dir / "success_curve.png",
                        f"{algo.upper()} on {spec.template.env_id}, sweep {spec.name}")
    ranked = rank_configs(trials, len(configs))
    best = write_best_preset(spec, configs, ranked[0], sweep_dir / f"best_{algo}.yml") if ranked else None
    return SweepOutcome(
        sweep_dir=sweep_dir, spec=spec, configs=configs, trials=trials, table=table, plot=plot,
        best_preset=best, best_config_id=ranked[0][0] if ranked else None,
    )


def config_summary(outcome: SweepOutcome) -> list[dict[str, Any]]:
    """Per config: label, trials per status, mean / std over seeds of the final evaluation."""
    rows = []
    for k, config in enumerate(outcome.configs):
        own = [t for t in outcome.trials if t.config_id == k]
        statuses: dict[str, int] = {}
        for t in own:
            statuses[t.status] = statuses.get(t.status, 0) + 1
        row: dict[str, Any] = {"config": k, "label": config_label(config), "statuses": statuses}
        for key in ("success_rate", "critical_failure_rate", "mean_return"):
            finals = [t.final(key) for t in own if t.history]
            row[key] = (float(np.mean(finals)), float(np.std(finals))) if finals else None
        rows.append(row)
    return rows
