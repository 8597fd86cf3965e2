"""Training, evaluation and rendering of stable-baselines3 agents on surgsim envs."""
