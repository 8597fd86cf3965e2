"""What runs inside one Ray Tune trial: a ``surgsim train`` run of one (config, seed), reporting to Tune."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ray import tune

from surgsim.rl.sweep.plan import PlannedTrial, SweepSpec
from surgsim.rl.train import TrainArgs, env_name, latest_checkpoint, read_evaluations, train

#: what every trial reports to Tune at each evaluation (besides ``timesteps``)
METRICS = ("success_rate", "mean_return", "critical_failure_rate", "mean_length")


def trial_args(template: TrainArgs, sweep_dir: Path, trial: PlannedTrial) -> TrainArgs:
    """The template with the trial's seed, its own log folder ``runs/<name>`` and its config on top."""
    return replace(
        template, seed=trial.seed, log_folder=str(sweep_dir / "runs" / trial.name),
        hyperparams=template.hyperparams | trial.hyperparams, progress_bar=False,
    )


def trial_name(trial: Any) -> str:
    """The name of a Ray trial of a sweep (Tune's trial objects carry the config they were given)."""
    return trial.config["trial"]["name"]


def latest_run(trial_folder: Path, algo: str, env_id: str) -> Path | None:
    """The trial's newest run folder, ``<trial folder>/<algo>/<env name>_<n>`` with the largest n."""
    prefix = env_name(env_id) + "_"
    runs = [p for p in (trial_folder / algo).glob(prefix + "*") if p.name[len(prefix):].isdigit()]
    return max(runs, key=lambda p: int(p.name[len(prefix):])) if runs else None


def sweep_trial(config: dict[str, Any], spec: SweepSpec, sweep_dir: Path) -> None:
    """Ray Tune function trainable: one (config, seed) ``surgsim train`` run, reporting every evaluation.

    ``config["trial"]`` is the trial's :class:`PlannedTrial` as a dict (Tune's configs hold plain
    values); ``spec`` and ``sweep_dir`` are the same for every trial (``tune.with_parameters``).

    Each evaluation reaches Tune when the next one (or the end of training) comes: a scheduler
    that stops the trial at its last evaluation must not kill it before it writes its final
    model and summary. A trial that Ray restarts (a resumed sweep, a lost node) continues its
    own run folder from its last checkpoint instead of starting over; one that had finished
    reports its last evaluation again without training.
    """
    import torch

    torch.set_num_threads(max(1, int(spec.cpus_per_trial)))
    args = trial_args(spec.template, sweep_dir, PlannedTrial(**config["trial"]))

    def report(record: dict[str, Any]) -> None:
        tune.report({"timesteps": int(record["timesteps"]), **{k: float(record[k]) for k in METRICS}})

    pending: list[dict[str, Any]] = []

    def report_previous(record: dict[str, Any]) -> None:
        if pending:
            report(pending.pop())
        pending.append(record)

    previous = latest_run(Path(args.log_folder), args.algo, args.env_id)
    if previous is not None and (previous / "summary.json").is_file():
        report(read_evaluations(previous)[-1])
        return
    resumable = previous is not None and latest_checkpoint(previous) is not None
    run = train(args, resume=previous if resumable else None, on_evaluation=report_previous)
    # a trial restarted after its last evaluation was logged trains no new one: report that one
    report(pending.pop() if pending else read_evaluations(run)[-1])
