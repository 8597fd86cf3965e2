"""The Typer app every command module registers on, and the one way commands fail."""

from __future__ import annotations

import tempfile
from pathlib import Path
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


def check_writable(path: Path, option: str, folder: bool) -> None:
    """Fail at once, not after a long run, when ``path`` (a folder, or a file's place) cannot be written.

    The nearest existing folder is probed with a real temporary file: permission bits say nothing
    to root, and nothing about read-only or virtual file systems.
    """
    if not folder and path.is_dir():
        fail(f"{option} {path} is a folder; give a file name")
    existing = path if folder else path.parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        fail(f"{option} {path}: {existing} is not a folder")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as exc:
        fail(f"{option} {path}: cannot write in {existing} ({exc.strerror or exc})")


def check_video_out(out: Path) -> None:
    """Refuse a video output (``--out``) that could not be written, before any episode runs."""
    from surgsim._extras import MissingExtra
    from surgsim.errors import SurgsimError
    from surgsim.rl.render import check_video_target

    try:
        check_video_target(out)
    except (SurgsimError, MissingExtra) as exc:
        fail(str(exc))
    check_writable(out, "--out", folder=False)


def check_seed(ctx: typer.Context, param: typer.CallbackParam, value: int | None) -> int | None:
    """A ``--seed`` option's callback: refuse a seed the libraries below would crash on."""
    from surgsim.env import MAX_SEED

    if value is not None and not 0 <= value <= MAX_SEED:
        fail(f"{param.opts[0]} {value}: expected a whole number from 0 to {MAX_SEED}")
    return value


def check_difficulty(ctx: typer.Context, param: typer.CallbackParam, value: str) -> str:
    """A ``--difficulty`` option's callback: one of the spec's difficulties."""
    from surgsim.tasks.spec import DIFFICULTIES

    if value not in DIFFICULTIES:
        fail(f"{param.opts[0]} {value!r}: expected one of {', '.join(DIFFICULTIES)}")
    return value
