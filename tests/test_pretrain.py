"""`surgsim pretrain` (behaviour cloning for PPO and SAC, DQfD for DQN) and `surgsim train --init-from`.

The thresholds were set by running these tests on CPU (seed 0) and leave a margin; the measured
values are written beside each one.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from stable_baselines3 import DQN, PPO, SAC
from stable_baselines3.common.vec_env import VecNormalize
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.datasets import collect
from surgsim.datasets.store import Demonstrations, load_demonstrations
from surgsim.rl import pretrain as pretrain_module
from surgsim.rl.dqfd import DemoLoss, DQfD, n_step_targets
from surgsim.rl.pretrain import PretrainArgs, pretrain
from surgsim.rl.train import TrainArgs, TrainingError, _init_from, _start, algo_class, new_run_dir, read_evaluations, run_setup, train

runner = CliRunner()
REACH = "surgsim/NeedleReach-v0"
REACH_DATA = "surgsim/NeedleReach/expert-v0"
DISCRETE = "surgsim/NeedleReachDiscrete-v0"
DISCRETE_DATA = "surgsim/NeedleReachDiscrete/expert-v0"
PATH = "surgsim/SurgicalPath-v0"
PATH_DATA = "surgsim/SurgicalPath/expert-v0"


def _ok(result) -> None:
    assert result.exit_code == 0, result.output


def _refused(result, message: str) -> None:
    assert result.exit_code == 2, result.output
    assert message in result.output, result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1, result.output


def _args(algo: str, env_id: str, dataset: str, root: Path, logs: Path, **extra) -> PretrainArgs:
    return PretrainArgs(algo=algo, env_id=env_id, dataset=dataset, root=str(root), log_folder=str(logs),
                        device="cpu", progress_bar=False, **extra)


def _pretrain_json(run: Path) -> dict:
    return json.loads((run / "pretrain.json").read_text())


def _final_eval(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())["final_eval"]


@pytest.fixture(scope="module")
def datasets(tmp_path_factory) -> Path:
    """40 scripted-expert episodes of NeedleReach-v0 (through the CLI) and of its discrete twin."""
    root = tmp_path_factory.mktemp("datasets")
    _ok(runner.invoke(app, ["dataset", "collect", "--env", REACH, "-n", "40", "--out", str(root), "--no-progress"]))
    collect(DISCRETE, "expert", 40, root, ref_episodes=2, progress=False)
    return root


@pytest.fixture(scope="module")
def bc_run(datasets, tmp_path_factory) -> Path:
    """PPO cloned from the NeedleReach expert for 100 epochs (about 3 s on one CPU core)."""
    logs = tmp_path_factory.mktemp("bc")
    result = runner.invoke(app, ["pretrain", REACH_DATA, "--algo", "ppo", "--root", str(datasets), "-f", str(logs),
                                 "--epochs", "100", "--device", "cpu", "--no-progress"])
    _ok(result)
    run = logs / "ppo" / "surgsim-NeedleReach-v0_1"
    assert f"run: {run}" in result.output
    return run


# --------------------------------------------------------------------------- behaviour cloning (PPO)
def test_bc_clones_the_expert_on_needle_reach(bc_run, datasets, tmp_path, monkeypatch):
    cloned = _final_eval(bc_run)
    assert cloned["episodes"] == 20
    assert cloned["success_rate"] >= 0.8  # measured 0.95 (seeds 0-4: 0.85-0.95)
    history = _pretrain_json(bc_run)["history"]
    assert len(history) == 100
    assert history[-1]["nll"] < history[0]["nll"] - 0.5  # measured 3.73 -> 2.88
    assert history[-1]["value_mse"] < 0.2 * history[0]["value_mse"]  # measured 93 -> 6.3

    # the same preset and seed, without the cloning: the policy the cloning started from
    monkeypatch.setattr(pretrain_module, "_clone_ppo", lambda *a: [{"epoch": 1, "nll": 0.0, "value_mse": 0.0}])
    untrained = _final_eval(pretrain(_args("ppo", REACH, REACH_DATA, datasets, tmp_path / "logs")))
    assert untrained["success_rate"] <= 0.2  # measured 0.0 (every episode hit the time limit)
    assert cloned["success_rate"] - untrained["success_rate"] >= 0.6


def test_eval_of_a_pretrained_run_repeats_its_evaluation(bc_run, tmp_path):
    """`surgsim eval` takes the run folder; on the same seeds it gets the same result."""
    out = tmp_path / "eval.json"
    _ok(runner.invoke(app, ["eval", str(bc_run), "-n", "20", "--seed", str(pretrain_module.EVAL_SEED),
                            "--device", "cpu", "--out", str(out)]))
    evaluated, recorded = json.loads(out.read_text()), _final_eval(bc_run)
    assert evaluated["success_rate"] == recorded["success_rate"]
    assert evaluated["mean_return"] == recorded["mean_return"]


# --------------------------------------------------------------------------- --init-from
def test_init_from_starts_at_the_pretrained_weights(bc_run, tmp_path):
    args = TrainArgs(algo="ppo", env_id=REACH, seed=1, log_folder=str(tmp_path), device="cpu",
                     progress_bar=False, init_from=str(bc_run))
    run, _ = new_run_dir(args.log_folder, args.algo, args.env_id)
    venv, model = _start(args, run, run_setup(args))
    try:
        pretrained = PPO.load(str(bc_run / "surgsim-NeedleReach-v0.zip"), device="cpu").policy.state_dict()
        fresh = model.policy.state_dict()
        assert fresh.keys() == pretrained.keys()
        assert not all(torch.equal(fresh[k], pretrained[k]) for k in fresh)  # so the check below can fail
        _init_from(model, venv, args)
        loaded = model.policy.state_dict()
        assert all(torch.equal(loaded[k], pretrained[k]) for k in loaded)
    finally:
        venv.close()


def test_fine_tuning_first_evaluates_the_pretrained_policy(bc_run, tmp_path):
    result = runner.invoke(app, ["train", "--algo", "ppo", "--env", REACH, "--init-from", str(bc_run), "-n", "1",
                                 "-f", str(tmp_path), "--device", "cpu", "--no-progress"])
    _ok(result)
    records = read_evaluations(tmp_path / "ppo" / "surgsim-NeedleReach-v0_1")
    pretrained = _pretrain_json(bc_run)["evaluation"]
    assert [r["timesteps"] for r in records] == [0, 1024]  # one PPO rollout: 4 envs x 256 steps
    assert records[0]["success_rate"] == pretrained["success_rate"]
    assert records[0]["mean_return"] == pretrained["mean_return"]
    assert records[0]["returns"] == pretrained["returns"]


@pytest.mark.parametrize("hyperparams, eps", [({}, 0.02), ({"exploration_initial_eps": 0.5}, 0.5)])
def test_dqn_fine_tuning_explores_from_the_presets_final_epsilon(tmp_path, hyperparams, eps):
    """A pretrained Q-network is not thrown away by a first phase of random actions (the preset's
    exploration_final_eps is 0.02), unless the user asks for it."""
    args = TrainArgs(algo="dqn", env_id=DISCRETE, init_from=str(tmp_path), hyperparams=hyperparams)
    assert run_setup(args).algo_kwargs["exploration_initial_eps"] == eps
    scratch = TrainArgs(algo="dqn", env_id=DISCRETE)
    assert "exploration_initial_eps" not in run_setup(scratch).algo_kwargs


@pytest.mark.parametrize("algo, env_id", [("dqn", DISCRETE), ("sac", REACH)])
def test_fine_tuning_acts_with_the_pretrained_policy_from_the_first_step(tmp_path, algo, env_id):
    """SB3 acts uniformly at random until learning_starts; a fine-tuning run starts at 0 unless asked."""
    assert run_setup(TrainArgs(algo=algo, env_id=env_id, init_from=str(tmp_path))).algo_kwargs["learning_starts"] == 0
    asked = TrainArgs(algo=algo, env_id=env_id, init_from=str(tmp_path), hyperparams={"learning_starts": 7})
    assert run_setup(asked).algo_kwargs["learning_starts"] == 7
    assert run_setup(TrainArgs(algo=algo, env_id=env_id)).algo_kwargs.get("learning_starts") != 0


# --------------------------------------------------------------------------- VecNormalize
def test_normalised_preset_fits_its_statistics_to_the_demonstrations(tmp_path):
    """SurgicalPath's PPO preset normalises observations: pretraining fits the statistics to the
    demonstrations, saves them, and a fine-tuning run starts from them (its first evaluation is the
    pretrained one, not one with statistics moved by its first reset)."""
    root = tmp_path / "datasets"
    collect(PATH, "expert", 10, root, ref_episodes=1, progress=False)
    run = pretrain(_args("ppo", PATH, PATH_DATA, root, tmp_path / "logs", epochs=2, eval_episodes=2))
    demos = load_demonstrations(root, PATH_DATA)
    with open(run / "surgsim-SurgicalPath-v0" / "vecnormalize.pkl", "rb") as fh:
        stats = pickle.load(fh)  # our own file, just written
    assert isinstance(stats, VecNormalize)
    np.testing.assert_allclose(stats.obs_rms.mean, demos.observations.astype(np.float64).mean(axis=0),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(stats.obs_rms.var, demos.observations.astype(np.float64).var(axis=0),
                               rtol=1e-4, atol=1e-6)

    tune = tmp_path / "tune"
    _ok(runner.invoke(app, ["train", "--algo", "ppo", "--env", PATH, "--init-from", str(run), "-n", "1",
                            "--hyperparams", "n_steps:8", "--hyperparams", "batch_size:64",
                            "--eval-episodes", "2", "-f", str(tune), "--device", "cpu", "--no-progress"]))
    first = read_evaluations(tune / "ppo" / "surgsim-SurgicalPath-v0_1")[0]
    pretrained = _pretrain_json(run)["evaluation"]
    assert first["timesteps"] == 0
    assert first["returns"] == pretrained["returns"]


# --------------------------------------------------------------------------- DQfD (DQN)
def _demos(rewards, terminations, truncations) -> Demonstrations:
    """A hand-made dataset: only the fields the n-step targets read are meaningful."""
    size = len(rewards)
    episode = np.cumsum(np.r_[0, (np.asarray(terminations) | np.asarray(truncations))[:-1]])
    return Demonstrations(
        dataset="hand-made", env_spec=None, observations=np.zeros((size, 1), np.float32),
        actions=np.zeros(size), rewards=np.asarray(rewards, float), next_observations=np.zeros((size, 1), np.float32),
        terminations=np.asarray(terminations), truncations=np.asarray(truncations), episode=episode,
        seeds=[0, 1], successes=np.array([True, False]), ref_min_score=None, ref_max_score=None,
    )


#: episode 0 (rows 0-2) terminates, episode 1 (rows 3-6) is truncated
TWO_EPISODES = _demos([1.0, 2.0, 3.0, 1.0, 1.0, 1.0, 1.0],
                      [False, False, True, False, False, False, False],
                      [False, False, False, False, False, False, True])


@pytest.mark.parametrize("n, sums, ends, discounts", [
    # window of 2: a termination inside it zeroes the bootstrap, a truncation keeps it
    (2, [1 + 0.5 * 2, 2 + 0.5 * 3, 3, 1.5, 1.5, 1.5, 1], [1, 2, 2, 4, 5, 6, 6],
     [0.25, 0, 0, 0.25, 0.25, 0.25, 0.5]),
    # one step: the ordinary TD target
    (1, [1, 2, 3, 1, 1, 1, 1], [0, 1, 2, 3, 4, 5, 6], [0.5, 0.5, 0, 0.5, 0.5, 0.5, 0.5]),
    # a window longer than the episodes: each stops at its episode's end
    (10, [2.75, 3.5, 3, 1.875, 1.75, 1.5, 1], [2, 2, 2, 6, 6, 6, 6],
     [0, 0, 0, 0.0625, 0.125, 0.25, 0.5]),
])
def test_n_step_targets_known_answers(n, sums, ends, discounts):
    got_sums, got_ends, got_discounts = n_step_targets(TWO_EPISODES.rewards, TWO_EPISODES, 0.5, n)
    np.testing.assert_allclose(got_sums, sums)
    np.testing.assert_array_equal(got_ends, ends)
    np.testing.assert_allclose(got_discounts, discounts)


def test_dqfd_learns_the_experts_actions(datasets, tmp_path, monkeypatch):
    run = pretrain(_args("dqn", DISCRETE, DISCRETE_DATA, datasets, tmp_path / "dqfd", epochs=100, batch_size=64))
    history = _pretrain_json(run)["history"]
    assert history[-1]["margin"] < 0.4 * history[0]["margin"]  # measured 0.83 -> 0.24 (seeds 0-4: ratio 0.21-0.29)
    demos = load_demonstrations(datasets, DISCRETE_DATA)
    q_net = DQN.load(str(run / "surgsim-NeedleReachDiscrete-v0.zip"), device="cpu").q_net
    with torch.no_grad():
        greedy = q_net(torch.as_tensor(demos.observations)).argmax(dim=1).numpy()
    agreement = float(np.mean(greedy == demos.actions.astype(int).ravel()))
    assert agreement >= 0.8  # measured 0.89 (seeds 0-4: 0.89-0.91)
    cloned = _final_eval(run)["success_rate"]

    monkeypatch.setattr(pretrain_module, "_dqfd", lambda *a: [{"epoch": 1, "td_1": 0.0, "td_n": 0.0, "margin": 0.0}])
    untrained = _final_eval(pretrain(_args("dqn", DISCRETE, DISCRETE_DATA, datasets, tmp_path / "none")))
    assert cloned >= 0.25  # measured 0.40 (seeds 0-4: 0.4-0.6)
    assert untrained["success_rate"] <= 0.05  # measured 0.0 (every episode left the workspace)


def test_dqn_fine_tuning_keeps_learning_from_the_demonstrations(datasets, tmp_path, monkeypatch):
    """Fine-tuning a DQfD-pretrained run is DQfD: every SB3 update is followed by a step of the
    demonstration losses, and the expert's actions stay the greedy ones on the demonstrated states."""
    run = pretrain(_args("dqn", DISCRETE, DISCRETE_DATA, datasets, tmp_path / "dqfd", epochs=100, batch_size=64))
    args = TrainArgs(algo="dqn", env_id=DISCRETE, init_from=str(run), n_timesteps=3000, eval_freq=3000,
                     eval_episodes=5, log_folder=str(tmp_path / "fine"), device="cpu", progress_bar=False,
                     hyperparams={"learning_starts": 500})
    assert algo_class(args) is DQfD
    assert algo_class(TrainArgs(algo="dqn", env_id=DISCRETE)) is DQN
    calls = []
    original = DemoLoss.__call__
    monkeypatch.setattr(DemoLoss, "__call__", lambda self, *a: calls.append(1) or original(self, *a))
    fine = train(args)
    assert len(calls) == (3000 - 500) // 4  # one demonstration step per update (train_freq 4)
    with zipfile.ZipFile(fine / "surgsim-NeedleReachDiscrete-v0.zip") as saved:
        assert "demo_loss" not in json.loads(saved.read("data"))  # the demonstrations stay in their dataset
    demos = load_demonstrations(datasets, DISCRETE_DATA)
    q_net = DQN.load(str(fine / "surgsim-NeedleReachDiscrete-v0.zip"), device="cpu").q_net
    with torch.no_grad():
        greedy = q_net(torch.as_tensor(demos.observations)).argmax(dim=1).numpy()
    assert float(np.mean(greedy == demos.actions.astype(int).ravel())) >= 0.8  # measured 0.889 (seed 0)

    # resuming needs the pretrained run (and its dataset) again: never a silent fall-back to plain DQN
    moved = run.rename(tmp_path / "moved")
    with pytest.raises(TrainingError, match="a DQN fine-tuned from it needs it"):
        train(TrainArgs(algo="dqn", env_id=DISCRETE, n_timesteps=4000, device="cpu", progress_bar=False), resume=fine)
    assert moved.is_dir()


# --------------------------------------------------------------------------- SAC
def test_sac_cloning_lowers_the_action_error_and_is_evaluated(datasets, tmp_path):
    run = pretrain(_args("sac", REACH, REACH_DATA, datasets, tmp_path, epochs=30, eval_episodes=5))
    record = _pretrain_json(run)
    history = record["history"]
    assert [h["epoch"] for h in history] == list(range(1, 31))
    assert history[-1]["action_mse"] < 0.7 * history[0]["action_mse"]  # measured 0.65 -> 0.36 (seeds 0-4: ratio 0.47-0.56)
    assert history[-1]["q_mse"] < 0.6 * history[0]["q_mse"]  # measured 93 -> 39 (seeds 0-4: ratio 0.41-0.50)
    assert record["evaluation"]["timesteps"] == 0 and record["evaluation"]["episodes"] == 5
    assert _final_eval(run)["mean_return"] == record["evaluation"]["mean_return"]
    model = SAC.load(str(run / "surgsim-NeedleReach-v0.zip"), device="cpu")
    critic, target = model.critic.state_dict(), model.critic_target.state_dict()
    assert all(torch.equal(critic[k], target[k]) for k in critic)  # the target critics start from the fitted ones


# --------------------------------------------------------------------------- errors
@pytest.mark.parametrize("argv, message", [
    (["surgsim/Nope/expert-v0", "--algo", "ppo"], "no dataset surgsim/Nope/expert-v0 under"),
    ([REACH_DATA, "--algo", "ppo", "--env", PATH],
     f"dataset {REACH_DATA} was recorded on {REACH}, not {PATH}"),
    ([REACH_DATA, "--algo", "dqn"], f"DQN needs discrete actions, {REACH} is continuous"),
    ([REACH_DATA, "--algo", "ppo", "--epochs", "0"], "--epochs 0: must be a whole number of at least 1"),
])
def test_pretrain_input_errors_exit_2_and_leave_no_run_folder(datasets, tmp_path, argv, message):
    logs = tmp_path / "logs"
    result = runner.invoke(app, ["pretrain", *argv, "--root", str(datasets), "-f", str(logs), "--device", "cpu",
                                 "--no-progress"])
    _refused(result, message)
    assert not logs.exists()


@pytest.mark.parametrize("argv, message", [
    (["--algo", "sac", "--env", REACH, "--init-from", "{bc}"],
     "--init-from {bc}: it is a PPO run on surgsim/NeedleReach-v0"),
    (["--algo", "ppo", "--env", PATH, "--init-from", "{bc}"], "this run is PPO on surgsim/SurgicalPath-v0"),
    (["--algo", "ppo", "--env", REACH, "--init-from", "{bc}", "--resume", "{bc}"],
     "--init-from starts a new run; --resume continues one: give one of them"),
    (["--algo", "ppo", "--env", REACH, "--init-from", "{missing}"], "--init-from: run folder {missing} does not exist"),
    (["--algo", "ppo", "--env", REACH, "--init-from", "{tmp}"], "--init-from: {tmp} is not a surgsim run folder"),
    (["--algo", "ppo", "--env", REACH, "--init-from", "{bc}", "--hyperparams", "normalize:true"],
     "it was trained with normalisation none, this run uses observations on, rewards on"),
])
def test_init_from_errors_exit_2_and_leave_no_run_folder(bc_run, tmp_path, argv, message):
    names = {"bc": bc_run, "missing": tmp_path / "missing", "tmp": tmp_path}
    logs = tmp_path / "logs"
    result = runner.invoke(app, ["train", *(a.format(**names) for a in argv), "-f", str(logs), "--device", "cpu",
                                 "--no-progress"])
    _refused(result, message.format(**names))
    assert not logs.exists()


def test_a_failure_while_pretraining_leaves_no_run_folder(datasets, tmp_path, monkeypatch):
    def broken(*args):
        raise RuntimeError("diverged")

    monkeypatch.setattr(pretrain_module, "_clone_ppo", broken)
    logs = tmp_path / "logs"
    with pytest.raises(RuntimeError, match="diverged"):
        pretrain(_args("ppo", REACH, REACH_DATA, datasets, logs))
    assert not logs.exists()
    (logs / "ppo").mkdir(parents=True)  # an existing log folder stays, without the failed run
    with pytest.raises(RuntimeError, match="diverged"):
        pretrain(_args("ppo", REACH, REACH_DATA, datasets, logs))
    assert list((logs / "ppo").iterdir()) == []
