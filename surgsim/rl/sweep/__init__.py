"""Multi-seed and hyperparameter sweeps on Ray Tune, each trial one ``surgsim train`` run.

A sweep is a list of hyperparameter configs crossed with a list of seeds; every (config, seed)
pair is one Ray Tune trial running :func:`surgsim.rl.train.train` with the sweep's
:class:`~surgsim.rl.train.TrainArgs` template, reporting each evaluation to Tune as it happens.

- :mod:`.plan`: parsing ``--seeds``/``--grid``/``--search``, :class:`SweepSpec`, the configs,
  the sweep folder and ``sweep.json``
- :mod:`.trainable`: what runs inside one trial
- :mod:`.run`: Ray, the scheduler, :func:`run_sweep`
- :mod:`.results` and :mod:`.plots`: the table, the ranking, the best preset, the success curve

A sweep lives in ``<log folder>/sweeps/<name>/``:

    sweep.json                the plan: the spec (with its TrainArgs template), every config
    runs/c<k>_s<seed>/        the trial's log folder: <algo>/<env name>_1/ as `surgsim train`'s
    ray/                      Ray Tune's experiment state (what ``resume`` restores)
    trials.csv                one row per trial: config, seed, status, metrics, error
    success_curve.png         success rate against timesteps, mean and 95 % band over seeds
    best_<algo>.yml           the best config merged into the base preset, rl_zoo3 format

On a multi-node cluster the log folder must be a path every node mounts (NFS or similar), as
Ray requires of its own storage: trials write their run folders there and the driver reads them.
Every Ray import of surgsim is in this package, which needs the ``distributed`` extra.
"""

from surgsim.rl.sweep.plan import (
    PlannedTrial, SweepError, SweepSpec, base_preset, expand_configs, parse_grid, parse_search, parse_seeds,
    read_plan, start_sweep,
)
from surgsim.rl.sweep.plots import mean_and_band
from surgsim.rl.sweep.results import SweepOutcome, TrialResult, config_summary, summarise
from surgsim.rl.sweep.run import make_scheduler, run_sweep
from surgsim.rl.sweep.trainable import sweep_trial, trial_args

__all__ = [
    "PlannedTrial", "SweepError", "SweepOutcome", "SweepSpec", "TrialResult", "base_preset", "config_summary",
    "expand_configs", "make_scheduler", "mean_and_band", "parse_grid", "parse_search", "parse_seeds",
    "read_plan", "run_sweep", "start_sweep", "summarise", "sweep_trial", "trial_args",
]
