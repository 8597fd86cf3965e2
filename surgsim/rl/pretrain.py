"""Pretraining from demonstrations, written as a run folder that ``surgsim train --init-from`` fine-tunes.

- PPO: behaviour cloning of the policy (the negative log-likelihood of the demonstrated actions;
  the Gaussian's log-std is left at its initial value, so fine-tuning still explores) and a
  value-function warm-up: the critic regresses the demonstrations' discounted returns-to-go, so
  the first policy-gradient updates are not driven by a random critic that would undo the clone.
- SAC: the actor's deterministic action regresses the demonstrated action (mean squared error in
  the squashed action space) and both critics regress the returns-to-go of the demonstrated
  actions (the target critics are then copied from them).
- DQN, after DQfD (:mod:`surgsim.rl.dqfd`): the one-step and n-step TD losses on the
  demonstrations plus the supervised large-margin loss (L2 regularisation by weight decay 1e-5),
  with the target network updated every ``target_update`` gradient steps; fine-tuning keeps
  these losses on the demonstrations (:class:`surgsim.rl.dqfd.DQfD`).

Returns-to-go treat a truncated episode's end as zero value (a lower bound). When the preset
normalises observations or rewards (VecNormalize), the statistics are fitted to the
demonstrations first and the networks learn in those normalised units, as fine-tuning will.

The run folder has ``surgsim train``'s layout (``<env>.zip``, ``<env>/args.yml``,
``vecnormalize.pkl``, ``summary.json`` with the cloned policy's evaluation at timestep 0), so
``surgsim eval``, ``surgsim render`` and ``surgsim train --init-from`` take it, plus
``pretrain.json`` (losses per epoch) and ``pretrain_loss.png``.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.vec_env import VecNormalize
from tqdm import tqdm

from surgsim._files import atomic_write_json
from surgsim.datasets.store import Demonstrations, load_demonstrations
from surgsim.rl.dqfd import DemoLoss
from surgsim.rl.evaluate import model_policy, run_episodes
from surgsim.rl.presets import ALGOS
from surgsim.rl.train import (
    EVAL_SEED, PRETRAIN_RECORD, TrainArgs, TrainingError, check_counts, _finish, _start, check_args, check_env_and_algo, new_run_dir, run_setup,
)

#: pretraining passes and batch size by algorithm: DQfD needs more, smaller steps (measured on
#: NeedleReachDiscrete, 40 expert episodes: batch 256 x 30 epochs cloned 0-10 % success, batch
#: 64 x 100 epochs 40-60 %; SurgicalPathDiscrete hard, 100 expert episodes, batch 64: 100 epochs
#: 75 %, 300 epochs 85 %, about a minute on 2 cores)
DEFAULT_EPOCHS = {"ppo": 30, "sac": 30, "dqn": 300}
DEFAULT_BATCH_SIZE = {"ppo": 256, "sac": 256, "dqn": 64}


@dataclass
class PretrainArgs:
    algo: str
    #: None: the env id the dataset was recorded on
    env_id: str | None
    dataset: str
    root: str = "datasets"
    #: None: the algorithm's default (:data:`DEFAULT_EPOCHS`, :data:`DEFAULT_BATCH_SIZE`)
    epochs: int | None = None
    batch_size: int | None = None
    learning_rate: float = 1e-3
    seed: int = 0
    log_folder: str = "logs"
    #: None: the env kwargs the dataset was recorded with (e.g. its difficulty)
    env_kwargs: dict[str, Any] | None = None
    hyperparams: dict[str, Any] = field(default_factory=dict)
    device: str = "auto"
    eval_episodes: int = 20
    target_update: int = 200  # DQN: gradient steps between target-network copies
    progress_bar: bool = True


def _check(args: PretrainArgs, demos: Demonstrations) -> None:
    check_counts({"--epochs": args.epochs, "--batch-size": args.batch_size, "--target-update": args.target_update})
    if not (np.isfinite(args.learning_rate) and args.learning_rate > 0):
        raise TrainingError(f"--lr {args.learning_rate!r}: must be a positive number")
    recorded = demos.env_spec.id if demos.env_spec is not None else None
    if recorded != args.env_id:
        raise TrainingError(f"dataset {demos.dataset} was recorded on {recorded}, not {args.env_id}")


def recorded_env_kwargs(spec: Any) -> dict[str, Any]:
    """The keyword arguments a dataset's env was made with, beyond its id's registered ones."""
    registered = gym.spec(spec.id).kwargs
    return {k: v for k, v in spec.kwargs.items() if k not in registered or registered[k] != v}


def pretrain(args: PretrainArgs) -> Path:
    """Pretrain on the dataset, evaluate the result, and write the run folder; returns it."""
    if args.algo not in DEFAULT_EPOCHS:
        raise TrainingError(f"unknown algorithm {args.algo!r}; expected one of {list(ALGOS)}")
    args.epochs = DEFAULT_EPOCHS[args.algo] if args.epochs is None else args.epochs
    args.batch_size = DEFAULT_BATCH_SIZE[args.algo] if args.batch_size is None else args.batch_size
    demos = load_demonstrations(args.root, args.dataset)
    if args.env_id is None:
        if demos.env_spec is None:
            raise TrainingError(f"dataset {args.dataset} records no env; give --env")
        args.env_id = demos.env_spec.id
    _check(args, demos)
    if args.env_kwargs is None:
        args.env_kwargs = recorded_env_kwargs(demos.env_spec)
    train_args = TrainArgs(algo=args.algo, env_id=args.env_id, seed=args.seed, log_folder=args.log_folder,
                           env_kwargs=args.env_kwargs, eval_episodes=args.eval_episodes, device=args.device,
                           hyperparams=args.hyperparams, progress_bar=args.progress_bar)
    check_args(train_args)
    env = check_env_and_algo(args.algo, args.env_id, args.env_kwargs)
    try:
        if env.observation_space.shape != demos.observations.shape[1:]:
            raise TrainingError(
                f"dataset {demos.dataset} has observations of shape {demos.observations.shape[1:]}, "
                f"{args.env_id} with env kwargs {args.env_kwargs or 'none'} has {env.observation_space.shape}"
            )
        setup = run_setup(train_args)
        run_dir, made = new_run_dir(args.log_folder, args.algo, args.env_id)
        try:
            venv, model = _start(train_args, run_dir, setup)
        except BaseException:
            shutil.rmtree(made, ignore_errors=True)
            raise
        try:
            torch.manual_seed(args.seed)
            start = time.time()
            gamma = float(model.gamma)  # the preset's, passed to the model
            obs, next_obs, rewards = _normalised(venv, demos)
            learn = {PPO: _clone_ppo, SAC: _clone_sac, DQN: _dqfd}[type(model)]
            history = learn(model, demos, obs, next_obs, rewards, gamma, args)
            result = run_episodes(env, model_policy(model, deterministic=True, normalizer=model.get_vec_normalize_env()),
                                  args.eval_episodes, seed=EVAL_SEED)
            record = {"timesteps": 0, "wall_time": time.time(), **result.to_dict()}
            _finish(model, train_args, run_dir, [record], time.time() - start)
            atomic_write_json(run_dir / PRETRAIN_RECORD, {
                "args": asdict(args),
                "dataset": {"id": demos.dataset, "root": str(Path(args.root).resolve()), "episodes": demos.episodes,
                            "transitions": len(demos), "success_rate": demos.success_rate},
                "history": history, "evaluation": record,
            })
            _loss_figure(history, run_dir / "pretrain_loss.png", f"{args.algo.upper()} pretraining on {demos.dataset}")
        except BaseException:
            shutil.rmtree(made, ignore_errors=True)  # nothing half-made: the run, nor the log folders made for it
            raise
        finally:
            venv.close()
    finally:
        env.close()
    return run_dir


# --------------------------------------------------------------------------- normalisation
def _normalised(venv, demos: Demonstrations) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Observations and rewards as the model will see them in fine-tuning: when ``venv``
    normalises, its statistics are first fitted to the demonstrations (the observations, and
    the running discounted return, at VecNormalize's own gamma, that it scales rewards by)."""
    if not isinstance(venv, VecNormalize):
        return demos.observations, demos.next_observations, demos.rewards
    if venv.norm_obs:
        venv.obs_rms.update(demos.observations)
    if venv.norm_reward:
        running, returns = 0.0, np.empty(len(demos.rewards))
        for i, r in enumerate(demos.rewards):
            running = running * venv.gamma + r
            returns[i] = running
            if demos.terminations[i] or demos.truncations[i]:
                running = 0.0
        venv.ret_rms.update(returns)
    return (venv.normalize_obs(demos.observations), venv.normalize_obs(demos.next_observations),
            venv.normalize_reward(demos.rewards))


def _batches(n: int, batch_size: int, rng: np.random.Generator):
    order = rng.permutation(n)
    for start in range(0, n, batch_size):
        yield order[start:start + batch_size]


def _epochs(args: PretrainArgs, what: str):
    return tqdm(range(args.epochs), desc=what, unit="epoch", disable=not args.progress_bar)


# --------------------------------------------------------------------------- PPO
def _clone_ppo(model: PPO, demos, obs, next_obs, rewards, gamma, args) -> list[dict[str, float]]:
    policy, device = model.policy, model.device
    targets = demos.returns_to_go(gamma, rewards)
    params = [p for name, p in policy.named_parameters() if name != "log_std"]
    optimizer = torch.optim.Adam(params, lr=args.learning_rate)
    o = torch.as_tensor(obs, device=device)
    a = torch.as_tensor(demos.actions, device=device)
    v = torch.as_tensor(targets, dtype=torch.float32, device=device)
    rng, history = np.random.default_rng(args.seed), []
    policy.set_training_mode(True)
    for epoch in _epochs(args, "behaviour cloning (PPO)"):
        sums = np.zeros(2)
        for idx in _batches(len(o), args.batch_size, rng):
            i = torch.as_tensor(idx, device=device)
            values, log_prob, _ = policy.evaluate_actions(o[i], a[i])
            nll = -log_prob.mean()
            value_loss = F.mse_loss(values.flatten(), v[i])
            optimizer.zero_grad()
            (nll + value_loss).backward()
            optimizer.step()
            sums += [nll.item() * len(idx), value_loss.item() * len(idx)]
        history.append({"epoch": epoch + 1, "nll": sums[0] / len(o), "value_mse": sums[1] / len(o)})
    policy.set_training_mode(False)
    return history


# --------------------------------------------------------------------------- SAC
def _clone_sac(model: SAC, demos, obs, next_obs, rewards, gamma, args) -> list[dict[str, float]]:
    device = model.device
    targets = torch.as_tensor(demos.returns_to_go(gamma, rewards), dtype=torch.float32, device=device)
    o = torch.as_tensor(obs, device=device)
    a = torch.as_tensor(np.clip(model.policy.scale_action(demos.actions), -1.0, 1.0), dtype=torch.float32,
                        device=device)
    actor_opt = torch.optim.Adam(model.actor.parameters(), lr=args.learning_rate)
    critic_opt = torch.optim.Adam(model.critic.parameters(), lr=args.learning_rate)
    rng, history = np.random.default_rng(args.seed), []
    model.policy.set_training_mode(True)
    for epoch in _epochs(args, "behaviour cloning (SAC)"):
        sums = np.zeros(2)
        for idx in _batches(len(o), args.batch_size, rng):
            i = torch.as_tensor(idx, device=device)
            mean, _, _ = model.actor.get_action_dist_params(o[i])
            actor_loss = F.mse_loss(torch.tanh(mean), a[i])
            actor_opt.zero_grad()
            actor_loss.backward()
            actor_opt.step()
            q_values = model.critic(o[i], a[i])
            critic_loss = sum(F.mse_loss(q.flatten(), targets[i]) for q in q_values) / len(q_values)
            critic_opt.zero_grad()
            critic_loss.backward()
            critic_opt.step()
            sums += [actor_loss.item() * len(idx), critic_loss.item() * len(idx)]
        history.append({"epoch": epoch + 1, "action_mse": sums[0] / len(o), "q_mse": sums[1] / len(o)})
    model.critic_target.load_state_dict(model.critic.state_dict())
    model.policy.set_training_mode(False)
    return history


# --------------------------------------------------------------------------- DQN (DQfD)
def _dqfd(model: DQN, demos, obs, next_obs, rewards, gamma, args) -> list[dict[str, float]]:
    q_net, target = model.q_net, model.q_net_target
    optimizer = torch.optim.Adam(q_net.parameters(), lr=args.learning_rate, weight_decay=1e-5)
    # the observations are already normalised (see _normalised): the loss takes them as they are
    losses = DemoLoss(replace(demos, observations=obs, next_observations=next_obs), rewards, gamma, model.device)
    rng, history, steps = np.random.default_rng(args.seed), [], 0
    model.policy.set_training_mode(True)
    for epoch in _epochs(args, "DQfD pretraining (DQN)"):
        sums = np.zeros(3)
        for idx in _batches(len(losses), args.batch_size, rng):
            td1, tdn, margin = losses(q_net, target, idx)
            optimizer.zero_grad()
            (td1 + tdn + margin).backward()
            optimizer.step()
            steps += 1
            if steps % args.target_update == 0:
                target.load_state_dict(q_net.state_dict())
            sums += [td1.item() * len(idx), tdn.item() * len(idx), margin.item() * len(idx)]
        history.append({"epoch": epoch + 1, "td_1": sums[0] / len(losses), "td_n": sums[1] / len(losses),
                        "margin": sums[2] / len(losses)})
    target.load_state_dict(q_net.state_dict())
    model.policy.set_training_mode(False)
    return history


# --------------------------------------------------------------------------- figure
def _loss_figure(history: list[dict[str, float]], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from surgsim._files import atomic_save

    figure, ax = plt.subplots(figsize=(6, 3.5))
    epochs = [h["epoch"] for h in history]
    for key in history[0]:
        if key != "epoch":
            ax.plot(epochs, [h[key] for h in history], label=key.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (per transition)")
    ax.set_yscale("symlog", linthresh=1e-3)
    ax.set_title(title, fontsize=10)
    ax.legend()
    figure.tight_layout()
    atomic_save(path, lambda p: figure.savefig(p, dpi=100, format="png"))
    plt.close(figure)
