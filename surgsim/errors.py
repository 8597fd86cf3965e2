"""The base class of every error surgsim raises for input it refuses (specs, sessions, rubrics,
datasets, training options...), so that a caller can catch the package's own errors, with
messages meant for the user, without catching every ``ValueError``."""


class SurgsimError(ValueError):
    """Input that surgsim refuses, with a message for the user.

    A ``ValueError`` because these errors were ``ValueError`` subclasses before: existing
    ``except ValueError`` clauses keep catching them.
    """
