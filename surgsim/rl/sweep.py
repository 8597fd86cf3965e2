"""Multi-seed and hyperparameter sweeps on Ray Tune, each trial one ``surgsim train`` run.

A sweep is a list of hyperparameter configs crossed with a list of seeds; every (config, seed)
pair is one Ray Tune trial running :func:`surgsim.rl.train.train`, which reports each
evaluation to Tune as it happens. Random configs are drawn here, once, before Tune starts, so
that every seed of a config trains with the same values (Tune's sampler would draw anew for
every seed).

A sweep lives in ``<log folder>/sweeps/<name>/``:

    sweep.json                the plan: arguments, every config, the seeds
    runs/c<k>_s<seed>/        the trial's log folder: <algo>/<env name>_1/ as `surgsim train`'s
    ray/                      Ray Tune's experiment state (what ``resume`` restores)
    trials.csv                one row per trial: config, seed, status, metrics, error
    success_curve.png         success rate against timesteps, mean and 95 % band over seeds
    best_<algo>.yml           the best config merged into the base preset, rl_zoo3 format

On a multi-node cluster the log folder must be a path every node mounts (NFS or similar), as
Ray requires of its own storage: trials write their run folders there and the driver reads them.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import ray
import yaml
from ray import tune
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, TrialScheduler

from surgsim._files import atomic_save, atomic_write_text
from surgsim.env import MAX_SEED
from surgsim.rl.presets import load_preset, parse_value
from surgsim.rl.train import (
    TrainArgs, check_args, check_device, check_env_and_algo, check_hyperparams, env_name, latest_checkpoint, train,
)

#: what every trial reports to Tune at each evaluation (besides ``timesteps``)
METRICS = ("success_rate", "mean_return", "critical_failure_rate", "mean_length")
SCHEDULERS = ("none", "asha")
DISTRIBUTIONS = ("uniform", "loguniform", "randint")
ASHA_REDUCTION = 3  # ASHA keeps the best third of the trials at each rung
_EXPERIMENT = "ray"  # Ray Tune's experiment folder inside the sweep folder


class SweepError(ValueError):
    """Bad sweep input (seeds, grid, search ranges, sweep folder), named with the offending value."""


# ----------------------------------------------------------------------------- parsing


#: a bound on one sweep's seeds, so that a typo such as 0-99999999 is refused, not allocated
MAX_SWEEP_SEEDS = 10_000


def parse_seeds(text: str) -> list[int]:
    """``"0-7"``, ``"0,3,5"`` or ``"0-3,10"`` -> sorted distinct seeds (ranges include both ends)."""
    seeds: set[int] = set()
    for part in text.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if not match:
            raise SweepError(f"--seeds {text!r}: {part.strip()!r} is not a seed or a range; expected e.g. 0-7 or 0,3,5")
        low = int(match.group(1))
        high = int(match.group(2) or low)
        if high < low:
            raise SweepError(f"--seeds {text!r}: range {part.strip()!r} runs backwards")
        if high > MAX_SEED:
            raise SweepError(f"--seeds {text!r}: {high} is above the largest seed, {MAX_SEED}")
        if high - low + 1 + len(seeds) > MAX_SWEEP_SEEDS:
            raise SweepError(f"--seeds {text!r}: more than {MAX_SWEEP_SEEDS} seeds")
        seeds.update(range(low, high + 1))
    return sorted(seeds)


def _split_top_level(text: str) -> list[str]:
    """Split at commas outside brackets and braces, so ``[64, 64],[128, 128]`` gives two values."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(text):
        depth += (char in "[{") - (char in "]}")
        if char == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts]


def _key_and_value(item: str, option: str, example: str) -> tuple[str, str]:
    key, sep, raw = item.partition("=")
    if not sep or not key.strip() or not raw.strip():
        raise SweepError(f"{option} {item!r} is not of the form {example}")
    return key.strip(), raw.strip()


def parse_grid(items: list[str] | None) -> dict[str, list[Any]]:
    """``["learning_rate=1e-4,3e-4", "policy_kwargs={net_arch: [64]},{net_arch: [128]}"]`` -> lists.

    Each value is a number or else YAML, so lists and mappings work too.
    """
    grid: dict[str, list[Any]] = {}
    for item in items or []:
        key, raw = _key_and_value(item, "--grid", "key=value1,value2,...")
        if key in grid:
            raise SweepError(f"--grid names {key!r} twice")
        values = []
        for part in _split_top_level(raw):
            if not part:
                raise SweepError(f"--grid {item!r}: empty value")
            try:
                values.append(parse_value(part))
            except yaml.YAMLError as exc:
                raise SweepError(f"--grid {item!r}: {part!r} is not valid YAML ({exc})") from None
        grid[key] = values
    return grid


def parse_search(items: list[str] | None) -> dict[str, tuple[str, float, float]]:
    """``["learning_rate=loguniform:1e-5:1e-3", "n_epochs=randint:3:20"]`` -> (distribution, low, high).

    ``randint`` draws integers in [low, high), as Ray Tune's ``randint`` does.
    """
    search: dict[str, tuple[str, float, float]] = {}
    for item in items or []:
        key, raw = _key_and_value(item, "--search", "key=distribution:low:high")
        parts = raw.split(":")
        if len(parts) != 3 or parts[0] not in DISTRIBUTIONS:
            raise SweepError(
                f"--search {item!r}: expected distribution:low:high with distribution one of "
                f"{list(DISTRIBUTIONS)}, e.g. learning_rate=loguniform:1e-5:1e-3"
            )
        try:
            low, high = float(parts[1]), float(parts[2])
        except ValueError:
            raise SweepError(f"--search {item!r}: low and high must be numbers") from None
        if not low < high:
            raise SweepError(f"--search {item!r}: low must be below high")
        if parts[0] == "loguniform" and low <= 0:
            raise SweepError(f"--search {item!r}: loguniform needs low > 0")
        if parts[0] == "randint" and not (low.is_integer() and high.is_integer()):
            raise SweepError(f"--search {item!r}: randint needs integer bounds")
        search[key] = (parts[0], low, high)
    return search


# ----------------------------------------------------------------------------- the plan


@dataclass
class SweepSpec:
    """Everything a sweep needs; stored in ``sweep.json`` so that resuming needs only the folder."""

    algo: str
    env_id: str
    seeds: list[int]
    n_timesteps: int | None = None
    grid: dict[str, list[Any]] = field(default_factory=dict)
    search: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    num_samples: int | None = None
    sample_seed: int = 0
    hyperparams: dict[str, Any] = field(default_factory=dict)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_freq: int = 10_000
    eval_episodes: int = 20
    save_freq: int = 50_000
    device: str = "auto"
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    scheduler: str = "none"
    log_folder: str = "logs"
    name: str | None = None


def expand_configs(spec: SweepSpec) -> list[dict[str, Any]]:
    """The configs to run, each with every seed.

    Without ``num_samples``: the cartesian product of the ``grid`` lists. With it: ``num_samples``
    random configs, each key drawn uniformly from its ``grid`` list or from its ``search`` range
    with Ray Tune's samplers, seeded by ``sample_seed`` so that the draw can be repeated.
    """
    if spec.num_samples is None:
        if spec.search:
            raise SweepError("--search ranges need --num-samples N (how many configs to draw)")
        combos: list[dict[str, Any]] = [{}]
        for key, values in spec.grid.items():
            combos = [combo | {key: value} for combo in combos for value in values]
        return combos
    if spec.num_samples < 1:
        raise SweepError(f"--num-samples {spec.num_samples}: must be at least 1")
    if not spec.grid and not spec.search:
        raise SweepError("--num-samples draws from --grid lists or --search ranges; give at least one")
    domains = {key: tune.choice(values) for key, values in spec.grid.items()}
    for key, (dist, low, high) in spec.search.items():
        if key in domains:
            raise SweepError(f"{key!r} is in both --grid and --search")
        domains[key] = tune.randint(int(low), int(high)) if dist == "randint" else getattr(tune, dist)(low, high)
    rng = np.random.default_rng(spec.sample_seed)
    return [{key: domain.sample(random_state=rng) for key, domain in domains.items()}
            for _ in range(spec.num_samples)]


def base_preset(spec: SweepSpec) -> dict[str, Any]:
    """The preset every config starts from: ``agents/<algo>.yml`` plus the sweep's fixed hyperparams."""
    return load_preset(spec.algo, spec.env_id, spec.env_kwargs.get("obs_type", "state")) | spec.hyperparams


def planned_timesteps(spec: SweepSpec, config: dict[str, Any]) -> int:
    """The training budget of one config, resolved as ``surgsim train`` resolves it."""
    return int(spec.n_timesteps or (base_preset(spec) | config).get("n_timesteps", 100_000))


def _trials(spec: SweepSpec, configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per (config, seed): its name ``c<k>_s<seed>``, config id, seed and hyperparams."""
    width = len(str(len(configs) - 1))
    return [
        {"name": f"c{k:0{width}d}_s{seed}", "config_id": k, "seed": seed, "hyperparams": config}
        for k, config in enumerate(configs) for seed in spec.seeds
    ]


def _new_sweep_dir(spec: SweepSpec) -> Path:
    """``<log folder>/sweeps/<name>``; without a name the next free ``<algo>_<env name>_<n>``."""
    base = Path(spec.log_folder).resolve() / "sweeps"
    if spec.name:
        folder = base / spec.name
        if (folder / "sweep.json").exists():
            raise SweepError(f"{folder} already holds a sweep; continue it with --resume {folder} or pick another --name")
    else:
        prefix = f"{spec.algo}_{env_name(spec.env_id)}_"
        taken = [int(p.name[len(prefix):]) for p in base.glob(prefix + "*") if p.name[len(prefix):].isdigit()]
        folder = base / f"{prefix}{max(taken, default=0) + 1}"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise SweepError(f"-f {spec.log_folder}: cannot create the sweep folder {folder} ({exc.strerror or exc})") from None
    return folder


def read_plan(sweep_dir: Path) -> tuple[SweepSpec, list[dict[str, Any]]]:
    """The spec and configs a sweep folder was started with."""
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        raise SweepError(f"{sweep_dir} is not a sweep folder (no sweep.json)")
    try:
        plan = json.loads(path.read_text())
        spec = SweepSpec(**plan["spec"])
        spec.search = {k: tuple(v) for k, v in spec.search.items()}
        return spec, plan["configs"]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SweepError(f"{path}: unreadable sweep plan ({exc})") from None


# ----------------------------------------------------------------------------- the trainable


def latest_run(trial_folder: Path, algo: str, env_id: str) -> Path | None:
    """The trial's newest run folder, ``<trial folder>/<algo>/<env name>_<n>`` with the largest n."""
    prefix = env_name(env_id) + "_"
    runs = [p for p in (trial_folder / algo).glob(prefix + "*") if p.name[len(prefix):].isdigit()]
    return max(runs, key=lambda p: int(p.name[len(prefix):])) if runs else None


def sweep_trial(config: dict[str, Any]) -> None:
    """Ray Tune function trainable: one (config, seed) ``surgsim train`` run, reporting every evaluation.

    Each evaluation reaches Tune when the next one (or the end of training) comes: a scheduler
    that stops the trial at its last evaluation must not kill it before it writes its final
    model and summary. A trial that Ray restarts (a resumed sweep, a lost node) continues its
    own run folder from its last checkpoint instead of starting over; one that had finished
    reports its last evaluation again without training.
    """
    import torch

    base, trial = config["base"], config["trial"]
    torch.set_num_threads(max(1, int(base["cpus_per_trial"])))
    folder = Path(base["sweep_dir"]) / "runs" / trial["name"]
    args = TrainArgs(
        algo=base["algo"], env_id=base["env_id"], n_timesteps=base["n_timesteps"], seed=trial["seed"],
        log_folder=str(folder), env_kwargs=base["env_kwargs"], eval_freq=base["eval_freq"],
        eval_episodes=base["eval_episodes"], device=base["device"],
        hyperparams=base["hyperparams"] | trial["hyperparams"], save_freq=base["save_freq"],
        progress_bar=False,
    )

    def report(record: dict[str, Any]) -> None:
        tune.report({"timesteps": int(record["timesteps"]), **{k: float(record[k]) for k in METRICS}})

    pending: list[dict[str, Any]] = []

    def report_previous(record: dict[str, Any]) -> None:
        if pending:
            report(pending.pop())
        pending.append(record)

    previous = latest_run(folder, args.algo, args.env_id)
    if previous is not None and (previous / "summary.json").is_file():
        report(json.loads((previous / "evaluations.jsonl").read_text().splitlines()[-1]))
        return
    resumable = previous is not None and latest_checkpoint(previous) is not None
    train(args, resume=previous if resumable else None, on_evaluation=report_previous)
    report(pending.pop())


def _trial_name(trial: Any) -> str:
    return trial.config["trial"]["name"]


# ----------------------------------------------------------------------------- running


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
        self.bar.set_postfix_str(f"{_trial_name(trial)} failed")

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
        grace_period=max(spec.eval_freq, max_t // ASHA_REDUCTION ** 2), reduction_factor=ASHA_REDUCTION,
    )


def _start(spec: SweepSpec) -> tuple[Path, list[dict[str, Any]]]:
    """Check a new sweep's input, make its folder and write its plan."""
    if spec.scheduler not in SCHEDULERS:
        raise SweepError(f"--scheduler {spec.scheduler!r}: expected one of {list(SCHEDULERS)}")
    if not spec.seeds:
        raise SweepError("--seeds: no seeds given")
    if spec.cpus_per_trial <= 0 or spec.gpus_per_trial < 0:
        raise SweepError(
            f"--cpus-per-trial {spec.cpus_per_trial} / --gpus-per-trial {spec.gpus_per_trial}: "
            "need cpus > 0 and gpus >= 0"
        )
    try:
        check_args(TrainArgs(
            algo=spec.algo, env_id=spec.env_id, n_timesteps=spec.n_timesteps, eval_freq=spec.eval_freq,
            eval_episodes=spec.eval_episodes, save_freq=spec.save_freq,
        ))
        check_device(spec.device, here=False)  # the trials' machines may have the GPU
        check_env_and_algo(spec.algo, spec.env_id, spec.env_kwargs).close()
        spec.hyperparams = check_hyperparams(spec.algo, spec.hyperparams)
        configs = [check_hyperparams(spec.algo, config, "--grid/--search") for config in expand_configs(spec)]
        planned_timesteps(spec, {})  # the preset exists
    except SweepError:
        raise
    except ValueError as exc:
        raise SweepError(str(exc)) from None
    sweep_dir = _new_sweep_dir(spec)
    spec.name = sweep_dir.name
    atomic_write_text(sweep_dir / "sweep.json", json.dumps({"spec": asdict(spec), "configs": configs}, indent=2))
    return sweep_dir, configs


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
        if not tune.Tuner.can_restore(str(sweep_dir / _EXPERIMENT)):
            raise SweepError(f"{sweep_dir}: no Ray Tune experiment state in {_EXPERIMENT}/ to resume")
    else:
        sweep_dir, configs = _start(spec)

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
        trainable = tune.with_resources(sweep_trial, {"cpu": spec.cpus_per_trial, "gpu": spec.gpus_per_trial})
        if resume is not None:
            tuner = tune.Tuner.restore(str(sweep_dir / _EXPERIMENT), trainable, resume_unfinished=True)
        else:
            base = {k: getattr(spec, k) for k in (
                "algo", "env_id", "n_timesteps", "env_kwargs", "eval_freq", "eval_episodes",
                "device", "hyperparams", "save_freq", "cpus_per_trial")}
            tuner = tune.Tuner(
                trainable,
                param_space={"base": base | {"sweep_dir": str(sweep_dir)},
                             "trial": tune.grid_search(_trials(spec, configs))},
                tune_config=tune.TuneConfig(
                    scheduler=make_scheduler(spec, configs),
                    trial_name_creator=_trial_name, trial_dirname_creator=_trial_name,
                    reuse_actors=True,  # a new trial skips the worker's imports (seconds each)
                ),
                run_config=tune.RunConfig(
                    name=_EXPERIMENT, storage_path=str(sweep_dir), verbose=2 if verbose else 0,
                    failure_config=tune.FailureConfig(max_failures=0),
                    callbacks=[TrialProgress(len(configs) * len(spec.seeds))],
                ),
            )
        tuner.fit()
    finally:
        if started_here:
            ray.shutdown()
    return summarise(sweep_dir)


# ----------------------------------------------------------------------------- results


def _error_message(trial: Any) -> str:
    """The trial's exception as ``Type: message`` (Ray wraps it; its text form is a traceback)."""
    error = trial.get_pickled_error()  # Ray's own file of this experiment, not user input
    if error is not None:
        cause = getattr(error, "cause", None) or error
        return f"{type(cause).__name__}: {cause}".strip()
    lines = [line for line in str(trial.get_error() or "").splitlines() if line.strip()]
    return lines[-1].strip() if lines else "unknown error"


def _history(run_dir: Path | None) -> list[dict[str, Any]]:
    path = run_dir / "evaluations.jsonl" if run_dir else None
    if path is None or not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def collect_trials(sweep_dir: Path, spec: SweepSpec, configs: list[dict[str, Any]]) -> list[TrialResult]:
    """Every planned trial with its Ray status and error and its run folder's evaluations."""
    experiment = sweep_dir / _EXPERIMENT
    ray_trials = {_trial_name(t): t for t in tune.ExperimentAnalysis(str(experiment)).trials} \
        if experiment.is_dir() else {}
    results = []
    for planned in _trials(spec, configs):
        run_dir = latest_run(sweep_dir / "runs" / planned["name"], spec.algo, spec.env_id)
        result = TrialResult(
            name=planned["name"], config_id=planned["config_id"], seed=planned["seed"],
            hyperparams=planned["hyperparams"], status="not finished",
            run_dir=str(run_dir or ""), history=_history(run_dir),
        )
        trial = ray_trials.get(planned["name"])
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


def mean_and_band(
    curves: list[tuple[np.ndarray, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Timesteps, mean, and 95 % t-interval over seeds on the union of their evaluation timesteps.

    A seed counts at a timestep only up to its own last evaluation (a trial stopped early does
    not drag the mean down afterwards); between evaluations it is interpolated. Values are
    clipped to [0, 1], the range of a success rate.
    """
    from scipy import stats

    grid = np.unique(np.concatenate([steps for steps, _ in curves]))
    stacked = np.full((len(curves), len(grid)), np.nan)
    for i, (steps, values) in enumerate(curves):
        inside = grid <= steps[-1]
        stacked[i, inside] = np.interp(grid[inside], steps, values)
    count = np.sum(~np.isnan(stacked), axis=0)
    mean = np.nanmean(stacked, axis=0)
    half = np.zeros_like(mean)
    several = count > 1
    if several.any():
        sem = np.nanstd(stacked[:, several], axis=0, ddof=1) / np.sqrt(count[several])
        half[several] = stats.t.ppf(0.975, count[several] - 1) * sem
    return grid, mean, np.clip(mean - half, 0, 1), np.clip(mean + half, 0, 1)


def plot_success(trials: list[TrialResult], configs: list[dict[str, Any]], path: Path, title: str) -> Path | None:
    """Success rate against timesteps, one line (mean) and band (95 % CI over seeds) per config."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = 0
    for k, config in enumerate(configs):
        curves = [
            (np.array([h["timesteps"] for h in t.history], float), np.array([h["success_rate"] for h in t.history], float))
            for t in trials if t.config_id == k and t.history
        ]
        if curves:
            steps, mean, low, high = mean_and_band(curves)
            line, = ax.plot(steps, 100 * mean, label=f"c{k}: {config_label(config)} ({len(curves)} seeds)")
            ax.fill_between(steps, 100 * low, 100 * high, color=line.get_color(), alpha=0.2)
            drawn += 1
    if drawn:
        ax.set_xlabel("timesteps")
        ax.set_ylabel("evaluation success rate (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(title + "\nmean over seeds, band: 95 % confidence interval of the mean")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
        fig.tight_layout()
        atomic_save(path, lambda tmp: fig.savefig(tmp, dpi=100))
    plt.close(fig)
    return path if drawn else None


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
    preset = base_preset(spec) | configs[k] | {"n_timesteps": planned_timesteps(spec, configs[k])}
    header = (
        f"# Best config of sweep {spec.name} (c{k}: {config_label(configs[k])}): mean final success "
        f"{success:.1%}, mean final return {mean_return:.2f} over seeds {spec.seeds}.\n"
        f"# rl_zoo3 format, like agents/{spec.algo}.yml: copy the entry there, or "
        f"python -m rl_zoo3.train --algo {spec.algo} --env {spec.env_id} --gym-packages surgsim -conf {path.name}\n"
    )
    atomic_write_text(path, header + yaml.safe_dump({spec.env_id: preset}, sort_keys=False))
    return path


def summarise(sweep_dir: Path) -> SweepOutcome:
    """Collect every trial and (re)write the table, the plot and the best preset."""
    spec, configs = read_plan(sweep_dir)
    trials = collect_trials(sweep_dir, spec, configs)
    table = write_table(trials, sweep_dir / "trials.csv")
    plot = plot_success(trials, configs, sweep_dir / "success_curve.png",
                        f"{spec.algo.upper()} on {spec.env_id}, sweep {spec.name}")
    ranked = rank_configs(trials, len(configs))
    best = write_best_preset(spec, configs, ranked[0], sweep_dir / f"best_{spec.algo}.yml") if ranked else None
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
