"""The ``surgsim`` command: thin, parses arguments and calls the library."""

from __future__ import annotations

from collections import Counter
from typing import Optional

import typer

app = typer.Typer(
    help="surgsim: a reinforcement-learning surgical simulator (Gymnasium + PyBullet).",
    no_args_is_help=True,
    add_completion=False,
)


def _fail(message: str) -> None:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(2)


@app.command("envs")
def envs() -> None:
    """List every registered environment id with a one-line description."""
    import surgsim

    width = max(len(env_id) for env_id in surgsim.REGISTERED)
    for env_id, description in surgsim.REGISTERED.items():
        typer.echo(f"{env_id:<{width}}  {description}")


@app.command("demo")
def demo(
    env: str = typer.Option("surgsim/SurgicalPath-v0", "--env", help="Registered env id."),
    episodes: int = typer.Option(20, "--episodes", "-n", min=1, help="Episodes to run."),
    policy: str = typer.Option("expert", help="'expert' (scripted, good technique) or 'random'."),
    seed: int = typer.Option(0, help="Seed of the first episode; episode i uses seed + i."),
    difficulty: str = typer.Option("medium", help="easy, medium or hard."),
    patient: Optional[str] = typer.Option(None, help="A named fixed patient from the env's spec."),
) -> None:
    """Run a policy for a few seeded episodes and report success, failures and return."""
    import gymnasium as gym
    import numpy as np
    from tqdm import tqdm

    import surgsim

    if env not in surgsim.REGISTERED:
        _fail(f"unknown env id {env!r}; run `surgsim envs` to list them")
    if policy not in ("expert", "random"):
        _fail(f"--policy {policy!r} is not valid; expected 'expert' or 'random'")
    try:
        environment = gym.make(env, difficulty=difficulty)
    except ValueError as exc:
        _fail(str(exc))
    options = {"patient": patient} if patient else None
    outcomes: Counter[str] = Counter()
    returns, lengths = [], []
    for i in tqdm(range(episodes), desc=f"{policy} on {env}", unit="ep"):
        try:
            environment.reset(seed=seed + i, options=options)
        except ValueError as exc:
            _fail(str(exc))
        total, steps, done = 0.0, 0, False
        while not done:
            if policy == "expert":
                action = environment.unwrapped.expert_action()
            else:
                action = environment.action_space.sample()
            _, reward, terminated, truncated, info = environment.step(action)
            total += reward
            steps += 1
            done = terminated or truncated
        outcome = "success" if info["is_success"] else info["failure_reason"] or "time limit"
        outcomes[outcome] += 1
        returns.append(total)
        lengths.append(steps)
    environment.close()
    typer.echo(f"{env}  policy={policy}  episodes={episodes}  difficulty={difficulty}")
    typer.echo(f"success rate: {outcomes['success'] / episodes:.1%}")
    for outcome, count in outcomes.most_common():
        if outcome != "success":
            typer.echo(f"  ended by {outcome}: {count}")
    typer.echo(f"mean return: {np.mean(returns):.2f}   mean length: {np.mean(lengths):.1f} steps")


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
