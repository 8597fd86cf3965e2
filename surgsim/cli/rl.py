"""Simulator and agent commands: envs, train, eval, render."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from surgsim._files import atomic_write_json, claim_numbered
from surgsim.cli import _options as options
from surgsim.cli._common import app, check_seed, check_video_out, check_writable, fail, require_extra
from surgsim._extras import MissingExtra
from surgsim.errors import SurgsimError


@app.command("envs")
def envs() -> None:
    """List every registered environment id with a one-line description."""
    import surgsim

    width = max(len(env_id) for env_id in surgsim.REGISTERED)
    for env_id, description in surgsim.REGISTERED.items():
        typer.echo(f"{env_id:<{width}}  {description}")


def _free_name(path: Path) -> Path:
    """``path``, or the next free ``<stem>-2<suffix>``, ``-3``...; reserved at once (created empty)."""
    free, _ = claim_numbered(
        path.parent, path.stem, lambda p: p.touch(exist_ok=False), suffix=path.suffix, bare_first=True
    )
    return free


_PICKLE_NOTE = (
    "SB3 model zips, replay buffers and normalisation statistics are pickles: "
    "load only run folders you made or trust."
)


@app.command("train", help=f"Train an agent (rl_zoo3 flags and log layout). {_PICKLE_NOTE}")
def train_cmd(
    algo: str = options.ALGO,
    env: str = options.ENV,
    n_timesteps: Optional[int] = options.N_TIMESTEPS,
    seed: int = typer.Option(0, "--seed", callback=check_seed),
    log_folder: Path = typer.Option(Path("logs"), "-f", "--log-folder", help="Runs go to <f>/<algo>/<env>_<n>/."),
    env_kwargs: Optional[List[str]] = options.ENV_KWARGS,
    eval_freq: int = options.EVAL_FREQ,
    eval_episodes: int = options.EVAL_EPISODES,
    n_envs: Optional[int] = typer.Option(None, "--n-envs", help="Parallel envs (preset's if unset)."),
    device: str = options.DEVICE,
    hyperparams: Optional[List[str]] = options.HYPERPARAMS,
    save_freq: int = options.SAVE_FREQ,
    resume: Optional[Path] = typer.Option(None, "--resume", help="Continue this run folder from its last checkpoint."),
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="Fine-tune: start from the weights (and normalisation) of this `surgsim pretrain` "
        "or `surgsim train` run of the same algorithm and env; it is evaluated at timestep 0."),
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    require_extra("train", "train")
    if init_from is not None and resume is not None:
        fail("--init-from starts a new run; --resume continues one: give one of them")
    from surgsim.rl.presets import parse_overrides
    from surgsim.rl.train import TrainArgs, train

    try:
        args = TrainArgs(
            algo=algo, env_id=env, n_timesteps=n_timesteps, seed=seed, log_folder=str(log_folder),
            env_kwargs=parse_overrides(env_kwargs, "--env-kwargs"), eval_freq=eval_freq,
            eval_episodes=eval_episodes, n_envs=n_envs, device=device,
            hyperparams=parse_overrides(hyperparams, "--hyperparams"), save_freq=save_freq,
            progress_bar=progress, init_from=None if init_from is None else str(init_from.resolve()),
        )
        run_dir = train(args, resume=resume)
    except SurgsimError as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130)
    import json

    summary = json.loads((run_dir / "summary.json").read_text())
    final = summary["final_eval"]
    typer.echo(f"run: {run_dir}")
    typer.echo(
        f"timesteps {summary['timesteps']}  success {final['success_rate']:.1%}  "
        f"critical-structure failures {final['critical_failure_rate']:.1%}  return {final['mean_return']:.2f}"
    )


@app.command("pretrain", help=(
    "Pretrain an agent from a demonstration dataset (`surgsim dataset collect`): behaviour cloning "
    "with a value warm-up (PPO, SAC) or DQfD (DQN). Writes a run folder that `surgsim eval` "
    f"evaluates and `surgsim train --init-from` fine-tunes. {_PICKLE_NOTE}"))
def pretrain_cmd(
    dataset: str = typer.Argument(..., help="Dataset id, e.g. surgsim/SurgicalPath/expert-v0."),
    algo: str = options.ALGO,
    env: Optional[str] = typer.Option(None, "--env", help="Env id (default: the one the dataset was recorded on)."),
    root: Path = typer.Option(Path("datasets"), "--root", help="Dataset root (MINARI_DATASETS_PATH)."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Passes over the demonstrations (default: 30 for "
                                         "PPO and SAC, 300 for DQN)."),
    batch_size: Optional[int] = typer.Option(None, "--batch-size", help="Default: 256 for PPO and SAC, 64 for DQN."),
    lr: float = typer.Option(1e-3, "--lr", help="Adam learning rate of the pretraining."),
    seed: int = typer.Option(0, "--seed", callback=check_seed),
    log_folder: Path = typer.Option(Path("logs"), "-f", "--log-folder", help="Runs go to <f>/<algo>/<env>_<n>/."),
    env_kwargs: Optional[List[str]] = typer.Option(
        None, "--env-kwargs", help="key:value (repeatable); default: those the dataset was recorded with."),
    hyperparams: Optional[List[str]] = options.HYPERPARAMS,
    eval_episodes: int = options.EVAL_EPISODES,
    device: str = options.DEVICE,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show progress bars."),
) -> None:
    require_extra("train", "pretrain")
    require_extra("datasets", "pretrain")
    from surgsim.rl.presets import parse_overrides
    from surgsim.rl.pretrain import PretrainArgs, pretrain

    check_writable(log_folder, "-f", folder=True)
    try:
        args = PretrainArgs(
            algo=algo, env_id=env, dataset=dataset, root=str(root), epochs=epochs, batch_size=batch_size,
            learning_rate=lr, seed=seed, log_folder=str(log_folder),
            env_kwargs=parse_overrides(env_kwargs, "--env-kwargs") if env_kwargs else None,
            hyperparams=parse_overrides(hyperparams, "--hyperparams"), device=device,
            eval_episodes=eval_episodes, progress_bar=progress,
        )
        run_dir = pretrain(args)
    except SurgsimError as exc:
        fail(str(exc))
    import json

    final = json.loads((run_dir / "summary.json").read_text())["final_eval"]
    typer.echo(f"run: {run_dir}")
    typer.echo(f"pretrained policy: success {final['success_rate']:.1%}  critical-structure failures "
               f"{final['critical_failure_rate']:.1%}  return {final['mean_return']:.2f}")


@app.command("eval", help=f"Evaluate a trained run over seeded episodes. {_PICKLE_NOTE}")
def eval_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `surgsim train`."),
    episodes: int = typer.Option(100, "--episodes", "-n", min=1),
    seed: int = typer.Option(0, "--seed", callback=check_seed, help="Episode i uses seed + i."),
    patient: Optional[str] = typer.Option(None, "--patient", help="Evaluate on one named fixed patient."),
    stochastic: bool = typer.Option(False, "--stochastic", help="Sample actions (default: deterministic)."),
    best: bool = typer.Option(False, "--best", help="Use best_model.zip instead of the final model."),
    device: str = typer.Option("auto", "--device"),
    out: Optional[Path] = typer.Option(
        None, "--out", help="JSON results (default: <run>/eval.json, or eval-2.json... when that exists)."
    ),
    record: Optional[Path] = typer.Option(
        None, "--record", help="Record each episode as a session in this folder (trainee agent-<algo>)."
    ),
    tissue: Optional[str] = typer.Option(
        None, "--tissue", help="Evaluate on this tissue model (rigid, elastic or fem; default: the run's own): "
        "a policy trained on one model, tested on another."
    ),
) -> None:
    import gymnasium as gym
    from tqdm import tqdm

    from surgsim.env import TISSUE_MODELS

    if tissue is not None and tissue not in TISSUE_MODELS:
        fail(f"--tissue {tissue!r}: expected one of {', '.join(TISSUE_MODELS)}")
    require_extra("train", "eval")
    from surgsim.rl.evaluate import model_policy, run_episodes
    from surgsim.rl.train import TrainingError, check_device, load_run
    from surgsim.sessions.recorder import SessionRecorder

    if out is not None:
        check_writable(out, "--out", folder=False)
    if record is not None:
        check_writable(record, "--record", folder=True)
    try:
        check_device(device)
        model, normalizer, args = load_run(run, device=device, best=best)
    except TrainingError as exc:
        fail(str(exc))
    env_kwargs = args.env_kwargs if tissue is None else {**args.env_kwargs, "tissue": tissue}
    env = gym.make(args.env_id, **env_kwargs)
    if record is not None:
        env = SessionRecorder(env, record, f"agent-{args.algo}")
    with tqdm(total=episodes, desc=f"eval {args.env_id}", unit="ep") as bar:
        try:
            result = run_episodes(
                env, model_policy(model, not stochastic, normalizer), episodes, seed, patient,
                on_episode=lambda i, info: bar.update(),
            )
        except SurgsimError as exc:
            env.close()  # a recorder keeps the episode cut short as an incomplete session
            fail(str(exc))
    used = env.unwrapped.tissue
    typer.echo(f"{args.env_id}  {args.algo}  tissue={used}  episodes={episodes}  deterministic={not stochastic}")
    typer.echo(result.summary())
    env.close()
    if record is not None:
        typer.echo(f"recorded {len(env.written)} session(s) in {record}")
    target = out or _free_name(run / "eval.json")  # an earlier evaluation is never replaced
    atomic_write_json(target, {"env_id": args.env_id, "algo": args.algo, "tissue": used, **result.to_dict()})
    typer.echo(f"written: {target}")


@app.command("render", help=f"Write a GIF (or MP4 with the video extra) of a trained policy. {_PICKLE_NOTE}")
def render_cmd(
    run: Path = typer.Argument(..., help="Run folder written by `surgsim train`."),
    out: Path = typer.Option(Path("run.gif"), "--out", help=".gif, or .mp4 with surgsim[video]."),
    episodes: int = typer.Option(1, "--episodes", "-n", min=1),
    seed: int = typer.Option(0, "--seed", callback=check_seed),
    fps: int = typer.Option(20, "--fps", min=1),
    device: str = typer.Option("auto", "--device"),
) -> None:
    import gymnasium as gym

    require_extra("train", "render")
    from surgsim.rl.evaluate import model_policy
    from surgsim.rl.render import record_frames, write_video
    from surgsim.rl.train import TrainingError, check_device, load_run

    check_video_out(out)
    try:
        check_device(device)
        model, normalizer, args = load_run(run, device=device)
    except TrainingError as exc:
        fail(str(exc))
    env = gym.make(args.env_id, render_mode="rgb_array", **args.env_kwargs)
    frames = record_frames(env, model_policy(model, True, normalizer), episodes, seed)
    try:
        path = write_video(frames, out, fps)
    except (SurgsimError, MissingExtra) as exc:
        fail(str(exc))
    typer.echo(f"written: {path} ({len(frames)} frames)")
