"""The ``surgsim`` command: envs, demo, errors and help."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from simhelpers import ALL_IDS
from typer.testing import CliRunner

from surgsim.cli import app

runner = CliRunner()


def test_envs_lists_every_id():
    result = runner.invoke(app, ["envs"])
    assert result.exit_code == 0, result.output
    listed = re.findall(r"^(surgsim/\S+)\s", result.output, flags=re.MULTILINE)
    assert sorted(listed) == sorted(ALL_IDS)
    assert "(discrete actions)" in result.output


def test_demo_runs_the_expert_and_reports_a_success_rate():
    result = runner.invoke(app, ["demo", "-n", "3"])
    assert result.exit_code == 0, result.output
    match = re.search(r"success rate: ([\d.]+)%", result.output)
    assert match, result.output
    assert float(match.group(1)) == 100.0
    assert "surgsim/SurgicalPath-v0" in result.output
    assert "episodes=3" in result.output
    assert "mean return" in result.output


def test_demo_random_policy_is_seeded_and_fails_where_the_expert_succeeds():
    args = ["demo", "--env", "surgsim/NeedleReachDiscrete-v0", "-n", "4", "--policy", "random", "--seed", "3"]
    first, second = runner.invoke(app, args), runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "policy=random" in first.output
    # --seed seeds the random actions too: the same command gives the same report
    assert first.stdout == second.stdout
    rate = float(re.search(r"success rate: ([\d.]+)%", first.output).group(1))
    assert rate < 100.0
    endings = re.findall(r"ended by (\w+): (\d+)", first.output)
    assert endings and {name for name, _ in endings} <= {"time_limit", "workspace"}
    assert sum(int(n) for _, n in endings) == round(4 * (1 - rate / 100))


def test_demo_with_a_named_patient():
    result = runner.invoke(
        app, ["demo", "--env", "surgsim/Incision-v0", "-n", "2", "--patient", "skin-02"]
    )
    assert result.exit_code == 0, result.output
    assert "success rate: 100.0%" in result.output


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["demo", "--env", "surgsim/Nope-v0"], "surgsim/Nope-v0"),
        (["demo", "-n", "1", "--difficulty", "nightmare"], "nightmare"),
        (["demo", "-n", "1", "--patient", "liver-99"], "liver-99"),
        (["demo", "-n", "1", "--policy", "clever"], "clever"),
        (["demo", "-n", "1", "--tissue", "jelly"], "jelly"),
    ],
)
def test_demo_bad_arguments_exit_non_zero_naming_the_value(args, named):
    result = runner.invoke(app, args)
    assert result.exit_code != 0
    assert named in result.output
    assert "Traceback" not in result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)  # a clean exit


def test_demo_rejects_zero_episodes():
    result = runner.invoke(app, ["demo", "-n", "0"])
    assert result.exit_code == 2, result.output  # a usage error, not a crash (exit 1)
    assert "Invalid value for '--episodes'" in result.output
    assert "success rate" not in result.output  # refused before any episode ran


@pytest.mark.parametrize("args", [["--help"], ["demo", "--help"], ["envs", "--help"]])
def test_help_explains(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0
    assert "Usage" in result.output
    if args == ["--help"]:
        assert "envs" in result.output and "demo" in result.output
        assert "surgical simulator" in result.output
    elif args[0] == "demo":
        for option in ("--env", "--episodes", "--policy", "--seed", "--difficulty", "--patient"):
            assert option in result.output
    else:
        assert "environment id" in result.output


def test_no_arguments_shows_help():
    result = runner.invoke(app, [])
    assert "Usage" in result.output and "demo" in result.output


@pytest.mark.slow
def test_real_subprocess_envs_and_demo_error():
    command = [sys.executable, "-m", "surgsim.cli"]
    ok = subprocess.run(
        [*command, "envs"], capture_output=True, text=True, timeout=120, check=False
    )
    assert ok.returncode == 0, ok.stderr
    for env_id in ALL_IDS:
        assert env_id in ok.stdout
    bad = subprocess.run(
        [*command, "demo", "--env", "surgsim/Nope-v0"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert bad.returncode != 0
    assert "surgsim/Nope-v0" in bad.stderr


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["play", "--env", "surgsim/NeedleReach-v0", "--trainee", "t1", "--keys", "d.", "--record", "{bad}"], "--record"),
        (["import", "csv", "{csv}", "--time", "t", "--xyz", "x,y,z", "--trainee", "t1", "--out", "{bad}"], "--out"),
        (["import", "jigsaws", "{tmp}", "--out", "{bad}"], "--out"),
        (["score", "{tmp}", "--out", "{bad}"], "--out"),
        (["score", "calibrate", "{tmp}", "--label", "grs", "--out", "{bad}/rubric.yaml"], "--out"),
        (["score", "evaluate", "{tmp}", "--label", "grs", "--out", "{bad}/result.json"], "--out"),
        (["predictor", "generate", "-n", "2", "--out", "{bad}"], "--out"),
        (["predictor", "train", "{tmp}", "--out", "{bad}/m.pt"], "--out"),
    ],
)
@pytest.mark.parametrize("bad", ["a-file/sub", "/proc/surgsim-out"])
def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path, argv, option, bad):
    (tmp_path / "a-file").write_text("")
    (tmp_path / "track.csv").write_text("t,x,y,z\n0,0,0,0\n0.1,0,0,1\n")
    bad_path = bad if bad.startswith("/") else str(tmp_path / bad)
    argv = [a.format(bad=bad_path, tmp=tmp_path, csv=tmp_path / "track.csv") for a in argv]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert f"error: {option} {bad_path}" in result.output
    assert "Traceback" not in result.output


@pytest.mark.parametrize("seed", ["-1", "4294967296"])
@pytest.mark.parametrize(
    "argv",
    [
        ["demo", "-n", "1"],
        ["train", "--env", "surgsim/NeedleReach-v0", "-n", "100", "-f", "{tmp}/logs"],
        ["eval", "{tmp}/run"],
        ["render", "{tmp}/run", "--out", "{tmp}/r.gif"],
        ["play", "--env", "surgsim/NeedleReach-v0", "--trainee", "t1", "--keys", "d.", "--record", "{tmp}/rec"],
        ["predictor", "generate", "-n", "2", "--out", "{tmp}/paths"],
        ["sweep", "--env", "surgsim/NeedleReach-v0", "--seeds", "0", "--sample-seed", "{seed}", "-f", "{tmp}/logs"],
    ],
)
def test_seeds_out_of_range_are_refused_before_anything_is_made(tmp_path, argv, seed):
    argv = [a.format(tmp=tmp_path, seed=seed) for a in argv]
    option = "--sample-seed" if argv[0] == "sweep" else "--seed"
    if option == "--seed":
        argv += ["--seed", seed]
    result = runner.invoke(app, argv)
    assert result.exit_code == 2, result.output
    assert f"error: {option} {seed}: expected a whole number from 0 to 4294967295" in result.output
    assert list(tmp_path.iterdir()) == []  # no half-made folder


def test_sweep_seed_lists_are_bounded():
    from surgsim.rl.sweep import SweepError, parse_seeds

    with pytest.raises(SweepError, match="above the largest seed, 4294967295"):
        parse_seeds("0,4294967296")
    with pytest.raises(SweepError, match="more than 10000 seeds"):
        parse_seeds("0-99999999")  # refused before a hundred million seeds are listed
    assert parse_seeds("4294967295") == [4294967295]


@pytest.mark.parametrize(
    "argv",
    [["demo", "-n", "1"], ["play", "--env", "surgsim/NeedleReach-v0", "--trainee", "t1", "--keys", "d.", "--record", "{tmp}/rec"]],
)
def test_an_unknown_difficulty_names_the_option(tmp_path, argv):
    result = runner.invoke(app, [a.format(tmp=tmp_path) for a in argv] + ["--difficulty", "insane"])
    assert result.exit_code == 2, result.output
    assert "error: --difficulty 'insane': expected one of easy, medium, hard" in result.output
    assert list(tmp_path.iterdir()) == []


def test_hyperparameter_yaml_errors_fit_on_one_line(tmp_path):
    result = runner.invoke(app, ["train", "--env", "surgsim/NeedleReach-v0", "-n", "100", "-f", str(tmp_path),
                                 "--hyperparams", "policy_kwargs:{bad"])
    assert result.exit_code == 2
    error = [line for line in result.output.splitlines() if line.strip()]
    assert len(error) == 1 and error[0].startswith("error: --hyperparams entry 'policy_kwargs:{bad'")
    assert "not valid YAML" in error[0] and "line 1, column" in error[0]


def test_only_surgsims_own_errors_read_as_user_mistakes(monkeypatch):
    # a user mistake (an unknown patient) is one line and exit 2 ...
    result = runner.invoke(app, ["demo", "-n", "1", "--patient", "nobody"])
    assert result.exit_code == 2 and "error: unknown patient 'nobody'" in result.output
    # ... while a bug deep inside (a bare ValueError) is not dressed up as one
    def broken(*args, **kwargs):
        raise ValueError("a bug, not bad input")

    monkeypatch.setattr("surgsim.rl.evaluate.run_episodes", broken)
    result = runner.invoke(app, ["demo", "-n", "1"])
    assert result.exit_code == 1 and isinstance(result.exception, ValueError)
    assert "error:" not in result.output


@pytest.mark.slow
def test_eval_on_another_tissue_runs_there_and_records_it(tmp_path):
    import json

    import gymnasium as gym
    from simhelpers import quick_train_args

    from surgsim.rl.evaluate import model_policy, run_episodes
    from surgsim.rl.train import load_run, train

    run = train(quick_train_args(tmp_path, "ppo", "surgsim/NeedleReach-v0", 64, n_envs=1,
                                 hyperparams={"n_steps": 64, "batch_size": 32}))
    fem, own = tmp_path / "fem.json", tmp_path / "own.json"
    result = runner.invoke(app, ["eval", str(run), "-n", "1", "--device", "cpu", "--tissue", "fem", "--out", str(fem)])
    assert result.exit_code == 0, result.output
    assert "tissue=fem" in result.output
    record = json.loads(fem.read_text())
    assert record["tissue"] == "fem"
    # the episode is the one a fem env gives ...
    model, normalizer, _ = load_run(run, device="cpu")
    env = gym.make("surgsim/NeedleReach-v0", tissue="fem")
    assert record["peak_forces"] == run_episodes(env, model_policy(model, True, normalizer), 1).peak_forces
    env.close()
    # ... and without --tissue the run's own (elastic) tissue gives another
    result = runner.invoke(app, ["eval", str(run), "-n", "1", "--device", "cpu", "--out", str(own)])
    assert result.exit_code == 0, result.output
    record_own = json.loads(own.read_text())
    assert record_own["tissue"] == "elastic"
    assert record_own["peak_forces"] != record["peak_forces"]


def test_eval_refuses_an_unknown_tissue_before_loading_the_run(tmp_path):
    result = runner.invoke(app, ["eval", str(tmp_path / "no-run"), "--tissue", "jelly"])
    assert result.exit_code == 2, result.output
    assert [line for line in result.output.splitlines() if line.strip()] == [
        "error: --tissue 'jelly': expected one of rigid, elastic, fem"
    ]
