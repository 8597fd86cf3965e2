"""The base class of every error surgsim raises for input it refuses (specs, sessions, rubrics,
datasets, training options...), so that a caller can catch the package's own errors, with
messages meant for the user, without catching every ``ValueError``; and the one-line wording
of library errors that such messages quote."""

from __future__ import annotations

from typing import Any


class SurgsimError(ValueError):
    """Input that surgsim refuses, with a message for the user.

    A ``ValueError`` because these errors were ``ValueError`` subclasses before: existing
    ``except ValueError`` clauses keep catching them.
    """


class EnvError(SurgsimError):
    """A bad argument, reset option or action given to a surgsim env."""


def yaml_problem(exc: Any) -> str:
    """A PyYAML error in one line: what is wrong and where (PyYAML's own message spans several)."""
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    mark = getattr(exc, "problem_mark", None)
    return f"{problem} at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else problem


def validation_problem(exc: Any, top_level: str, field: str = "", limit: int | None = None) -> str:
    """A pydantic ``ValidationError`` in one line: ``<field>loc: problem (got input)`` for each
    error, joined by ``; `` (the location ``top_level`` when it has none; the input's repr cut to
    ``limit`` characters when given). A missing field has no input of its own (pydantic gives the
    whole enclosing mapping), so none is shown."""

    def got(error: dict) -> str:
        if error["type"] == "missing":
            return ""
        shown = repr(error.get("input"))
        return f" (got {shown if limit is None else shown[:limit]})"

    return "; ".join(
        f"{field}{'.'.join(map(str, e['loc'])) or top_level}: {e['msg']}{got(e)}" for e in exc.errors()
    )
