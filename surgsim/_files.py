"""Files written whole or not at all: each writer fills a temporary file beside the target and
renames it into place, so a crash never leaves a half-written file under the target's name.
And numbered names (run folders, evaluations, sessions), claimed atomically and never given twice."""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

T = TypeVar("T")


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


def atomic_write_json(path: str | Path, data: Any, indent: int | None = 2, allow_nan: bool = True) -> Path:
    """Write ``data`` as JSON to ``path`` atomically; NumPy values and paths become plain JSON.

    ``allow_nan=False`` refuses NaN and infinity (strict JSON, for files other tools read).
    """
    text = json.dumps(data, indent=indent, default=_plain, allow_nan=allow_nan)
    return atomic_write_text(path, text + "\n")


def _plain(value: Any) -> Any:
    if hasattr(value, "tolist"):  # NumPy scalars and arrays, without importing NumPy here
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def claim_numbered(
    folder: Path,
    stem: str,
    claim: Callable[[Path], T],
    *,
    suffix: str = "",
    sep: str = "-",
    digits: int = 1,
    bare_first: bool = False,
    also: Sequence[str] = (),
) -> tuple[Path, T]:
    """Claim the next numbered name ``<stem><sep><n><suffix>`` in ``folder`` (n zero-padded to
    ``digits``); return it and what ``claim`` returned.

    n starts above the highest number already in ``folder`` (names ending in ``suffix`` or any of
    ``also``; with ``bare_first`` the plain ``<stem><suffix>`` is number 1 and is tried first), so
    a number is never handed out twice, even after its file was removed. ``claim(path)`` must
    create the name exclusively (``Path.mkdir``, ``open(path, "x")``) and raise
    ``FileExistsError`` when another process got there first: the next number is then tried, so
    concurrent writers never share a name.
    """
    ends = "|".join(re.escape(end) for end in (suffix, *also))
    numbered = f"{re.escape(sep)}([0-9]{{{digits},}})"
    pattern = re.compile(f"{re.escape(stem)}(?:{numbered}){'?' if bare_first else ''}(?:{ends})")
    names = os.listdir(folder) if folder.is_dir() else []
    found = [int(m.group(1) or 1) for m in map(pattern.fullmatch, names) if m]
    n = max(found, default=0) + 1
    while True:
        name = f"{stem}{suffix}" if bare_first and n == 1 else f"{stem}{sep}{n:0{digits}d}{suffix}"
        try:
            return folder / name, claim(folder / name)
        except FileExistsError:
            n += 1
