"""The ``surgsim`` command (Typer): thin modules that parse arguments and call the library.

Each module registers its commands on the shared ``app``; importing them here wires them up.
"""

from __future__ import annotations

from surgsim.cli._common import app
from surgsim.cli import demo  # noqa: F401  (registers demo)
from surgsim.cli import rl  # noqa: F401  (registers envs, train, eval, render)
from surgsim.cli import sessions  # noqa: F401  (registers play, import, session)
from surgsim.cli import predictor  # noqa: F401  (registers the predictor sub-app)
from surgsim.cli import score  # noqa: F401  (registers score, score calibrate / evaluate)
from surgsim.cli import sweep  # noqa: F401  (registers sweep; Ray is imported only when it runs)
from surgsim.cli import dataset  # noqa: F401  (registers the dataset sub-app)

__all__ = ["app", "main"]


def main() -> None:  # pragma: no cover
    app(prog_name="surgsim")
