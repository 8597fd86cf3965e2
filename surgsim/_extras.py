"""Optional parts of surgsim and the pip extra that brings each one.

The core install (envs, sessions, scorer, planner) needs no torch; training and the path
predictor do. Code that needs an extra asks :func:`require` first, so a user without it reads
which extra to install instead of a ``ModuleNotFoundError`` from deep inside a library.
"""

from __future__ import annotations

from importlib.util import find_spec

#: extra name -> the top-level modules it installs
EXTRAS: dict[str, tuple[str, ...]] = {
    "train": ("stable_baselines3", "torch", "tensorboard"),
    "predictor": ("torch", "safetensors"),
    "distributed": ("ray", "stable_baselines3", "torch"),
    "video": ("imageio", "imageio_ffmpeg"),
    "datasets": ("minari",),
}


class MissingExtra(ImportError):
    """An optional part of surgsim was used without the extra that installs it."""


def missing_modules(extra: str) -> list[str]:
    """The modules of ``extra`` that cannot be imported here."""
    return [name for name in EXTRAS[extra] if find_spec(name) is None]


def require(extra: str, purpose: str) -> None:
    """Raise :class:`MissingExtra` naming ``pip install 'surgsim[extra]'`` unless ``extra`` is installed."""
    missing = missing_modules(extra)
    if missing:
        raise MissingExtra(
            f"{purpose} needs the '{extra}' extra (missing: {', '.join(missing)}): "
            f"pip install 'surgsim[{extra}]'"
        )
