"""The Typer app every command module registers on, and the one way commands fail."""

from __future__ import annotations

from typing import NoReturn

import typer

app = typer.Typer(
    help="surgsim: a reinforcement-learning surgical simulator (Gymnasium + PyBullet).",
    no_args_is_help=True,
    add_completion=False,
)


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)
