"""User mistakes with train, eval, render and sweep: one line naming what is wrong, exit 2, nothing half-made."""

from __future__ import annotations

import json
import sys

import pytest
import torch
import yaml
from simhelpers import quick_train_args
from typer.testing import CliRunner

from surgsim.cli import app

runner = CliRunner()
ENV = "surgsim/NeedleReach-v0"


def _refused(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-n", "-100"], "-n -100: must be a whole number of at least 1"),
        (["--eval-episodes", "0"], "--eval-episodes 0: must be a whole number of at least 1"),
        (["--eval-freq", "0"], "--eval-freq 0"),
        (["--device", "tpu"], "--device 'tpu' is not valid; expected auto, cpu or cuda[:n]"),
        (["--hyperparams", "learning_rat:1e-3"], "'learning_rat' is not a PPO hyperparameter; did you mean 'learning_rate'?"),
        (["--hyperparams", "n_steps:abc"], "--hyperparams n_steps:abc: expected a number"),
        (["--hyperparams", "n_steps:-5"], "--hyperparams n_steps:-5: expected a whole number of at least 1"),
        (["--hyperparams", "gamma:1.5"], "--hyperparams gamma:1.5: must be between 0 and 1"),
        (["--hyperparams", "learning_rate:-1"], "--hyperparams learning_rate:-1: must be at least 0"),
        (["--hyperparams", "policy:FooPolicy"], "--hyperparams policy:FooPolicy: PPO refused them"),
    ],
)
def test_train_input_errors_exit_2_and_leave_no_run_folder(tmp_path, argv, message):
    logs = tmp_path / "logs"
    result = runner.invoke(app, ["train", "--env", ENV, "-f", str(logs), "--no-progress", "--device", "cpu", *argv])
    _refused(result, message)
    assert not logs.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_a_gpu_is_refused(tmp_path):
    result = runner.invoke(app, ["train", "--env", ENV, "-f", str(tmp_path), "--device", "cuda"])
    _refused(result, "--device 'cuda' asked for, but no CUDA GPU is available")


def test_unwritable_log_folder_is_named(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(app, ["train", "--env", ENV, "-f", str(blocker / "logs"), "--no-progress"])
    _refused(result, f"-f {blocker / 'logs'}: cannot create the run folder")


def _fake_run(tmp_path, env_kwargs: dict):
    """A run folder holding only its args.yml (enough to be read, and refused, before any model)."""
    run = tmp_path / "ppo" / "surgsim-NeedleReach-v0_1"
    (run / "surgsim-NeedleReach-v0").mkdir(parents=True)
    args = {"algo": "ppo", "env_id": ENV, "n_timesteps": 256, "env_kwargs": env_kwargs}
    (run / "surgsim-NeedleReach-v0" / "args.yml").write_text(yaml.safe_dump(args))
    return run


@pytest.mark.parametrize("command", [["eval"], ["render"], ["train", "--resume"]])
def test_bad_env_kwarg_in_args_yml_names_the_file(tmp_path, command):
    run = _fake_run(tmp_path, {"colour": "red"})
    result = runner.invoke(app, [*command, str(run), "--device", "cpu"])
    _refused(result, f"bad env_kwargs in {run / 'surgsim-NeedleReach-v0' / 'args.yml'} for {ENV}")
    assert "colour" in result.output


@pytest.mark.parametrize(
    "argv, message",
    [
        (["eval", "RUN", "--out", "BLOCKER/eval.json"], "--out BLOCKER/eval.json: BLOCKER is not a folder"),
        (["eval", "RUN", "--out", "TMP"], "--out TMP is a folder; give a file name"),
        (["eval", "RUN", "--record", "BLOCKER/sessions"], "--record BLOCKER/sessions: BLOCKER is not a folder"),
        (["render", "RUN", "--out", "BLOCKER/run.gif"], "--out BLOCKER/run.gif: BLOCKER is not a folder"),
        (["eval", "RUN", "--device", "tpu"], "--device 'tpu' is not valid"),
    ],
)
def test_eval_and_render_refuse_unwritable_outputs_before_running(tmp_path, argv, message):
    run = _fake_run(tmp_path, {})  # never loaded: the outputs are checked first
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    swap = {"RUN": str(run), "BLOCKER": str(blocker), "TMP": str(tmp_path)}
    for key, value in swap.items():
        argv = [a.replace(key, value) for a in argv]
        message = message.replace(key, value)
    _refused(runner.invoke(app, argv), message)


@pytest.mark.slow
def test_eval_never_overwrites_an_earlier_eval_json(tmp_path):
    from surgsim.rl.train import train

    run = train(quick_train_args(tmp_path, "ppo", ENV, 64, n_envs=1, hyperparams={"n_steps": 64, "batch_size": 32}))
    first = runner.invoke(app, ["eval", str(run), "--episodes", "2", "--device", "cpu"])
    assert first.exit_code == 0, first.output
    kept = (run / "eval.json").read_text()
    sessions = tmp_path / "sessions"
    second = runner.invoke(app, ["eval", str(run), "--episodes", "1", "--device", "cpu", "--record", str(sessions)])
    assert second.exit_code == 0, second.output
    assert (run / "eval.json").read_text() == kept
    assert json.loads((run / "eval-2.json").read_text())["episodes"] == 1
    assert f"written: {run / 'eval-2.json'}" in second.output


def test_sweep_without_ray_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` fails, as without the extra
    monkeypatch.delitem(sys.modules, "surgsim.rl.sweep", raising=False)
    result = runner.invoke(app, ["sweep", "--env", ENV])
    _refused(result, "pip install 'surgsim[distributed]'")


@pytest.mark.parametrize(
    "argv, message",
    [
        (["-n", "-100"], "-n -100: must be a whole number of at least 1"),
        (["--eval-episodes", "0"], "--eval-episodes 0"),
        (["--device", "tpu"], "--device 'tpu' is not valid"),
        (["--hyperparams", "n_step:64"], "'n_step' is not a PPO hyperparameter; did you mean 'n_steps'?"),
        (["--grid", "gama=0.9,0.99"], "'gama' is not a PPO hyperparameter; did you mean 'gamma'?"),
        (["-f", "BLOCKER/logs"], "-f BLOCKER/logs: cannot create the sweep folder"),
    ],
)
def test_sweep_input_errors_exit_2_before_ray_starts(tmp_path, argv, message):
    pytest.importorskip("ray")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    argv = [a.replace("BLOCKER", str(blocker)) for a in argv]
    result = runner.invoke(app, ["sweep", "--env", ENV, "-f", str(tmp_path / "logs"), *argv])
    _refused(result, message.replace("BLOCKER", str(blocker)))
    assert not (tmp_path / "logs").exists()
