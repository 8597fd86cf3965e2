"""Locate the project's data folders (envs/, agents/, assets/).

In a wheel they live in ``surgsim/_data/``; in a source checkout (editable install or
running from the repository) they are the top-level folders beside the package.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def data_dir(kind: str) -> Path:
    """Return the folder holding ``kind`` ("envs", "agents" or "assets")."""
    for candidate in (_PACKAGE / "_data" / kind, _PACKAGE.parent / kind):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(
        f"surgsim data folder '{kind}' not found in {_PACKAGE / '_data'} or {_PACKAGE.parent}; "
        "the installation is incomplete, reinstall with `pip install .`"
    )


def asset_path(relative: str) -> Path:
    """Path of a file under assets/, e.g. ``asset_path("instruments/scalpel.urdf")``."""
    path = data_dir("assets") / relative
    if not path.is_file():
        raise FileNotFoundError(f"surgsim asset not found: {path}")
    return path
