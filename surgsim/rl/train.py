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

import json
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import gymnasium as gym
import numpy as np
import yaml
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ProgressBarCallback
from stable_baselines3.common.env_util import make_vec_env
from stable_baselines3.common.vec_env import VecEnv, VecNormalize

import surgsim  # noqa: F401  (registers the ids)
from surgsim._files import atomic_save, atomic_write_text
from surgsim.rl.evaluate import EvalResult, model_policy, run_episodes
from surgsim.rl.presets import ALGOS, RUN_KEYS, load_preset

ALGO_CLASSES: dict[str, type[BaseAlgorithm]] = {"ppo": PPO, "dqn": DQN, "sac": SAC}
_CHECKPOINT = re.compile(r"rl_model_(\d+)_steps\.zip$")
#: VecNormalize statistics saved with best_model.zip (the final ones differ)
BEST_STATS = "best_vecnormalize.pkl"


class TrainingError(ValueError):
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


def env_name(env_id: str) -> str:
    return env_id.replace("/", "-")


def new_run_dir(log_folder: str | Path, algo: str, env_id: str) -> Path:
    """Next free ``<log folder>/<algo>/<env name>_<n>`` (n counts from 1, like rl_zoo3)."""
    base = Path(log_folder) / algo
    prefix = env_name(env_id) + "_"
    taken = [
        int(p.name[len(prefix):])
        for p in base.glob(prefix + "*")
        if p.name[len(prefix):].isdigit()
    ] if base.is_dir() else []
    run = base / f"{prefix}{max(taken, default=0) + 1}"
    run.mkdir(parents=True)
    return run


def check_env_and_algo(algo: str, env_id: str, env_kwargs: dict[str, Any]) -> gym.Env:
    """Make one env, failing with a message that says what to use instead."""
    if algo not in ALGO_CLASSES:
        raise TrainingError(f"unknown algorithm {algo!r}; expected one of {list(ALGOS)}")
    if env_id not in gym.registry:
        raise TrainingError(f"unknown env id {env_id!r}; `surgsim envs` lists the registered ids")
    try:
        env = gym.make(env_id, **env_kwargs)
    except (TypeError, ValueError) as exc:
        raise TrainingError(f"bad --env-kwargs for {env_id}: {exc}") from None
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


class SurgicalEvalCallback(BaseCallback):
    """Periodic seeded evaluation: success rate, failure breakdown, return; keeps the best model."""

    def __init__(
        self, args: TrainArgs, run_dir: Path, eval_env: gym.Env,
        on_evaluation: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        super().__init__()
        self.args = args
        self.on_evaluation = on_evaluation
        self.run_dir = run_dir
        self.eval_env = eval_env
        self.every = max(args.eval_freq, 1)
        self.last_eval = 0
        self.best: tuple[float, float] | None = None
        self.history: list[dict[str, Any]] = []
        jsonl = run_dir / "evaluations.jsonl"
        if jsonl.is_file():
            self.history = [json.loads(line) for line in jsonl.read_text().splitlines() if line]
            if self.history:
                self.last_eval = self.history[-1]["timesteps"]
                self.best = max((h["success_rate"], h["mean_return"]) for h in self.history)

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
            seed=10_000,  # evaluation patients are apart from the training seeds
        )
        for key in ("success_rate", "critical_failure_rate", "mean_return", "mean_length"):
            self.logger.record(f"eval/{key}", getattr(result, key))
        record = {"timesteps": self.num_timesteps, "wall_time": time.time(), **result.to_dict()}
        self.history.append(record)
        with open(self.run_dir / "evaluations.jsonl", "a") as fh:
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


class CheckpointSaver(BaseCallback):
    """Every ``save_freq`` steps: model, replay buffer and normalisation statistics, atomically."""

    def __init__(self, run_dir: Path, save_freq: int) -> None:
        super().__init__()
        self.dir = run_dir / "checkpoints"
        self.every = max(save_freq, 1)
        self.last = 0

    def _init_callback(self) -> None:
        self.dir.mkdir(exist_ok=True)
        self.last = self.num_timesteps

    def _on_step(self) -> bool:
        if self.num_timesteps - self.last >= self.every:
            self.save()
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
        path = self.dir / f"rl_model_{steps}_steps.zip"
        atomic_save(path, model.save)  # last: a model file means its companions are complete
        return path


def _make_vec_env(args: TrainArgs, run_dir: Path, n_envs: int, normalize: bool | dict) -> VecEnv:
    venv = make_vec_env(
        args.env_id,
        n_envs=n_envs,
        seed=args.seed,
        env_kwargs=args.env_kwargs,
        monitor_dir=str(run_dir / "monitor"),
        monitor_kwargs={"info_keywords": ("is_success",)},
    )
    if normalize:
        options = normalize if isinstance(normalize, dict) else {}
        venv = VecNormalize(venv, gamma=args.hyperparams.get("gamma", 0.99), **options)
    return venv


def latest_checkpoint(run_dir: Path) -> tuple[Path, int] | None:
    found = [
        (p, int(m.group(1)))
        for p in (run_dir / "checkpoints").glob("rl_model_*_steps.zip")
        if (m := _CHECKPOINT.search(p.name))
    ]
    return max(found, key=lambda item: item[1]) if found else None


def train(
    args: TrainArgs, resume: str | Path | None = None,
    on_evaluation: Callable[[dict[str, Any]], None] | None = None,
) -> Path:
    """Train (or resume) a run; returns its folder. Ctrl-C saves a checkpoint first.

    ``on_evaluation`` receives each evaluation record as it is written (a sweep reports it to Ray).
    """
    if resume is not None:
        run_dir, args, checkpoint = _prepare_resume(Path(resume), args)
    else:
        check_env_and_algo(args.algo, args.env_id, args.env_kwargs).close()
        run_dir, checkpoint = None, None
    preset = load_preset(args.algo, args.env_id)
    preset.update(args.hyperparams)
    n_timesteps = int(args.n_timesteps or preset.get("n_timesteps", 100_000))
    n_envs = int(args.n_envs or preset.get("n_envs", 1))
    normalize = preset.get("normalize", False)
    algo_kwargs = {k: v for k, v in preset.items() if k not in RUN_KEYS}

    if run_dir is None:
        run_dir = new_run_dir(args.log_folder, args.algo, args.env_id)
        meta = run_dir / env_name(args.env_id)
        meta.mkdir()
        args_record = asdict(args) | {"n_timesteps": n_timesteps, "n_envs": n_envs}
        atomic_write_text(meta / "args.yml", yaml.safe_dump(args_record, sort_keys=True))
        config = preset | {"n_timesteps": n_timesteps, "n_envs": n_envs}
        atomic_write_text(meta / "config.yml", yaml.safe_dump(config, sort_keys=True))

    venv = _make_vec_env(args, run_dir, n_envs, normalize)
    algo_class = ALGO_CLASSES[args.algo]
    if checkpoint is None:
        policy = _policy_for(preset.get("policy", "MlpPolicy"), venv)
        model = algo_class(
            policy, venv, seed=args.seed, device=args.device, verbose=args.verbose,
            tensorboard_log=str(run_dir / "tb"), **algo_kwargs,
        )
    else:
        model = _load_checkpoint(algo_class, checkpoint, venv, args, run_dir)

    eval_env = gym.make(args.env_id, **args.env_kwargs)
    evaluator = SurgicalEvalCallback(args, run_dir, eval_env, on_evaluation)
    saver = CheckpointSaver(run_dir, args.save_freq)
    callbacks: list[BaseCallback] = [evaluator, saver]
    if args.progress_bar:
        callbacks.append(ProgressBarCallback())
    remaining = n_timesteps - model.num_timesteps
    start = time.time()
    try:
        if remaining > 0:
            model.learn(
                remaining, callback=CallbackList(callbacks), reset_num_timesteps=checkpoint is None,
                tb_log_name="run",
            )
    except KeyboardInterrupt:
        path = saver.save()
        print(f"\ninterrupted: checkpoint saved to {path}; continue with --resume {run_dir}")
        raise
    finally:
        venv.close()
    if saver.last != model.num_timesteps:
        saver.save()  # so that --resume with a larger -n continues exactly from here
    if not evaluator.history or evaluator.history[-1]["timesteps"] != model.num_timesteps:
        evaluator.evaluate()
    eval_env.close()
    _finish(model, args, run_dir, evaluator.history, time.time() - start)
    return run_dir


def read_run_args(run_dir: Path) -> TrainArgs:
    """The arguments a run folder was trained with (its ``<env>/args.yml``)."""
    if not run_dir.is_dir():
        raise TrainingError(f"run folder {run_dir} does not exist")
    records = list(run_dir.glob("*/args.yml"))
    if not records:
        raise TrainingError(f"{run_dir} is not a surgsim run folder (no <env>/args.yml)")
    try:
        return TrainArgs(**yaml.safe_load(records[0].read_text()))
    except (TypeError, yaml.YAMLError) as exc:
        raise TrainingError(f"{records[0]}: unreadable run arguments ({exc})") from None


def _prepare_resume(run_dir: Path, overrides: TrainArgs) -> tuple[Path, TrainArgs, Path]:
    stored = read_run_args(run_dir)
    if overrides.n_timesteps:
        stored.n_timesteps = overrides.n_timesteps
    stored.progress_bar = overrides.progress_bar
    stored.device = overrides.device
    found = latest_checkpoint(run_dir)
    if found is None:
        raise TrainingError(f"{run_dir}: no checkpoint to resume from (checkpoints/rl_model_*_steps.zip)")
    return run_dir, stored, found[0]


def _load_checkpoint(algo_class, checkpoint: Path, venv: VecEnv, args: TrainArgs, run_dir: Path):
    """Load a checkpoint and its companions. SB3 zips are pickles: only the user's own run folder."""
    steps = int(_CHECKPOINT.search(checkpoint.name).group(1))
    folder = checkpoint.parent
    try:
        if isinstance(venv, VecNormalize):
            stats = folder / f"vecnormalize_{steps}_steps.pkl"
            loaded = VecNormalize.load(str(stats), venv.venv)
            venv.obs_rms, venv.ret_rms = loaded.obs_rms, loaded.ret_rms
        model = algo_class.load(
            str(checkpoint), env=venv, device=args.device, tensorboard_log=str(run_dir / "tb")
        )
        buffer = folder / f"replay_buffer_{steps}_steps.pkl"
        if hasattr(model, "replay_buffer") and buffer.is_file():
            model.load_replay_buffer(str(buffer))
    except Exception as exc:  # a corrupt or truncated file shows up as many error types
        raise TrainingError(f"cannot load checkpoint {checkpoint}: {type(exc).__name__}: {exc}") from None
    return model


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
    atomic_write_text(run_dir / "summary.json", json.dumps(summary, indent=2))


def load_run(run_dir: str | Path, device: str = "auto", best: bool = False):
    """Model, VecNormalize statistics (or None) and args of a finished run.

    SB3 model zips and the statistics are pickles: load only runs you trust.
    """
    run_dir = Path(run_dir)
    args = read_run_args(run_dir)
    name = env_name(args.env_id)
    model_path = run_dir / ("best_model.zip" if best else f"{name}.zip")
    if not model_path.is_file():
        found = latest_checkpoint(run_dir)
        if found is None:
            raise TrainingError(f"{run_dir}: no model ({model_path.name}) nor checkpoint to load")
        model_path = found[0]
    try:
        model = ALGO_CLASSES[args.algo].load(str(model_path), device=device)
    except Exception as exc:
        raise TrainingError(f"cannot load model {model_path}: {type(exc).__name__}: {exc}") from None
    normalizer = None
    stats = run_dir / BEST_STATS if best and (run_dir / BEST_STATS).is_file() else run_dir / name / "vecnormalize.pkl"
    if stats.is_file():
        holder = make_vec_env(args.env_id, n_envs=1, env_kwargs=args.env_kwargs)
        normalizer = VecNormalize.load(str(stats), holder)
        normalizer.training = False
    return model, normalizer, args
