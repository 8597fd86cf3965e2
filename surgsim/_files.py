"""Files written whole or not at all: each writer fills a temporary file beside the target and
renames it into place, so a crash never leaves a half-written file under the target's name."""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any, Callable


def _new_temporary(path: Path) -> Path:
    """Create an empty, unused temporary file beside ``path``.

    Created with mode 0o666 like ``open()``, so the process umask decides the final file's
    permissions (``tempfile.mkstemp`` would make it 0600, private to the writer).
    """
    while True:
        tmp = path.with_name(f".{path.stem}.{secrets.token_hex(4)}.partial{path.suffix}")
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
            return tmp
        except FileExistsError:
            continue


def atomic_save(path: str | Path, save: Callable[[Path], Any]) -> Path:
    """Call ``save(tmp)`` on a temporary path beside ``path``, then rename it to ``path``.

    The temporary name keeps ``path``'s suffix (writers that pick a format by extension, such
    as matplotlib, PIL or SB3, see the real one) and holds ``.partial``; it is removed if
    ``save`` fails. The file gets the permissions ``open()`` would give it (the umask's).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _new_temporary(path)
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
