"""Files written whole or not at all: each writer fills a temporary file beside the target and
renames it into place, so a crash never leaves a half-written file under the target's name."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any, Callable


def atomic_save(path: str | Path, save: Callable[[Path], Any]) -> Path:
    """Call ``save(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    The temporary name keeps ``path``'s suffix (writers that pick a format by extension, such
    as matplotlib, PIL or SB3, see the real one) and holds ``.partial``; it is removed if
    ``save`` fails.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".partial{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        save(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically."""
    return atomic_save(path, lambda tmp: tmp.write_text(text))
