"""Training, resuming, evaluating and rendering agents, and the training CLI's errors."""

from __future__ import annotations

import json
import os
import signal

import gymnasium as gym
import numpy as np
import pytest
from PIL import Image
from simhelpers import quick_train_args
from typer.testing import CliRunner

import surgsim  # noqa: F401
from surgsim.cli import app
from surgsim.rl.evaluate import model_policy, run_episodes
from surgsim.rl.train import SurgicalEvalCallback, TrainArgs, env_name, latest_checkpoint, load_run, train

runner = CliRunner()


def _random_success(env_id: str, episodes: int = 30) -> float:
    env = gym.make(env_id)
    env.action_space.seed(123)
    return run_episodes(env, lambda obs: env.action_space.sample(), episodes, seed=500).success_rate


def _trained_success(run_dir, episodes: int = 30) -> float:
    model, normalizer, args = load_run(run_dir, device="cpu")
    env = gym.make(args.env_id)
    return run_episodes(env, model_policy(model, True, normalizer), episodes, seed=500).success_rate


@pytest.mark.parametrize(
    "algo, env_id, steps, floor, margin",
    [
        ("ppo", "surgsim/NeedleReach-v0", 16_384, 0.8, 0.5),
        ("dqn", "surgsim/NeedleReachDiscrete-v0", 25_000, 0.6, 0.4),
        ("sac", "surgsim/NeedleReach-v0", 8_000, 0.8, 0.5),
    ],
)
@pytest.mark.slow
def test_agent_learns_needle_reach(tmp_path, algo, env_id, steps, floor, margin):
    """Within about a minute of CPU the agent beats the random policy measured here by a margin."""
    run = train(quick_train_args(tmp_path, algo, env_id, steps))
    trained = _trained_success(run)
    random = _random_success(env_id)
    assert trained >= floor, f"{algo} success {trained:.0%} after {steps} steps"
    assert trained >= random + margin, f"{algo} {trained:.0%} vs random {random:.0%}"
    summary = json.loads((run / "summary.json").read_text())
    assert summary["timesteps"] >= steps
    assert (run / "learning_curve.png").stat().st_size > 0
    assert (run / "best_model.zip").is_file()
    assert (run / env_name(env_id) / "config.yml").is_file()


def test_resume_continues_timesteps_and_replay_buffer(tmp_path):
    args = quick_train_args(tmp_path, "dqn", "surgsim/NeedleReachDiscrete-v0", 1_500, save_freq=1_000)
    args.hyperparams = {"learning_starts": 100}
    run = train(args)
    path, steps = latest_checkpoint(run)
    assert steps == 1_500  # the end of a run is a checkpoint too
    assert (run / "checkpoints" / f"replay_buffer_{steps}_steps.pkl").is_file()

    resumed = train(TrainArgs(algo="dqn", env_id="", n_timesteps=2_500, progress_bar=False, device="cpu"),
                    resume=run)
    assert resumed == run
    model, _, _ = load_run(run, device="cpu")
    assert model.num_timesteps == 2_500
    _, last = latest_checkpoint(run)
    assert last >= 2_000
    model.load_replay_buffer(str(run / "checkpoints" / f"replay_buffer_{last}_steps.pkl"))
    # the buffer carried over: a restarted one would hold at most the 1,000 new transitions
    assert model.replay_buffer.size() >= 1_900


def test_resume_keeps_normalisation_statistics(tmp_path):
    args = quick_train_args(tmp_path, "ppo", "surgsim/NeedleReach-v0", 512, save_freq=512, n_envs=2)
    args.hyperparams = {"normalize": True, "n_steps": 128, "batch_size": 64}
    run = train(args)
    _, normalizer, _ = load_run(run, device="cpu")
    count_before = normalizer.obs_rms.count
    best_before = (run / "best_model.zip").read_bytes()
    train(TrainArgs(algo="ppo", env_id="", n_timesteps=1_024, progress_bar=False, device="cpu"), resume=run)
    _, normalizer, _ = load_run(run, device="cpu")
    assert normalizer.obs_rms.count > count_before + 400
    # the best model comes with the statistics it was evaluated with, not the final ones
    _, best_normalizer, _ = load_run(run, device="cpu", best=True)
    best_kept = (run / "best_model.zip").read_bytes() == best_before
    expected = count_before if best_kept else normalizer.obs_rms.count
    assert best_normalizer.obs_rms.count == expected


def test_ctrl_c_saves_a_checkpoint(tmp_path, monkeypatch):
    sent = []

    def interrupt(self):  # Ctrl-C: a real SIGINT to this process, once
        if self.num_timesteps >= 300 and not sent:
            sent.append(self.num_timesteps)
            os.kill(os.getpid(), signal.SIGINT)
        return True

    monkeypatch.setattr(SurgicalEvalCallback, "_on_step", interrupt)
    result = runner.invoke(app, ["train", "--algo", "ppo", "--env", "surgsim/NeedleReach-v0", "-n", "5000",
                                 "-f", str(tmp_path), "--no-progress", "--device", "cpu",
                                 "--hyperparams", "n_steps:64", "--hyperparams", "batch_size:64"])
    assert result.exit_code == 130
    run = tmp_path / "ppo" / "surgsim-NeedleReach-v0_1"
    _, steps = latest_checkpoint(run)
    assert steps >= 300
    assert not list(run.rglob("*.partial*"))


def test_eval_and_render_cli(tmp_path):
    run = train(quick_train_args(tmp_path, "ppo", "surgsim/NeedleReach-v0", 256, n_envs=1,
                      hyperparams={"n_steps": 128, "batch_size": 64}))
    result = runner.invoke(app, ["eval", str(run), "--episodes", "5", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "success rate:" in result.output
    record = json.loads((run / "eval.json").read_text())
    assert record["episodes"] == 5 and sum(record["outcomes"].values()) == 5
    # the same 5 seeded episodes (seeds 0-4, deterministic actions) run here give the same record
    model, normalizer, args = load_run(run, device="cpu")
    env = gym.make(args.env_id)
    expected = run_episodes(env, model_policy(model, True, normalizer), 5, seed=0).to_dict()
    env.close()
    assert {key: record[key] for key in expected} == expected
    assert f"success rate: {expected['success_rate']:.1%}" in result.output

    gif = tmp_path / "watch.gif"
    result = runner.invoke(app, ["render", str(run), "--out", str(gif), "--device", "cpu"])
    assert result.exit_code == 0, result.output
    with Image.open(gif) as image:
        assert image.n_frames > 1
        assert len(np.unique(np.asarray(image.convert("RGB")))) > 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--algo", "ppo", "--env", "surgsim/Nope-v0"], "unknown env id 'surgsim/Nope-v0'"),
        (["--algo", "a2z", "--env", "surgsim/NeedleReach-v0"], "unknown algorithm 'a2z'"),
        (["--algo", "dqn", "--env", "surgsim/SurgicalPath-v0"], "surgsim/SurgicalPathDiscrete-v0"),
        (["--env", "surgsim/NeedleReach-v0", "--env-kwargs", "colour:red"], "colour"),
        (["--env", "surgsim/NeedleReach-v0", "--env-kwargs", "obs_type"], "key:value"),
        (["--env", "surgsim/NeedleReach-v0", "--resume", "no/such/run"], "does not exist"),
    ],
)
def test_train_cli_errors(tmp_path, argv, message):
    result = runner.invoke(app, ["train", *argv, "-f", str(tmp_path), "--no-progress"])
    assert result.exit_code == 2
    assert message in result.output


def test_eval_of_missing_or_corrupt_run(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "missing")])
    assert result.exit_code == 2 and "does not exist" in result.output

    args = quick_train_args(tmp_path, "ppo", "surgsim/NeedleReach-v0", 128, n_envs=1, save_freq=128,
                 hyperparams={"n_steps": 128, "batch_size": 64})
    run = train(args)
    path, _ = latest_checkpoint(run)
    path.write_bytes(b"this is not a zip file")
    result = runner.invoke(app, ["train", "--resume", str(run), "-n", "512", "--no-progress"])
    assert result.exit_code == 2
    assert "cannot load checkpoint" in result.output and path.name in result.output


def test_hyperparameter_overrides_read_numbers_as_numbers():
    from surgsim.rl.presets import parse_overrides

    parsed = parse_overrides(["learning_rate:3e-4", "n_steps:128", "policy_kwargs:{net_arch: [64, 64]}"], "--hyperparams")
    assert parsed == {"learning_rate": 3e-4, "n_steps": 128, "policy_kwargs": {"net_arch": [64, 64]}}
    assert isinstance(parsed["learning_rate"], float)  # PyYAML alone reads 3e-4 as a string


def test_training_envs_are_made_without_rendering(tmp_path):
    """SB3's make_vec_env asks for render_mode='rgb_array' unless told otherwise; a rendered
    SurgicalPath world redraws the dimpling organ as the tool presses, and PyBullet keeps every
    drawn mesh's vertex lists: training grew by about 50 MB/s before this."""
    from surgsim.rl.train import _make_vec_env

    args = TrainArgs(algo="ppo", env_id="surgsim/SurgicalPath-v0", n_timesteps=100, seed=0,
                     log_folder=str(tmp_path), device="cpu", progress_bar=False)
    venv = _make_vec_env(args, tmp_path, 2, False, resuming=False)
    try:
        assert [env.unwrapped.render_mode for env in venv.envs] == [None, None]
        assert not any(env.unwrapped.world.visuals for env in venv.envs)
    finally:
        venv.close()
