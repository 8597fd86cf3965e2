"""Train stable-baselines3 agents on surgsim envs with rl_zoo3's flags and log layout.

A run lives in ``<log folder>/<algo>/<env id with / replaced by ->_<n>/``:

    <env name>.zip              final model (an SB3 zip: a pickle, load only your own)
    best_model.zip              best evaluation so far (success rate, then return)
    <env name>/args.yml         the arguments of the run
    <env name>/config.yml       the hyperparameters used (rl_zoo3's file)
    <env name>/vecnormalize.pkl normalisation statistics, when the preset normalises
    checkpoints/                rl_model_<steps>_steps.zip (+ replay buffer, vecnormalize)
    evaluations.npz, evaluations.jsonl   periodic evaluation results
    tb/                         TensorBoard logs
    learning_curve.png, summary.json     written at the end
"""

from __future__ import annotations

import difflib
import inspect
import json
import math
import os
import random
import re
import shutil
import signal
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import torch
import yaml
from stable_baselines3 import DQN, PPO, SAC, HerReplayBuffer
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

import surgsim  # noqa: F401  (registers the ids)
from surgsim._files import atomic_save, atomic_write_json, atomic_write_text, claim_numbered
from surgsim.errors import SurgsimError, yaml_problem
from surgsim.rl.dqfd import DQfD
from surgsim.rl.evaluate import EvalResult, model_policy, run_episodes
from surgsim.rl.presets import ALGOS, RUN_KEYS, load_preset, preset_path

ALGO_CLASSES: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "dqn": DQN, "sac": SAC}
#: what a preset's ``replay_buffer_class`` may name; names are looked up here, never evaluated
REPLAY_BUFFERS = {"HerReplayBuffer": HerReplayBuffer}
_CHECKPOINT = re.compile(r"rl_model_(\d+)_steps\.zip$")
#: VecNormalize statistics saved with best_model.zip (the final ones differ)
BEST_STATS = "best_vecnormalize.pkl"
#: one JSON record per periodic evaluation, appended as the run goes
EVALUATIONS = "evaluations.jsonl"
#: evaluation episode i is reset with seed EVAL_SEED + i: patients apart from the training seeds
EVAL_SEED = 10_000
#: what `surgsim pretrain` records in its run folder: arguments, dataset, losses, evaluation
PRETRAIN_RECORD = "pretrain.json"


class TrainingError(SurgsimError):
    """Bad training input: unknown env or algorithm, wrong action space, bad run folder."""


@dataclass
class TrainArgs:
    algo: str
    env_id: str
    n_timesteps: int | None = None
    seed: int = 0
    log_folder: str = "logs"
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    eval_freq: int = 10_000
    eval_episodes: int = 20
    n_envs: int | None = None
    device: str = "auto"
    hyperparams: dict[str, Any] = field(default_factory=dict)
    save_freq: int = 50_000
    progress_bar: bool = True
    verbose: int = 0
    #: a pretrained run folder (``surgsim pretrain``) whose weights the run starts from
    init_from: str | None = None


def env_name(env_id: str) -> str:
    return env_id.replace("/", "-")


def new_run_dir(log_folder: str | Path, algo: str, env_id: str) -> tuple[Path, Path]:
    """Make the next free ``<log folder>/<algo>/<env name>_<n>`` (n counts from 1, like rl_zoo3),
    claimed atomically so that trainings started together get different folders.

    Returns it and the topmost folder this made (what to remove should the start fail).
    """
    base = Path(log_folder) / algo
    top = base
    while not top.parent.exists():
        top = top.parent
    existed = base.is_dir()
    try:
        base.mkdir(parents=True, exist_ok=True)
        run, _ = claim_numbered(base, env_name(env_id), Path.mkdir, sep="_")
    except OSError as exc:
        raise TrainingError(f"-f {log_folder}: cannot create the run folder in {base} ({exc.strerror or exc})") from None
    return run, run if existed else top


def check_device(device: str, here: bool = True) -> None:
    """``cuda`` without a GPU is refused, not silently run on the CPU as SB3 would.

    ``here=False`` checks only the spelling (a sweep's trials may run on other machines).
    """
    if device == "auto":
        return
    try:
        resolved = torch.device(device)
    except RuntimeError:
        raise TrainingError(f"--device {device!r} is not valid; expected auto, cpu or cuda[:n]") from None
    if resolved.type not in ("cpu", "cuda"):
        raise TrainingError(f"--device {device!r} is not valid; expected auto, cpu or cuda[:n]")
    if here and resolved.type == "cuda" and not torch.cuda.is_available():
        raise TrainingError(f"--device {device!r} asked for, but no CUDA GPU is available; use auto or cpu")


def check_counts(counts: dict[str, Any]) -> None:
    """Refuse an option (name -> value; None: not given) that is not a whole number of at least 1."""
    for option, value in counts.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise TrainingError(f"{option} {value!r}: must be a whole number of at least 1")


def check_args(args: TrainArgs, device_here: bool = True) -> None:
    """Refuse counts below one, an unusable device and bad hyperparameters before anything is made.

    ``device_here=False`` checks only the device's spelling (see :func:`check_device`).
    """
    check_counts({"-n": args.n_timesteps, "--eval-freq": args.eval_freq, "--eval-episodes": args.eval_episodes,
                  "--save-freq": args.save_freq, "--n-envs": args.n_envs})
    check_device(args.device, here=device_here)
    args.hyperparams = check_hyperparams(args.algo, args.hyperparams)


#: hyperparameters that count things (whole numbers) and their smallest valid value; other
#: numeric hyperparameters must not be negative
_COUNTS = {"n_steps": 1, "batch_size": 1, "n_epochs": 1, "buffer_size": 1, "train_freq": 1,
           "target_update_interval": 1, "learning_starts": 0, "stats_window_size": 1,
           "gradient_steps": -1, "sde_sample_freq": -1,  # -1: SB3's "as many as env steps" / "never"
           "n_timesteps": 1, "n_envs": 1}
_FRACTIONS = ("gamma", "gae_lambda", "tau", "exploration_fraction", "exploration_initial_eps",
              "exploration_final_eps")
#: constructor arguments that the run sets itself, not a preset
_NOT_HYPERPARAMS = ("self", "policy", "env", "seed", "device", "verbose", "tensorboard_log", "_init_setup_model")


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_hyperparams(algo: str, hyperparams: dict[str, Any], option: str = "--hyperparams") -> dict[str, Any]:
    """Refuse names the algorithm does not take (suggesting the nearest) and out-of-range numbers.

    Returns the hyperparameters with whole-number floats (``1e3``) made ints. Values SB3 checks
    itself are left to it (its refusal is reported when the model is built).
    """
    if algo not in ALGO_CLASSES:
        raise TrainingError(f"unknown algorithm {algo!r}; expected one of {list(ALGOS)}")
    params = inspect.signature(ALGO_CLASSES[algo].__init__).parameters
    known = [name for name in params if name not in _NOT_HYPERPARAMS] + list(RUN_KEYS)
    checked = {}
    for key, value in hyperparams.items():
        where = f"{option} {key}:{value}"
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}?" if close else f"expected one of {sorted(known)}"
            raise TrainingError(f"{option} {key!r} is not a {algo.upper()} hyperparameter; {hint}")
        default = params[key].default if key in params else None
        numeric = _is_number(default) or key in _COUNTS
        if numeric and not (key == "train_freq" and isinstance(value, (list, tuple))):  # (4, "episode")
            if not _is_number(value) or not math.isfinite(value):
                raise TrainingError(f"{where}: expected a number")
            if key in _COUNTS:
                if not float(value).is_integer() or value < _COUNTS[key]:
                    raise TrainingError(f"{where}: expected a whole number of at least {_COUNTS[key]}")
                value = int(value)
            elif value < 0 or (key in _FRACTIONS and value > 1):
                bounds = "between 0 and 1" if key in _FRACTIONS else "at least 0"
                raise TrainingError(f"{where}: must be {bounds}")
        checked[key] = value
    return checked


def check_env_and_algo(algo: str, env_id: str, env_kwargs: dict[str, Any], source: str = "--env-kwargs") -> gym.Env:
    """Make one env, failing with a message that says what to use instead.

    ``source`` names where the env kwargs came from (the option, or a run's args.yml).
    """
    if algo not in ALGO_CLASSES:
        raise TrainingError(f"unknown algorithm {algo!r}; expected one of {list(ALGOS)}")
    if env_id not in gym.registry:
        raise TrainingError(f"unknown env id {env_id!r}; `surgsim envs` lists the registered ids")
    if not isinstance(env_kwargs, dict):
        raise TrainingError(f"bad {source} for {env_id}: {env_kwargs!r} is not a mapping")
    try:
        env = gym.make(env_id, **env_kwargs)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"bad {source} for {env_id}: {exc}") from None
    discrete = isinstance(env.action_space, gym.spaces.Discrete)
    if algo == "dqn" and not discrete:
        suggestion = env_id.replace("-v0", "").rstrip() + "Discrete-v0"
        hint = f"; use {suggestion}" if suggestion in gym.registry else ""
        raise TrainingError(f"DQN needs discrete actions, {env_id} is continuous{hint}")
    if algo == "sac" and discrete:
        raise TrainingError(f"SAC needs continuous actions, {env_id} is discrete")
    return env


def _policy_for(policy: str, env: gym.Env) -> str:
    """MlpPolicy for flat states, CnnPolicy for images, MultiInputPolicy for Dict observations."""
    space = env.observation_space
    if isinstance(space, gym.spaces.Dict):
        return "MultiInputPolicy"
    if len(space.shape) == 3:
        return "CnnPolicy"
    return policy


def resolve_preset(args: TrainArgs) -> dict[str, Any]:
    """What a run trains with: the preset of ``agents/<algo>.yml`` for its env id and observation
    type, with its ``--hyperparams`` on top (a sweep resolves its configs the same way)."""
    return load_preset(args.algo, args.env_id, args.env_kwargs.get("obs_type", "state")) | args.hyperparams


def run_timesteps(args: TrainArgs, preset: dict[str, Any]) -> int:
    """The run's budget: ``-n``, else the preset's ``n_timesteps``, else 100,000."""
    return int(args.n_timesteps or preset.get("n_timesteps", 100_000))


def read_evaluations(run_dir: Path) -> list[dict[str, Any]]:
    """A run's evaluation records, oldest first (none before its first evaluation)."""
    path = run_dir / EVALUATIONS
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line]


class SurgicalEvalCallback(BaseCallback):
    """Periodic seeded evaluation: success rate, failure breakdown, return; keeps the best model."""

    def __init__(
        self, args: TrainArgs, run_dir: Path, eval_env: gym.Env,
        on_evaluation: Callable[[dict[str, Any]], None] | None = None, evaluate_first: bool = False,
    ) -> None:
        super().__init__()
        self.args = args
        self.evaluate_first = evaluate_first
        self.on_evaluation = on_evaluation
        self.run_dir = run_dir
        self.eval_env = eval_env
        self.every = max(args.eval_freq, 1)
        self.last_eval = 0
        self.best: tuple[float, float] | None = None
        self.history: list[dict[str, Any]] = []
        self.history = read_evaluations(run_dir)
        if self.history:
            self.last_eval = self.history[-1]["timesteps"]
            self.best = max((h["success_rate"], h["mean_return"]) for h in self.history)

    def _on_training_start(self) -> None:
        if self.evaluate_first and not self.history:
            self.evaluate()
            normalizer = self.model.get_vec_normalize_env()
            if normalizer is not None:
                normalizer.training = True  # held by train() until this first evaluation

    def _on_step(self) -> bool:
        if self.num_timesteps - self.last_eval >= self.every:
            self.evaluate()
        return True

    def evaluate(self) -> EvalResult:
        self.last_eval = self.num_timesteps
        normalizer = self.model.get_vec_normalize_env()
        result = run_episodes(
            self.eval_env,
            model_policy(self.model, deterministic=True, normalizer=normalizer),
            self.args.eval_episodes,
            seed=EVAL_SEED,
        )
        for key in ("success_rate", "critical_failure_rate", "mean_return", "mean_length"):
            self.logger.record(f"eval/{key}", getattr(result, key))
        record = {"timesteps": self.num_timesteps, "wall_time": time.time(), **result.to_dict()}
        self.history.append(record)
        with open(self.run_dir / EVALUATIONS, "a") as fh:
            fh.write(json.dumps(record) + "\n")
        np.savez(
            self.run_dir / "evaluations.npz",
            timesteps=np.array([h["timesteps"] for h in self.history]),
            results=np.array([h["returns"] for h in self.history]),
            successes=np.array([h["success_rate"] for h in self.history]),
        )
        score = (result.success_rate, result.mean_return)
        if self.best is None or score > self.best:
            self.best = score
            atomic_save(self.run_dir / "best_model.zip", self.model.save)
            if normalizer is not None:  # the statistics the best model was evaluated with
                atomic_save(self.run_dir / BEST_STATS, normalizer.save)
        if self.on_evaluation is not None:
            self.on_evaluation(record)
        return result


class EpisodeLog(gym.Wrapper):
    """Remembers how the current episode began and the actions taken since.

    PyBullet's state cannot be saved with a checkpoint, but the envs are deterministic: a
    resumed run rebuilds each env exactly by resetting it as it was reset and replaying the
    actions (through the Monitor, which so regains the episode's rewards).
    """

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.start: dict[str, Any] = {}
        self.actions: list[Any] = []

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        rng = None if seed is not None else self.env.unwrapped.np_random.bit_generator.state
        self.start = {"seed": seed, "options": options, "rng": rng}
        self.actions = []
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        self.actions.append(np.array(action))  # a copy: the VecEnv may reuse its buffer
        return self.env.step(action)

    def episode_state(self) -> dict[str, Any]:
        """JSON-ready: the reset's seed, options and RNG state, the actions, the action space's RNG."""
        dtype = self.actions[0].dtype.str if self.actions else None
        return {**self.start, "dtype": dtype, "actions": [a.tolist() for a in self.actions],
                "action_space_rng": self.action_space.np_random.bit_generator.state}

    def replay(self, state: dict[str, Any]) -> None:
        if state["rng"] is not None:
            self.env.unwrapped.np_random.bit_generator.state = state["rng"]
        self.reset(seed=state["seed"], options=state["options"])
        for action in state["actions"]:
            self.step(np.asarray(action, dtype=state["dtype"])[()])
        self.action_space.np_random.bit_generator.state = state["action_space_rng"]


def training_state(model: BaseAlgorithm) -> dict[str, Any]:
    """What SB3's zip leaves out for an exact resume: every RNG, the envs' episodes, VecNormalize's returns."""
    venv = model.get_env()
    name, keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python_random": random.getstate(),
        "numpy_random": [name, keys.tolist(), pos, has_gauss, cached],
        "torch": torch.get_rng_state().tolist(),
        "cuda": [s.tolist() for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
        "action_space_rng": model.action_space.np_random.bit_generator.state,
        "envs": venv.env_method("episode_state"),
        "returns": venv.returns.tolist() if isinstance(venv, VecNormalize) else None,
    }


def restore_training_state(model: BaseAlgorithm, state: dict[str, Any]) -> None:
    """Undo :func:`training_state` on a freshly loaded model (SB3's load re-seeds every RNG)."""
    venv = model.get_env()
    for i, episode in enumerate(state["envs"]):
        venv.env_method("replay", episode, indices=i)
    if isinstance(venv, VecNormalize):
        venv.returns = np.array(state["returns"])
    version, internal, gauss = state["python_random"]
    random.setstate((version, tuple(internal), gauss))
    name, keys, pos, has_gauss, cached = state["numpy_random"]
    np.random.set_state((name, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])
    model.action_space.np_random.bit_generator.state = state["action_space_rng"]


class CheckpointSaver(BaseCallback):
    """Checkpoints (model, replay buffer, normalisation statistics, RNG and episode state), atomically.

    They are written at the start of a rollout, the one point where SB3's state is whole (no
    half-collected rollout, the last observation stored): every ``save_freq`` steps, and when
    Ctrl-C asked to stop, after which training stops there.
    """

    def __init__(self, run_dir: Path, save_freq: int, start: int) -> None:
        super().__init__()
        self.dir = run_dir / "checkpoints"
        self.every = max(save_freq, 1)
        self.last = start
        self.stop_requested = False

    def _init_callback(self) -> None:
        self.dir.mkdir(exist_ok=True)

    def _on_rollout_start(self) -> None:
        if self.stop_requested or self.model.num_timesteps - self.last >= self.every:
            self.save()
        if self.stop_requested:
            raise KeyboardInterrupt

    def _on_step(self) -> bool:
        return True

    def save(self) -> Path:
        self.last = steps = self.model.num_timesteps
        model = self.model
        buffer = getattr(model, "replay_buffer", None)
        if buffer is not None:
            atomic_save(self.dir / f"replay_buffer_{steps}_steps.pkl", model.save_replay_buffer)
        normalizer = model.get_vec_normalize_env()
        if normalizer is not None:
            atomic_save(self.dir / f"vecnormalize_{steps}_steps.pkl", normalizer.save)
        atomic_write_json(self.dir / f"state_{steps}_steps.json", training_state(model), indent=None)
        path = self.dir / f"rl_model_{steps}_steps.zip"
        atomic_save(path, model.save)  # last: a model file means its companions are complete
        return path


def _make_vec_env(args: TrainArgs, run_dir: Path, n_envs: int, normalize: bool | dict, resuming: bool) -> VecEnv:
    venv = make_vec_env(
        args.env_id,
        n_envs=n_envs,
        seed=args.seed,
        # SB3 makes its envs with render_mode="rgb_array" unless told otherwise: a rendered world
        # draws every deformation (slower, and PyBullet leaks each drawn mesh's vertex lists)
        env_kwargs={"render_mode": None, **args.env_kwargs},
        monitor_dir=str(run_dir / "monitor"),
        # a resumed run appends to the episode log
        monitor_kwargs={"info_keywords": ("is_success",), "override_existing": not resuming},
        wrapper_class=EpisodeLog,
    )
    if normalize:
        options = normalize if isinstance(normalize, dict) else {}
        venv = VecNormalize(venv, gamma=args.hyperparams.get("gamma", 0.99), **options)
    return venv


def checkpoints(run_dir: Path) -> list[tuple[Path, int]]:
    """The run's checkpoints and their timesteps, newest first."""
    found = [
        (p, int(m.group(1)))
        for p in (run_dir / "checkpoints").glob("rl_model_*_steps.zip")
        if (m := _CHECKPOINT.search(p.name))
    ]
    return sorted(found, key=lambda item: item[1], reverse=True)


def latest_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    found = checkpoints(run_dir)
    return found[0] if found else None


def train(
    args: TrainArgs, resume: str | Path | None = None,
    on_evaluation: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Train (or resume) a run; returns its folder.

    Ctrl-C checkpoints at the next rollout start and stops (raising KeyboardInterrupt). Resumed
    from any checkpoint, a run continues bit for bit as it would have without the stop.
    ``on_evaluation`` receives each evaluation record as it is written (a sweep reports it to Ray).
    """
    if resume is not None:
        run_dir, args = _prepare_resume(Path(resume), args)
    else:
        check_args(args)
        check_env_and_algo(args.algo, args.env_id, args.env_kwargs).close()
        if args.init_from is not None:
            check_init_from(args)
        run_dir = None
    setup = run_setup(args)
    n_timesteps = setup.n_timesteps

    resuming = run_dir is not None
    if not resuming:
        run_dir, made = new_run_dir(args.log_folder, args.algo, args.env_id)
    eval_env = gym.make(args.env_id, **args.env_kwargs)
    try:
        if resuming:
            venv = _make_vec_env(args, run_dir, setup.n_envs, setup.normalize, resuming=True)
            model = _resume_model(algo_class(args), venv, args, run_dir)
        else:
            venv, model = _start(args, run_dir, setup)
            if args.init_from is not None:
                _init_from(model, venv, args)
        if isinstance(model, DQfD):
            _attach_demonstrations(model, args)
    except BaseException:
        eval_env.close()
        if not resuming:  # a failed start leaves no half-made run folder
            shutil.rmtree(made, ignore_errors=True)
        raise

    # a fine-tuning run first evaluates the pretrained policy, before any update; its
    # normalisation statistics wait for that (learn's first reset would otherwise move them)
    fine_tuning = args.init_from is not None and not resuming
    if fine_tuning and isinstance(venv, VecNormalize):
        venv.training = False
    evaluator = SurgicalEvalCallback(args, run_dir, eval_env, on_evaluation, evaluate_first=fine_tuning)
    saver = CheckpointSaver(run_dir, args.save_freq, start=model.num_timesteps)
    callbacks: list[BaseCallback] = [evaluator, saver]
    if args.progress_bar:
        callbacks.append(ProgressBarCallback())
    start = time.time()
    try:
        with _stop_on_ctrl_c(saver):
            model.learn(
                max(n_timesteps - model.num_timesteps, 0), callback=CallbackList(callbacks),
                reset_num_timesteps=not resuming, tb_log_name="run",
            )
        if saver.last != model.num_timesteps:
            saver.save()  # so that --resume with a larger -n continues exactly from here
    except KeyboardInterrupt:
        eval_env.close()
        if saver.stop_requested:
            print(f"\ninterrupted: checkpoint saved at {model.num_timesteps} timesteps; "
                  f"continue with --resume {run_dir}", file=sys.stderr)
        else:
            found = latest_checkpoint(run_dir)
            since = f"its last checkpoint ({found[1]} timesteps)" if found else "the start"
            print(f"\ninterrupted: --resume {run_dir} continues from {since}", file=sys.stderr)
        raise
    finally:
        venv.close()
    if not evaluator.history or evaluator.history[-1]["timesteps"] != model.num_timesteps:
        evaluator.evaluate()
    eval_env.close()
    _finish(model, args, run_dir, evaluator.history, time.time() - start)
    return run_dir


@dataclass
class RunSetup:
    """What a run is built with: its resolved preset, budget, env count, normalisation and the
    algorithm's constructor arguments."""

    preset: dict[str, Any]
    n_timesteps: int
    n_envs: int
    normalize: bool | dict
    algo_kwargs: dict[str, Any]


def run_setup(args: TrainArgs) -> RunSetup:
    """Resolve the preset of ``args`` (see :func:`resolve_preset`) into a :class:`RunSetup`."""
    preset = resolve_preset(args)
    n_timesteps = run_timesteps(args, preset)
    n_envs = int(args.n_envs or preset.get("n_envs", 1))
    if n_timesteps < 1 or n_envs < 1:
        raise TrainingError(f"{preset_path(args.algo)}: n_timesteps and n_envs must be at least 1")
    algo_kwargs = {k: v for k, v in preset.items() if k not in RUN_KEYS}
    if "replay_buffer_class" in algo_kwargs:
        name = algo_kwargs["replay_buffer_class"]
        if not isinstance(name, str) or name not in REPLAY_BUFFERS:
            raise TrainingError(f"replay_buffer_class {name!r} is not one of {list(REPLAY_BUFFERS)}")
        algo_kwargs["replay_buffer_class"] = REPLAY_BUFFERS[name]
    if args.init_from is not None and args.algo == "dqn" and "exploration_initial_eps" not in args.hyperparams:
        # fine-tuning a pretrained Q-network: explore as the preset ends, not from random actions
        algo_kwargs["exploration_initial_eps"] = algo_kwargs.get("exploration_final_eps", 0.05)
    if args.init_from is not None and args.algo in ("dqn", "sac") and "learning_starts" not in args.hyperparams:
        # SB3 acts uniformly at random until learning_starts: a pretrained policy acts from step 0
        algo_kwargs["learning_starts"] = 0
    return RunSetup(preset, n_timesteps, n_envs, preset.get("normalize", False), algo_kwargs)


def check_init_from(args: TrainArgs) -> None:
    """A pretrained run to start from must exist and be of the same algorithm and env id."""
    try:
        pretrained, record = read_run_args(Path(args.init_from))
    except TrainingError as exc:
        raise TrainingError(f"--init-from: {exc}") from None
    if (pretrained.algo, pretrained.env_id) != (args.algo, args.env_id):
        raise TrainingError(
            f"--init-from {args.init_from}: it is a {pretrained.algo.upper()} run on {pretrained.env_id} "
            f"({record}), this run is {args.algo.upper()} on {args.env_id}"
        )
    model = Path(args.init_from) / f"{env_name(args.env_id)}.zip"
    if not model.is_file():
        raise TrainingError(f"--init-from {args.init_from}: no model {model.name} in it")
    if algo_class(args) is DQfD:
        _pretraining_dataset(args.init_from)


def algo_class(args: TrainArgs) -> type[BaseAlgorithm]:
    """The run's SB3 class: DQN fine-tuned from a ``surgsim pretrain`` run keeps learning from its
    demonstrations (:class:`surgsim.rl.dqfd.DQfD`); otherwise the algorithm's own. Asked again
    when such a run resumes, so its pretrained folder must still be there (never a silent
    fall-back to plain DQN)."""
    if args.algo != "dqn" or args.init_from is None:
        return ALGO_CLASSES[args.algo]
    folder = Path(args.init_from)
    if not folder.is_dir():
        raise TrainingError(f"--init-from: run folder {folder} does not exist (a DQN fine-tuned from it needs "
                            "it, and the demonstrations it was pretrained on, to train and to resume)")
    return DQfD if (folder / PRETRAIN_RECORD).is_file() else DQN


def _pretraining_dataset(init_from: str) -> tuple[str, str]:
    """The (root, id) of the dataset a ``surgsim pretrain`` run learnt from; it must still exist."""
    from surgsim.datasets.store import dataset_dir

    path = Path(init_from) / PRETRAIN_RECORD
    try:
        record = json.loads(path.read_text())["dataset"]
        root, dataset = record["root"], record["id"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TrainingError(f"--init-from {init_from}: unreadable {path.name} ({type(exc).__name__}: {exc})") from None
    if not dataset_dir(root, dataset).is_dir():
        raise TrainingError(f"--init-from {init_from}: DQN fine-tuning keeps learning from the demonstrations "
                            f"it was pretrained on, and dataset {dataset} is no longer under {root}")
    return root, dataset


def _attach_demonstrations(model: DQfD, args: TrainArgs) -> None:
    """Give a DQfD fine-tuning run the demonstrations its pretrained run learnt from."""
    from surgsim.datasets import load_demonstrations

    demos = load_demonstrations(*_pretraining_dataset(args.init_from))
    normalizer = model.get_vec_normalize_env()
    rewards = demos.rewards
    if normalizer is not None and normalizer.norm_reward:
        rewards = normalizer.normalize_reward(rewards)
    model.use_demonstrations(demos, rewards)


def _init_from(model: BaseAlgorithm, venv: VecEnv, args: TrainArgs) -> None:
    """Start ``model`` from the pretrained run's weights (and its normalisation statistics)."""
    run_dir, name = Path(args.init_from), env_name(args.env_id)
    zip_path = run_dir / f"{name}.zip"
    try:
        model.set_parameters(str(zip_path), exact_match=True, device=args.device)
    except Exception as exc:  # a zip of another architecture: SB3 raises many error types
        raise TrainingError(f"--init-from {run_dir}: cannot load {zip_path.name} into this model "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0]})") from None
    stats = run_dir / name / "vecnormalize.pkl"
    base = venv.venv if isinstance(venv, VecNormalize) else venv
    loaded = VecNormalize.load(str(stats), base) if stats.is_file() else None
    if _normalisation(loaded) != _normalisation(venv):
        raise TrainingError(
            f"--init-from {run_dir}: it was trained with normalisation {_normalisation(loaded)}, this run uses "
            f"{_normalisation(venv)} (its preset and --hyperparams normalize): the policy would see other inputs"
        )
    if loaded is not None:
        _copy_statistics(loaded, venv)


def _normalisation(venv: VecEnv | None) -> str:
    """A run's VecNormalize setting in words, to compare a pretrained run's with a new one's."""
    if not isinstance(venv, VecNormalize):
        return "none"
    return f"observations {'on' if venv.norm_obs else 'off'}, rewards {'on' if venv.norm_reward else 'off'}"


def _copy_statistics(loaded: VecNormalize, venv: VecNormalize) -> None:
    """Take the running statistics ``loaded`` keeps: a VecNormalize that does not normalise
    observations (Incision's preset) has no ``obs_rms`` at all."""
    for name in ("obs_rms", "ret_rms"):
        if name in vars(loaded):
            setattr(venv, name, getattr(loaded, name))


def _start(args: TrainArgs, run_dir: Path, setup: RunSetup) -> tuple[VecEnv, BaseAlgorithm]:
    """Write a new run's arguments and build its envs and model; SB3's refusals name the hyperparameters."""
    meta = run_dir / env_name(args.env_id)
    meta.mkdir()
    args_record = asdict(args) | {"n_timesteps": setup.n_timesteps, "n_envs": setup.n_envs}
    atomic_write_text(meta / "args.yml", yaml.safe_dump(args_record, sort_keys=True))
    config = setup.preset | {"n_timesteps": setup.n_timesteps, "n_envs": setup.n_envs}
    atomic_write_text(meta / "config.yml", yaml.safe_dump(config, sort_keys=True))
    venv = _make_vec_env(args, run_dir, setup.n_envs, setup.normalize, resuming=False)
    try:
        model = algo_class(args)(
            _policy_for(setup.preset.get("policy", "MlpPolicy"), venv), venv, seed=args.seed,
            device=args.device, verbose=args.verbose, tensorboard_log=str(run_dir / "tb"),
            **setup.algo_kwargs,
        )
    except (TypeError, ValueError, AssertionError, KeyError, RuntimeError) as exc:
        venv.close()
        given = ", ".join(f"{k}:{v}" for k, v in args.hyperparams.items())
        source = f"--hyperparams {given}" if given else f"the preset in {preset_path(args.algo)}"
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise TrainingError(f"{source}: {args.algo.upper()} refused them ({reason})") from None
    return venv, model


class _stop_on_ctrl_c:
    """Ctrl-C asks the saver to checkpoint and stop at the next rollout start; a second one stops at once.

    Only the main thread can take signals (a sweep's trials run elsewhere and are stopped by Ray).
    """

    def __init__(self, saver: CheckpointSaver) -> None:
        self.saver = saver
        self.previous: Any = None

    def __enter__(self) -> None:
        if threading.current_thread() is threading.main_thread():
            self.previous = signal.signal(signal.SIGINT, self._request) or signal.default_int_handler

    def _request(self, signum: int, frame: Any) -> None:
        self.saver.stop_requested = True
        signal.signal(signal.SIGINT, self.previous)
        print("\nCtrl-C: saving a checkpoint at the end of this rollout (Ctrl-C again to stop now)",
              file=sys.stderr)

    def __exit__(self, *exc: Any) -> None:
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)


def read_run_args(run_dir: Path) -> tuple[TrainArgs, Path]:
    """The arguments a run folder was trained with, and the ``<env>/args.yml`` they came from
    (callers check its env kwargs by making the env they need: see :func:`check_env_and_algo`)."""
    if not run_dir.is_dir():
        raise TrainingError(f"run folder {run_dir} does not exist")
    records = list(run_dir.glob("*/args.yml"))
    if not records:
        raise TrainingError(f"{run_dir} is not a surgsim run folder (no <env>/args.yml)")
    try:
        args = TrainArgs(**yaml.safe_load(records[0].read_text()))
    except yaml.YAMLError as exc:
        raise TrainingError(f"{records[0]}: unreadable run arguments ({yaml_problem(exc)})") from None
    except TypeError as exc:
        raise TrainingError(f"{records[0]}: unreadable run arguments ({exc})") from None
    return args, records[0]


def _prepare_resume(run_dir: Path, overrides: TrainArgs) -> tuple[Path, TrainArgs]:
    stored, record = read_run_args(run_dir)
    check_env_and_algo(stored.algo, stored.env_id, stored.env_kwargs, source=f"env_kwargs in {record}").close()
    if overrides.n_timesteps is not None:
        stored.n_timesteps = overrides.n_timesteps
    stored.progress_bar = overrides.progress_bar
    stored.device = overrides.device
    check_args(stored)
    if not checkpoints(run_dir):
        raise TrainingError(f"{run_dir}: no checkpoint to resume from (checkpoints/rl_model_*_steps.zip)")
    for stale in run_dir.rglob(".*.partial*"):  # left by a run killed while writing (see atomic_save)
        stale.unlink()
    return run_dir, stored


def _resume_model(algo_class: type[BaseAlgorithm], venv: VecEnv, args: TrainArgs, run_dir: Path) -> BaseAlgorithm:
    """The newest checkpoint that loads whole, older ones standing in for a damaged one.

    The episode log and the evaluations are rewound to the checkpoint, so that what a killed
    run did after it is neither lost from nor counted twice in the resumed run's record.
    """
    found = checkpoints(run_dir)
    problems = []
    for i, (checkpoint, steps) in enumerate(found):
        try:
            model = _load_checkpoint(algo_class, checkpoint, steps, venv, args, run_dir)
        except Exception as exc:  # a corrupt or truncated file shows up as many error types
            problems.append(f"cannot load checkpoint {checkpoint}: {type(exc).__name__}: {exc}".splitlines()[0])
            if i + 1 < len(found):
                print(f"warning: {problems[-1]}; trying {found[i + 1][0].name}", file=sys.stderr)
            continue
        _rewind_logs(run_dir, steps, venv.num_envs)
        return model
    older = f" (nor the {len(found) - 1} older one(s))" if len(found) > 1 else ""
    raise TrainingError(problems[0] + older)


def _load_checkpoint(
    algo_class: type[BaseAlgorithm], checkpoint: Path, steps: int, venv: VecEnv, args: TrainArgs, run_dir: Path,
) -> BaseAlgorithm:
    """Load a checkpoint and its companions. SB3 zips are pickles: only the user's own run folder."""
    folder = checkpoint.parent
    state_file = folder / f"state_{steps}_steps.json"
    state = json.loads(state_file.read_text()) if state_file.is_file() else None
    if isinstance(venv, VecNormalize):
        _copy_statistics(VecNormalize.load(str(folder / f"vecnormalize_{steps}_steps.pkl"), venv.venv), venv)
    model = algo_class.load(
        str(checkpoint), env=venv, device=args.device, tensorboard_log=str(run_dir / "tb"),
        force_reset=state is None,  # else keep the last observation: the envs are replayed to it
    )
    if hasattr(model, "replay_buffer"):
        model.load_replay_buffer(str(folder / f"replay_buffer_{steps}_steps.pkl"))
    if state is not None:
        restore_training_state(model, state)
    else:
        print(f"warning: {checkpoint.name} has no RNG and episode state (an older checkpoint): "
              "the resumed run starts new episodes and is not bit-exact", file=sys.stderr)
    return model


def _rewind_logs(run_dir: Path, steps: int, n_envs: int) -> None:
    """Drop monitor rows and evaluations written after the checkpoint at ``steps``."""
    for monitor in (run_dir / "monitor").glob("*.monitor.csv"):
        _rewind_monitor(monitor, steps // n_envs)
    if (run_dir / EVALUATIONS).is_file():
        kept = [record for record in read_evaluations(run_dir) if record["timesteps"] <= steps]
        atomic_write_text(run_dir / EVALUATIONS, "".join(json.dumps(record) + "\n" for record in kept))


def _rewind_monitor(path: Path, env_steps: int) -> None:
    """Cut a Monitor CSV after the episodes that ended within the env's first ``env_steps`` steps.

    Truncated in place: the resumed run's Monitor already holds the file open for appending.
    """
    keep, steps, column = 0, 0, None
    for line in path.read_bytes().splitlines(keepends=True):
        text = line.decode(errors="replace")
        if not text.endswith("\n"):
            break  # a row cut short by a kill
        if text.startswith("#"):
            pass
        elif column is None:
            column = text.strip().split(",").index("l")
        else:
            steps += int(text.split(",")[column])
            if steps > env_steps:
                break
        keep += len(line)
    os.truncate(path, keep)


def _finish(model, args: TrainArgs, run_dir: Path, history: list[dict], seconds: float) -> None:
    from surgsim.rl.plots import learning_curve

    name = env_name(args.env_id)
    atomic_save(run_dir / f"{name}.zip", model.save)
    normalizer = model.get_vec_normalize_env()
    if normalizer is not None:
        atomic_save(run_dir / name / "vecnormalize.pkl", normalizer.save)
    learning_curve(history, run_dir / "learning_curve.png", title=f"{args.algo.upper()} on {args.env_id}")
    last = history[-1]
    summary = {
        "algo": args.algo,
        "env_id": args.env_id,
        "seed": args.seed,
        "timesteps": int(model.num_timesteps),
        "wall_time_s_this_session": round(seconds, 1),
        "final_eval": {k: last[k] for k in ("success_rate", "critical_failure_rate", "mean_return",
                                              "mean_length", "outcomes", "episodes")},
        "best_success_rate": max(h["success_rate"] for h in history),
        "first_timesteps_at_best": next(
            h["timesteps"] for h in history if h["success_rate"] == max(x["success_rate"] for x in history)
        ),
    }
    atomic_write_json(run_dir / "summary.json", summary)


def load_run(run_dir: str | Path, device: str = "auto", best: bool = False):
    """Model, VecNormalize statistics (or None) and args of a finished run.

    SB3 model zips and the statistics are pickles: load only runs you trust.
    """
    run_dir = Path(run_dir)
    args, record = read_run_args(run_dir)
    # HER models need an env to load; making it checks the run's env kwargs
    make_env = partial(check_env_and_algo, args.algo, args.env_id, args.env_kwargs, source=f"env_kwargs in {record}")
    env = make_vec_env(make_env, n_envs=1)
    name = env_name(args.env_id)
    model_path = run_dir / ("best_model.zip" if best else f"{name}.zip")
    if not model_path.is_file():
        found = latest_checkpoint(run_dir)
        if found is None:
            raise TrainingError(f"{run_dir}: no model ({model_path.name}) nor checkpoint to load")
        model_path = found[0]
    try:
        model = ALGO_CLASSES[args.algo].load(str(model_path), env=env, device=device)
    except Exception as exc:
        raise TrainingError(f"cannot load model {model_path}: {type(exc).__name__}: {exc}") from None
    normalizer = None
    stats = run_dir / BEST_STATS if best and (run_dir / BEST_STATS).is_file() else run_dir / name / "vecnormalize.pkl"
    if stats.is_file():
        normalizer = VecNormalize.load(str(stats), env)
        normalizer.training = False
    return model, normalizer, args
