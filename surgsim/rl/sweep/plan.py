"""A sweep's plan: its options parsed, its configs expanded, its folder and ``sweep.json``.

Random configs are drawn here, once, before Tune starts, so that every seed of a config trains
with the same values (Tune's sampler would draw anew for every seed).
"""

from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from ray import tune

from surgsim._files import atomic_write_json, claim_numbered
from surgsim.env import MAX_SEED
from surgsim.errors import SurgsimError, yaml_problem
from surgsim.rl.presets import parse_value
from surgsim.rl.train import (
    TrainArgs, check_args, check_env_and_algo, check_hyperparams, env_name, resolve_preset, run_timesteps,
)

SCHEDULERS = ("none", "asha")
DISTRIBUTIONS = ("uniform", "loguniform", "randint")
#: a bound on one sweep's seeds, so that a typo such as 0-99999999 is refused, not allocated
MAX_SWEEP_SEEDS = 10_000
#: the layout of sweep.json; a plan of another layout is refused, not half read
PLAN_FORMAT = 2


class SweepError(SurgsimError):
    """Bad sweep input (seeds, grid, search ranges, sweep folder), named with the offending value."""


# ----------------------------------------------------------------------------- parsing


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
                raise SweepError(f"--grid {item!r}: {part!r} is not valid YAML ({yaml_problem(exc)})") from None
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
    """Everything a sweep needs; stored in ``sweep.json`` so that resuming needs only the folder.

    ``template`` holds what every trial trains with, as ``surgsim train`` would; each trial
    replaces its seed, its log folder (``template.log_folder`` is where sweeps go) and adds its
    config to the hyperparameters.
    """

    template: TrainArgs
    seeds: list[int]
    grid: dict[str, list[Any]] = field(default_factory=dict)
    search: dict[str, tuple[str, float, float]] = field(default_factory=dict)
    num_samples: int | None = None
    sample_seed: int = 0
    cpus_per_trial: float = 1.0
    gpus_per_trial: float = 0.0
    scheduler: str = "none"
    name: str | None = None


@dataclass(frozen=True)
class PlannedTrial:
    """One (config, seed) pair: its name ``c<k>_s<seed>``, config number, seed and swept hyperparameters."""

    name: str
    config_id: int
    seed: int
    hyperparams: dict[str, Any]


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
    return resolve_preset(spec.template)


def planned_timesteps(spec: SweepSpec, config: dict[str, Any]) -> int:
    """The training budget of one config, resolved as ``surgsim train`` resolves it."""
    return run_timesteps(spec.template, base_preset(spec) | config)


def planned_trials(spec: SweepSpec, configs: list[dict[str, Any]]) -> list[PlannedTrial]:
    """Every (config, seed) pair, config by config."""
    width = len(str(len(configs) - 1))
    return [PlannedTrial(f"c{k:0{width}d}_s{seed}", k, seed, config)
            for k, config in enumerate(configs) for seed in spec.seeds]


def _check(spec: SweepSpec) -> list[dict[str, Any]]:
    """Refuse bad input before anything is made; returns the checked configs.

    Makes the template's hyperparameters whole where given as floats (``1e3``), as ``surgsim
    train`` does. The device is checked for its spelling only: the trials' machines may have the GPU.
    """
    if spec.scheduler not in SCHEDULERS:
        raise SweepError(f"--scheduler {spec.scheduler!r}: expected one of {list(SCHEDULERS)}")
    if not spec.seeds:
        raise SweepError("--seeds: no seeds given")
    if spec.cpus_per_trial <= 0 or spec.gpus_per_trial < 0:
        raise SweepError(
            f"--cpus-per-trial {spec.cpus_per_trial} / --gpus-per-trial {spec.gpus_per_trial}: "
            "need cpus > 0 and gpus >= 0"
        )
    args = spec.template
    try:
        check_args(args, device_here=False)  # the trials may run on machines with a GPU
        check_env_and_algo(args.algo, args.env_id, args.env_kwargs).close()
        configs = [check_hyperparams(args.algo, config, "--grid/--search") for config in expand_configs(spec)]
        planned_timesteps(spec, {})  # the preset exists
    except SweepError:
        raise
    except ValueError as exc:
        raise SweepError(str(exc)) from None
    return configs


def _new_sweep_dir(spec: SweepSpec) -> Path:
    """``<log folder>/sweeps/<name>``; without a name the next free ``<algo>_<env name>_<n>``."""
    args = spec.template
    base = Path(args.log_folder).resolve() / "sweeps"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if not spec.name:  # claimed with mkdir: two sweeps started at once never share a folder
            return claim_numbered(base, f"{args.algo}_{env_name(args.env_id)}", Path.mkdir, sep="_")[0]
        folder = base / spec.name
        if (folder / "sweep.json").exists():
            raise SweepError(f"{folder} already holds a sweep; continue it with --resume {folder} or pick another --name")
        folder.mkdir(exist_ok=True)
    except OSError as exc:
        raise SweepError(f"-f {args.log_folder}: cannot create the sweep folder in {base} ({exc.strerror or exc})") from None
    return folder


def start_sweep(spec: SweepSpec) -> tuple[Path, list[dict[str, Any]]]:
    """Check a new sweep's input, make its folder and write its plan; returns the folder and configs."""
    configs = _check(spec)
    sweep_dir = _new_sweep_dir(spec)
    spec.name = sweep_dir.name
    plan = {"format": PLAN_FORMAT, "spec": asdict(spec), "configs": configs}
    atomic_write_json(sweep_dir / "sweep.json", plan)
    return sweep_dir, configs


def read_plan(sweep_dir: Path) -> tuple[SweepSpec, list[dict[str, Any]]]:
    """The spec and configs a sweep folder was started with."""
    path = sweep_dir / "sweep.json"
    if not path.is_file():
        raise SweepError(f"{sweep_dir} is not a sweep folder (no sweep.json)")
    try:
        plan = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise SweepError(f"{path}: unreadable sweep plan ({exc})") from None
    found = plan.get("format", 1) if isinstance(plan, dict) else None
    if found != PLAN_FORMAT:
        raise SweepError(
            f"{path}: this surgsim cannot resume a sweep plan of format {found} (written by another "
            f"surgsim version; it reads format {PLAN_FORMAT}); start the sweep anew"
        )
    try:
        fields = plan["spec"]
        spec = SweepSpec(**fields | {
            "template": TrainArgs(**fields["template"]),
            "search": {k: tuple(v) for k, v in fields["search"].items()},
        })
        return spec, plan["configs"]
    except (KeyError, TypeError, AttributeError) as exc:
        raise SweepError(f"{path}: unreadable sweep plan ({exc})") from None
