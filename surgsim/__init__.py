"""surgsim: a reinforcement-learning surgical simulator (Gymnasium environments in PyBullet).

Importing the package registers the ``surgsim/...`` environment ids with Gymnasium.
"""

from surgsim.env import REGISTERED, SurgSimEnv, register_envs
from surgsim.errors import EnvError, SurgsimError

__version__ = "0.1.0"
__all__ = ["EnvError", "REGISTERED", "SurgSimEnv", "SurgsimError", "__version__", "register_envs"]

register_envs()
