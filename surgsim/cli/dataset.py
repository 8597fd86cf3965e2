"""``surgsim dataset collect | from-sessions``: demonstration datasets in Minari's format."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from surgsim.cli import _options as options
from surgsim.cli._common import app, check_seed, check_writable, fail, require_extra
from surgsim.errors import SurgsimError

dataset_app = typer.Typer(
    help=(
        "Demonstration datasets in Minari's format (Arrow storage), for offline RL and pretraining: "
        "read them with minari.load_dataset('surgsim/<Env>/<name>-v0') and MINARI_DATASETS_PATH=<out>."
    ),
    no_args_is_help=True,
)
app.add_typer(dataset_app, name="dataset")

_OUT = typer.Option(Path("datasets"), "--out", help="Dataset root (MINARI_DATASETS_PATH); the dataset goes to "
                    "<out>/surgsim/<Env>/<name>-v0.")


@dataset_app.command("collect")
def collect_cmd(
    env: str = options.ENV,
    policy: str = typer.Option("expert", "--policy", help="expert (the scripted expert) or a run folder of "
                               "`surgsim train` / `surgsim pretrain` (its agent, deterministic)."),
    impairment: float = typer.Option(0.0, "--impairment", help="Degrade the expert, 0 (none) to 1: action noise "
                                     "(SD 0.6 x impairment, direction kept) and hesitations "
                                     "(p = 0.15 x impairment per step)."),
    episodes: int = typer.Option(100, "-n", "--episodes", min=1, help="Episodes; episode i uses seed + i."),
    seed: int = typer.Option(0, "--seed", callback=check_seed),
    name: Optional[str] = typer.Option(None, "--name", help="Dataset name (default: expert, impaired<percent> "
                                       "or agent)."),
    env_kwargs: Optional[List[str]] = options.ENV_KWARGS,
    out: Path = _OUT,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Roll out the scripted expert (optionally degraded) or a trained agent and write every step
    (observations, actions, rewards, terminations, truncations, seeds, outcome infos) as a Minari
    dataset with the env spec and reference scores (random and expert mean returns)."""
    require_extra("datasets", "dataset collect")
    from surgsim.datasets import collect
    from surgsim.rl.presets import parse_overrides

    if policy != "expert":
        require_extra("train", "dataset collect --policy RUN_DIR")
        if impairment:
            fail("--impairment degrades the scripted expert only; drop it with --policy RUN_DIR")
    check_writable(out, "--out", folder=True)
    try:
        folder = collect(env, policy, episodes, out, impairment=impairment, name=name, seed=seed,
                         env_kwargs=parse_overrides(env_kwargs, "--env-kwargs"), progress=progress)
    except SurgsimError as exc:
        fail(str(exc))
    typer.echo(f"dataset: {folder}")


@dataset_app.command("from-sessions")
def from_sessions_cmd(
    sessions: Path = typer.Argument(..., help="Folder of sessions recorded with observations "
                                    "(SessionRecorder(record_obs=True)), all of one env id."),
    name: str = typer.Option("sessions", "--name", help="Dataset name."),
    out: Path = _OUT,
    progress: bool = typer.Option(True, "--progress/--no-progress", help="Show a progress bar."),
) -> None:
    """Turn recorded sessions (trainees at the keyboard, agents, experts) into a Minari dataset:
    one episode per session."""
    require_extra("datasets", "dataset from-sessions")
    from surgsim.datasets import from_sessions

    if not sessions.exists():
        fail(f"{sessions}: no such file or folder")
    check_writable(out, "--out", folder=True)
    try:
        folder = from_sessions(sessions, out, name=name, progress=progress)
    except SurgsimError as exc:
        fail(str(exc))
    typer.echo(f"dataset: {folder}")
