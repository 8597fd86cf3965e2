"""Demonstration datasets in Minari's format: from the scripted expert (optionally degraded), from
trained agents and from recorded sessions; read back as flat arrays for pretraining.

Writing and reading need the ``datasets`` extra (``pip install 'surgsim[datasets]'``).
"""

from surgsim.datasets.collect import collect
from surgsim.datasets.from_sessions import from_sessions
from surgsim.datasets.policies import AgentPolicy, ExpertPolicy, PolicyError, RandomPolicy
from surgsim.datasets.store import DatasetError, Demonstrations, dataset_id, load_demonstrations

__all__ = [
    "AgentPolicy",
    "DatasetError",
    "Demonstrations",
    "ExpertPolicy",
    "PolicyError",
    "RandomPolicy",
    "collect",
    "dataset_id",
    "from_sessions",
    "load_demonstrations",
]
