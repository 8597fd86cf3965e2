"""Options that `surgsim train` and `surgsim sweep` share, defined once so they cannot drift apart.

Each is a Typer option used as a parameter's default (Typer copies it per command); the
defaults match :class:`surgsim.rl.train.TrainArgs`, which is not imported here: it needs torch.
"""

from __future__ import annotations

import typer

ALGO = typer.Option("ppo", "--algo", help="ppo, dqn (discrete ids) or sac (continuous ids).")
ENV = typer.Option("surgsim/SurgicalPath-v0", "--env", help="Registered env id.")
N_TIMESTEPS = typer.Option(None, "-n", "--n-timesteps", help="Total timesteps of a run (preset's if unset).")
ENV_KWARGS = typer.Option(None, "--env-kwargs", help="key:value (repeatable), e.g. obs_type:goal.")
HYPERPARAMS = typer.Option(None, "--hyperparams", help="key:value overrides of the preset (repeatable).")
EVAL_FREQ = typer.Option(10_000, "--eval-freq", help="Evaluate every N timesteps.")
EVAL_EPISODES = typer.Option(20, "--eval-episodes", help="Episodes per evaluation.")
SAVE_FREQ = typer.Option(50_000, "--save-freq", help="Checkpoint every N timesteps (what --resume continues from).")
DEVICE = typer.Option("auto", "--device", help="auto (CUDA when the machine has a GPU), cpu or cuda.")
