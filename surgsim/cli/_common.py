"""The Typer app every command module registers on, and the one way commands fail."""

from __future__ import annotations

from typing import NoReturn

import typer

app = typer.Typer(
    help="surgsim: a reinforcement-learning surgical simulator (Gymnasium + PyBullet).",
    no_args_is_help=True,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        from surgsim import __version__

        typer.echo(f"surgsim {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", is_eager=True, callback=_print_version, help="Print the version and exit."
    ),
) -> None:
    """surgsim: a reinforcement-learning surgical simulator (Gymnasium + PyBullet)."""


def fail(message: str, code: int = 2) -> NoReturn:
    """Print ``error: message`` in red on stderr and exit with ``code``."""
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def require_extra(extra: str, command: str) -> None:
    """Exit 2 naming the pip extra to install when ``command`` cannot run without it."""
    from surgsim._extras import MissingExtra, require

    try:
        require(extra, f"`surgsim {command}`")
    except MissingExtra as exc:
        fail(str(exc))
