"""Interrupted and resumed training: bit-exact continuation, whole logs, damaged checkpoints."""

from __future__ import annotations

import csv
import json
import os
import signal
import zipfile

import numpy as np
import pytest
import torch

from surgsim.rl.train import TrainArgs, TrainingError, checkpoints, env_name, latest_checkpoint, load_run, train

#: tiny, fast settings per algorithm: (env id, timesteps, n_envs, hyperparameters); PPO also
#: normalises, so that VecNormalize's statistics and running returns are carried over too
CASES = {
    "ppo": ("surgsim/NeedleReach-v0", 256, 2,
            {"n_steps": 32, "batch_size": 32, "n_epochs": 2, "normalize": True, "policy_kwargs": {"net_arch": [16]}}),
    "dqn": ("surgsim/NeedleReachDiscrete-v0", 400, 1,
            {"learning_starts": 60, "buffer_size": 1000, "batch_size": 16, "train_freq": 4,
             "target_update_interval": 50, "exploration_fraction": 0.5, "policy_kwargs": {"net_arch": [16]}}),
    "sac": ("surgsim/NeedleReach-v0", 300, 1,
            {"learning_starts": 60, "buffer_size": 1000, "batch_size": 16, "policy_kwargs": {"net_arch": [16]}}),
}


def _args(tmp_path, folder: str, algo: str, save_freq: int = 10**6) -> TrainArgs:
    env_id, n, n_envs, hyperparams = CASES[algo]
    return TrainArgs(
        algo=algo, env_id=env_id, n_timesteps=n, seed=3, log_folder=str(tmp_path / folder), eval_freq=n // 2,
        eval_episodes=2, n_envs=n_envs, device="cpu", hyperparams=dict(hyperparams), save_freq=save_freq,
        progress_bar=False,
    )


def _interrupted_run(tmp_path, algo: str, save_freq: int = 10**6):
    """A run stopped by Ctrl-C at its first evaluation (half way), and its folder."""
    env_id = CASES[algo][0]
    with pytest.raises(KeyboardInterrupt):
        train(_args(tmp_path, "cut", algo, save_freq), on_evaluation=_ctrl_c)
    return tmp_path / "cut" / algo / f"{env_name(env_id)}_1"


def _resume(run) -> None:
    train(TrainArgs(algo="", env_id="", device="cpu", progress_bar=False), resume=run)


def _assert_same_run(run, reference) -> None:
    """Bit-identical final policies and normalisation statistics, the same episodes and evaluations."""
    model, stats, _ = load_run(run, device="cpu")
    reference_model, reference_stats, _ = load_run(reference, device="cpu")
    assert model.num_timesteps == reference_model.num_timesteps
    params, reference_params = model.policy.state_dict(), reference_model.policy.state_dict()
    assert params.keys() == reference_params.keys()
    for key in reference_params:
        assert torch.equal(params[key], reference_params[key]), key
    if reference_stats is not None:
        np.testing.assert_array_equal(stats.obs_rms.mean, reference_stats.obs_rms.mean)
        np.testing.assert_array_equal(stats.ret_rms.var, reference_stats.ret_rms.var)
    # the episode log was appended to, not restarted: the same episodes, once each
    assert _episodes(run) == _episodes(reference)
    assert _evaluations(run) == _evaluations(reference)


def _ctrl_c(record: dict) -> None:
    """Press Ctrl-C (a real SIGINT to this process) when the first evaluation is written."""
    os.kill(os.getpid(), signal.SIGINT)


def _episodes(run) -> list[list[str]]:
    """Every monitor row without its wall time: return, length, success, per env."""
    rows = []
    for path in sorted((run / "monitor").glob("*.monitor.csv")):
        lines = [line for line in path.read_text().splitlines() if not line.startswith("#")]
        rows.append([[r["r"], r["l"], r["is_success"]] for r in csv.DictReader(lines)])
    return rows


def _evaluations(run) -> list[tuple[int, list[float]]]:
    records = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    return [(r["timesteps"], r["returns"]) for r in records]


@pytest.mark.slow
@pytest.mark.parametrize("algo", list(CASES))
def test_ctrl_c_then_resume_reproduces_the_uninterrupted_run_bit_for_bit(tmp_path, algo):
    n = CASES[algo][1]
    save_freq = n * 2 // 5  # a periodic checkpoint falls before the stop
    whole = train(_args(tmp_path, "whole", algo, save_freq))
    cut = _interrupted_run(tmp_path, algo, save_freq)
    resumed_from, stopped_at = latest_checkpoint(cut)
    assert n // 2 <= stopped_at < n
    assert not (cut / "summary.json").exists()
    written = resumed_from.stat().st_mtime_ns

    _resume(cut)
    _assert_same_run(cut, whole)
    steps = json.loads((cut / "summary.json").read_text())["timesteps"]
    if algo != "ppo":  # PPO rounds -n up to whole rollouts, as SB3 does; the others stop at -n
        assert steps == n
    # no spurious checkpoint on resuming: the next one comes save_freq steps on, or at the end
    assert resumed_from.stat().st_mtime_ns == written
    saved = [int(p.name.split("_")[2]) for p in (cut / "checkpoints").glob("rl_model_*")]
    assert all(s <= stopped_at or s >= stopped_at + save_freq or s == steps for s in saved), saved


@pytest.mark.slow
def test_damaged_latest_checkpoint_falls_back_to_the_newest_intact_one(tmp_path, capsys):
    whole = train(_args(tmp_path, "whole", "ppo", save_freq=64))
    cut = _interrupted_run(tmp_path, "ppo", save_freq=64)
    (latest, _), (older, older_steps) = checkpoints(cut)[:2]
    assert older_steps < CASES["ppo"][1] // 2  # before the evaluation, which must be redone
    with zipfile.ZipFile(latest) as archive:
        assert archive.testzip() is None
    latest.write_bytes(latest.read_bytes()[:200])  # cut short, as by a full disk
    stale = cut / "checkpoints" / ".rl_model_999_steps.x1y2.partial.zip"  # as a killed atomic_save leaves it
    stale.write_bytes(b"half a model")

    _resume(cut)
    err = capsys.readouterr().err
    assert f"cannot load checkpoint {latest}" in err and f"trying {older.name}" in err
    assert not stale.exists()
    _assert_same_run(cut, whole)


def test_resume_with_every_checkpoint_damaged_is_an_error_naming_the_newest(tmp_path):
    run = tmp_path / "ppo" / "surgsim-NeedleReach-v0_1"
    (run / "surgsim-NeedleReach-v0").mkdir(parents=True)
    (run / "surgsim-NeedleReach-v0" / "args.yml").write_text(
        "algo: ppo\nenv_id: surgsim/NeedleReach-v0\nn_timesteps: 256\nn_envs: 1\n")
    (run / "checkpoints").mkdir()
    for steps in (64, 128):
        (run / "checkpoints" / f"rl_model_{steps}_steps.zip").write_bytes(b"not a zip")
    with pytest.raises(TrainingError, match=r"cannot load checkpoint .*rl_model_128_steps.zip.*\(nor the 1 older one"):
        _resume(run)


def test_a_run_that_normalises_only_rewards_resumes(tmp_path):
    """Incision's PPO preset normalises rewards, not observations: its VecNormalize has no
    ``obs_rms``, and resuming it used to fail on that missing attribute."""
    args = TrainArgs(algo="ppo", env_id="surgsim/Incision-v0", n_timesteps=128, seed=0, log_folder=str(tmp_path),
                     eval_freq=128, eval_episodes=1, n_envs=1, device="cpu", save_freq=64, progress_bar=False,
                     hyperparams={"n_steps": 64, "batch_size": 64, "n_epochs": 1})
    run = train(args)
    resumed = train(TrainArgs(algo="ppo", env_id="surgsim/Incision-v0", n_timesteps=192, device="cpu",
                              progress_bar=False), resume=run)
    assert resumed == run
    assert latest_checkpoint(run)[1] == 192
