"""Running a sweep on Ray Tune: starting or joining Ray, the scheduler, the progress bar."""

from __future__ import annotations

import logging
import os
from dataclasses import asdict
from pathlib import Path
from typing import Any

import ray
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from surgsim.rl.sweep.plan import SweepError, SweepSpec, planned_timesteps, planned_trials, read_plan, start_sweep
from surgsim.rl.sweep.results import EXPERIMENT, SweepOutcome, summarise
from surgsim.rl.sweep.trainable import sweep_trial, trial_name

ASHA_REDUCTION = 3  # ASHA keeps the best third of the trials at each rung


class TrialProgress(tune.Callback):
    """A tqdm bar over finished trials. Tune pickles its callbacks with the experiment: the bar is not kept."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.bar = None

    def __getstate__(self) -> dict[str, Any]:
        return {"total": self.total, "bar": None}

    def setup(self, **info: Any) -> None:
        from tqdm import tqdm

        self.bar = tqdm(total=self.total, desc="trials", unit="trial")

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.bar.update()

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        self.bar.update()
        self.bar.set_postfix_str(f"{trial_name(trial)} failed")

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        self.bar.close()


def make_scheduler(spec: SweepSpec, configs: list[dict[str, Any]]) -> TrialScheduler:
    """FIFO (every trial to the end) or ASHA on success rate over timesteps.

    ASHA's first rung comes after a ninth of the budget (at least one evaluation), so a config
    is judged on some learning before it is stopped.
    """
    if spec.scheduler == "none":
        return FIFOScheduler()
    max_t = max(planned_timesteps(spec, c) for c in configs)
    return ASHAScheduler(
        time_attr="timesteps", metric="success_rate", mode="max", max_t=max_t,
        grace_period=max(spec.template.eval_freq, max_t // ASHA_REDUCTION ** 2), reduction_factor=ASHA_REDUCTION,
    )


def _new_tuner(
    spec: SweepSpec, sweep_dir: Path, configs: list[dict[str, Any]], trainable: Any, verbose: bool,
) -> tune.Tuner:
    """One trial per (config, seed), its :class:`PlannedTrial` in its config (see :func:`sweep_trial`)."""
    return tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search([asdict(trial) for trial in planned_trials(spec, configs)])},
        tune_config=tune.TuneConfig(
            scheduler=make_scheduler(spec, configs),
            trial_name_creator=trial_name, trial_dirname_creator=trial_name,
            reuse_actors=True,  # a new trial skips the worker's imports (seconds each)
        ),
        run_config=tune.RunConfig(
            name=EXPERIMENT, storage_path=str(sweep_dir), verbose=2 if verbose else 0,
            failure_config=tune.FailureConfig(max_failures=0),
            callbacks=[TrialProgress(len(configs) * len(spec.seeds))],
        ),
    )


def run_sweep(
    spec: SweepSpec | None = None, resume: str | Path | None = None,
    address: str | None = None, verbose: bool = False,
) -> SweepOutcome:
    """Run a new sweep (``spec``) or continue an interrupted one (``resume``: its folder).

    Ray starts in-process with this machine's CPUs unless it already runs in this process or
    ``address`` names a cluster to join (``"auto"``: the one started on this node). Resuming
    runs only the trials that had not finished; errored trials stay errored.
    """
    if (spec is None) == (resume is None):
        raise SweepError("give either a sweep spec or a sweep folder to resume, not both")
    if resume is not None:
        sweep_dir = Path(resume).resolve()
        spec, configs = read_plan(sweep_dir)
        if not tune.Tuner.can_restore(str(sweep_dir / EXPERIMENT)):
            raise SweepError(f"{sweep_dir}: no Ray Tune experiment state in {EXPERIMENT}/ to resume")
    else:
        sweep_dir, configs = start_sweep(spec)

    if not verbose:  # Ray Tune's own tables and tracebacks off: the sweep reports its own
        os.environ["RAY_AIR_NEW_OUTPUT"] = "0"  # the legacy reporter honours verbose=0
        logging.getLogger("ray.tune").setLevel(logging.CRITICAL)
    started_here = not ray.is_initialized()
    if started_here:
        try:
            ray.init(address=address, include_dashboard=False, log_to_driver=verbose,
                     logging_level=logging.INFO if verbose else logging.WARNING)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise SweepError(f"--address {address!r}: cannot start or join Ray ({exc})") from None
    try:
        trainable = tune.with_resources(
            tune.with_parameters(sweep_trial, spec=spec, sweep_dir=sweep_dir),
            {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial},
        )
        if resume is not None:
            tuner = tune.Tuner.restore(str(sweep_dir / EXPERIMENT), trainable, resume_unfinished=True)
        else:
            tuner = _new_tuner(spec, sweep_dir, configs, trainable, verbose)
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    return summarise(sweep_dir)
