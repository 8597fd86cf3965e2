"""``surgsim sweep``: multi-seed and hyperparameter sweeps of ``surgsim train`` on Ray Tune."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from surgsim.cli import _options as options
from surgsim.cli._common import app, check_seed, fail, require_extra
from surgsim.errors import SurgsimError


@app.command("sweep")
def sweep_cmd(
    algo: str = options.ALGO,
    env: str = options.ENV,
    seeds: str = typer.Option("0", "--seeds", help="Seeds of every config: 0-7, 0,3,5 or 0-3,10."),
    n_timesteps: Optional[int] = options.N_TIMESTEPS,
    grid: Optional[List[str]] = typer.Option(
        None, "--grid", help="key=v1,v2,... (repeatable; values are YAML): every combination is a config."
    ),
    search: Optional[List[str]] = typer.Option(
        None, "--search", help="key=uniform|loguniform|randint:low:high (repeatable); needs --num-samples."
    ),
    num_samples: Optional[int] = typer.Option(
        None, "--num-samples", help="Draw this many random configs from --grid lists and --search ranges."
    ),
    sample_seed: int = typer.Option(0, "--sample-seed", callback=check_seed, help="Seed of the random config draw."),
    scheduler: str = typer.Option("none", "--scheduler", help="none (every trial to the end) or asha (early stopping)."),
    cpus_per_trial: float = typer.Option(1.0, "--cpus-per-trial"),
    gpus_per_trial: float = typer.Option(0.0, "--gpus-per-trial"),
    address: Optional[str] = typer.Option(
        None, "--address", help="Join this Ray cluster ('auto': the one on this node); default: start Ray here."
    ),
    log_folder: Path = typer.Option(
        Path("logs"), "-f", "--out", "--log-folder", help="The sweep goes to <f>/sweeps/<name>/ (shared storage on a cluster)."
    ),
    name: Optional[str] = typer.Option(None, "--name", help="Sweep folder name (default <algo>_<env>_<n>)."),
    env_kwargs: Optional[List[str]] = options.ENV_KWARGS,
    hyperparams: Optional[List[str]] = options.HYPERPARAMS,
    eval_freq: int = options.EVAL_FREQ,
    eval_episodes: int = options.EVAL_EPISODES,
    save_freq: int = options.SAVE_FREQ,
    device: str = options.DEVICE,
    resume: Optional[Path] = typer.Option(
        None, "--resume", help="Continue this sweep folder (its sweep.json holds the other options)."
    ),
    verbose: bool = typer.Option(False, "--verbose", help="Show Ray's own logs and progress tables."),
) -> None:
    """Run every (config, seed) as a Ray Tune trial of `surgsim train`; write a table, a plot and the best preset.

    Each trial reports every evaluation (--eval-freq) to Ray; --hyperparams stay fixed, --grid and --search vary.

    Exit status: 0 when every trial finished, 1 when some failed or did not finish, 2 on bad input.
    --resume loads Ray's experiment state and the trials' SB3 checkpoints, which are pickles:
    resume only sweep folders you made or trust.
    """
    require_extra("distributed", "sweep")
    from surgsim.rl.presets import parse_overrides
    from surgsim.rl.sweep import SweepSpec, config_summary, parse_grid, parse_search, parse_seeds, run_sweep
    from surgsim.rl.train import TrainArgs

    try:
        if resume is not None:
            outcome = run_sweep(resume=resume, address=address, verbose=verbose)
        else:
            spec = SweepSpec(
                seeds=parse_seeds(seeds), grid=parse_grid(grid), search=parse_search(search),
                num_samples=num_samples, sample_seed=sample_seed, cpus_per_trial=cpus_per_trial,
                gpus_per_trial=gpus_per_trial, scheduler=scheduler, name=name,
                template=TrainArgs(
                    algo=algo, env_id=env, n_timesteps=n_timesteps, log_folder=str(log_folder),
                    hyperparams=parse_overrides(hyperparams, "--hyperparams"),
                    env_kwargs=parse_overrides(env_kwargs, "--env-kwargs"), eval_freq=eval_freq,
                    eval_episodes=eval_episodes, save_freq=save_freq, device=device,
                ),
            )
            outcome = run_sweep(spec, address=address, verbose=verbose)
    except SurgsimError as exc:
        fail(str(exc))

    typer.echo(f"sweep: {outcome.sweep_dir}")
    for row in config_summary(outcome):
        statuses = ", ".join(f"{n} {s}" for s, n in row["statuses"].items())
        line = f"  c{row['config']}: {row['label']}  [{statuses}]"
        if row["success_rate"] is not None:
            (success, spread), (critical, _), (ret, _) = (row[k] for k in ("success_rate", "critical_failure_rate", "mean_return"))
            line += f"  success {success:.1%} +- {spread:.1%}  critical failures {critical:.1%}  return {ret:.2f}"
        typer.echo(line)
    typer.echo(f"table: {outcome.table}")
    if outcome.plot is not None:
        typer.echo(f"plot: {outcome.plot}")
    if outcome.best_preset is not None:
        typer.echo(f"best: c{outcome.best_config_id}, preset {outcome.best_preset}")
    for trial in outcome.failed:
        typer.secho(f"failed: {trial.name} ({trial.hyperparams}, seed {trial.seed}): {trial.error}", fg=typer.colors.RED, err=True)
    if outcome.unfinished:
        typer.secho(
            f"{len(outcome.unfinished)} trial(s) did not finish; continue with surgsim sweep --resume {outcome.sweep_dir}",
            fg=typer.colors.YELLOW, err=True,
        )
    if outcome.failed or outcome.unfinished:
        raise typer.Exit(1)
