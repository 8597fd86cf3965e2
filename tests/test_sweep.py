"""Sweeps on Ray Tune: a tiny (config x seed) sweep end to end, a failing trial, resume, parse errors."""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import yaml

ray = pytest.importorskip("ray")

from typer.testing import CliRunner  # noqa: E402

from surgsim.cli import app  # noqa: E402
from surgsim.rl import presets  # noqa: E402
from surgsim.rl.sweep import (  # noqa: E402
    PlannedTrial, SweepError, SweepSpec, base_preset, expand_configs, make_scheduler, mean_and_band, parse_grid,
    parse_search, parse_seeds, read_plan, start_sweep, sweep_trial,
)
from surgsim.rl.train import TrainArgs, latest_checkpoint, load_run, train  # noqa: E402

runner = CliRunner()
ENV = "surgsim/NeedleReach-v0"
ENV_NAME = "surgsim-NeedleReach-v0"
STEPS = 256
#: tiny PPO runs: one env, 64-step rollouts, two epochs
FIXED = ["--hyperparams", "n_envs:1", "--hyperparams", "n_epochs:2", "--hyperparams", "n_steps:64"]
TINY = ["--algo", "ppo", "--env", ENV, "-n", str(STEPS), "--eval-freq", "128", "--eval-episodes", "2",
        "--save-freq", "128", "--device", "cpu", *FIXED]


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Configs batch_size 32 / 64 (valid) and 1 (passes the sweep's checks, but PPO rejects it) x seeds 0, 1."""
    logs = tmp_path_factory.mktemp("logs")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = runner.invoke(app, [
            "sweep", *TINY, "--seeds", "0-1", "--grid", "batch_size=32,64,1",
            "-f", str(logs), "--name", "tiny",
        ])
        yield logs / "sweeps" / "tiny", result
    finally:
        ray.shutdown()


def _rows(sweep_dir: Path) -> list[dict[str, str]]:
    with open(sweep_dir / "trials.csv", newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_sweep_runs_every_trial_and_reports_metrics(sweep):
    sweep_dir, result = sweep
    rows = _rows(sweep_dir)
    assert sorted(r["trial"] for r in rows) == sorted(f"c{k}_s{s}" for k in range(3) for s in (0, 1))
    good = [r for r in rows if r["batch_size"] != "1"]
    assert len(good) == 4 and {r["status"] for r in good} == {"done"}
    for row in good:
        assert int(row["timesteps"]) == STEPS
        for key in ("final_success_rate", "final_critical_failure_rate"):
            assert 0.0 <= float(row[key]) <= 1.0
        history = [json.loads(line) for line in (Path(row["run_dir"]) / "evaluations.jsonl").read_text().splitlines()]
        assert [h["timesteps"] for h in history] == [128, 256]  # each evaluation was made and reported
        assert float(row["final_mean_return"]) == pytest.approx(history[-1]["mean_return"])
        # Ray saw each evaluation as it happened, with every metric
        ray_results = (sweep_dir / "ray" / row["trial"] / "result.json").read_text().splitlines()
        reported = [json.loads(line) for line in ray_results if line]
        assert [r["timesteps"] for r in reported] == [128, 256]
        assert reported[-1]["success_rate"] == pytest.approx(history[-1]["success_rate"])
        assert reported[-1]["critical_failure_rate"] == pytest.approx(history[-1]["critical_failure_rate"])
        assert reported[-1]["mean_return"] == pytest.approx(history[-1]["mean_return"])


@pytest.mark.slow
def test_failing_trial_is_reported_while_others_finish(sweep):
    sweep_dir, result = sweep
    assert result.exit_code == 1, result.output
    bad = [r for r in _rows(sweep_dir) if r["batch_size"] == "1"]
    assert [r["trial"] for r in bad] == ["c2_s0", "c2_s1"] and {r["status"] for r in bad} == {"error"}
    assert all("batch_size" in r["error"] for r in bad)
    assert "failed: c2_s0" in result.output and "batch_size" in result.output


@pytest.mark.slow
def test_trial_run_folder_has_the_layout_of_surgsim_train(sweep, tmp_path):
    sweep_dir, _ = sweep
    run = sweep_dir / "runs" / "c0_s1" / "ppo" / f"{ENV_NAME}_1"
    plain = train(TrainArgs(algo="ppo", env_id=ENV, n_timesteps=STEPS, seed=1, log_folder=str(tmp_path),
                            eval_freq=128, eval_episodes=2, device="cpu", save_freq=128, progress_bar=False,
                            hyperparams={"n_envs": 1, "n_epochs": 2, "n_steps": 64, "batch_size": 32}))

    def layout(folder: Path) -> set[str]:
        return {str(p.relative_to(folder)) for p in folder.rglob("*") if "tb" not in p.parts}

    assert layout(run) == layout(plain)
    config = yaml.safe_load((run / ENV_NAME / "config.yml").read_text())
    assert (config["n_steps"], config["batch_size"], config["n_envs"]) == (64, 32, 1)
    assert yaml.safe_load((run / ENV_NAME / "args.yml").read_text())["seed"] == 1
    model, _, args = load_run(run, device="cpu")
    assert model.num_timesteps == STEPS and args.seed == 1


@pytest.mark.slow
def test_plot_and_best_preset_are_written(sweep, monkeypatch):
    sweep_dir, result = sweep
    png = sweep_dir / "success_curve.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [r for r in _rows(sweep_dir) if r["status"] == "done"]
    by_config: dict[str, list[tuple[float, float]]] = {}
    for r in rows:
        by_config.setdefault(r["config"], []).append((float(r["final_success_rate"]), float(r["final_mean_return"])))
    best = max(by_config, key=lambda k: tuple(np.mean(by_config[k], axis=0)))
    best_batch = int(next(r["batch_size"] for r in rows if r["config"] == best))

    path = sweep_dir / "best_ppo.yml"
    monkeypatch.setattr(presets, "preset_path", lambda algo: path)  # surgsim's own loader reads it
    preset = presets.load_preset("ppo", ENV)
    base = yaml.safe_load((presets.data_dir("agents") / "ppo.yml").read_text())[ENV]
    assert preset == base | {"n_envs": 1, "n_epochs": 2, "n_steps": 64, "batch_size": best_batch,
                             "n_timesteps": STEPS}
    assert f"best: c{best}" in result.output


@pytest.mark.slow
def test_resume_of_a_finished_sweep_trains_nothing(sweep):
    sweep_dir, _ = sweep
    evaluations = sorted(sweep_dir.glob("runs/*/ppo/*/evaluations.jsonl"))
    before = {p: p.stat().st_mtime_ns for p in evaluations}
    rows_before = _rows(sweep_dir)
    result = runner.invoke(app, ["sweep", "--resume", str(sweep_dir)])  # on the fixture's Ray
    assert result.exit_code == 1, result.output  # the failed trials stay failed
    assert {p: p.stat().st_mtime_ns for p in evaluations} == before
    assert not list(sweep_dir.glob("runs/*/ppo/*_2"))
    drop = ("wall_time_s",)
    assert [{k: v for k, v in r.items() if k not in drop} for r in _rows(sweep_dir)] == \
        [{k: v for k, v in r.items() if k not in drop} for r in rows_before]


@pytest.mark.slow
def test_asha_stops_trials_early_but_never_a_finished_one(sweep):
    """A trial ASHA stops has fewer timesteps than planned; one it lets run ends as `surgsim train`."""
    from surgsim.rl.sweep import run_sweep

    sweep_dir, _ = sweep
    template = TrainArgs(algo="ppo", env_id=ENV, n_timesteps=3 * 128, eval_freq=128, eval_episodes=2,
                         save_freq=128, device="cpu", log_folder=str(sweep_dir.parent.parent),
                         hyperparams={"n_envs": 1, "n_epochs": 2, "n_steps": 64, "batch_size": 32})
    spec = SweepSpec(template=template, seeds=[0], scheduler="asha", grid={"learning_rate": [1e-3, 1e-6, 3e-4]})
    outcome = run_sweep(spec)  # on the fixture's Ray
    assert {t.status for t in outcome.trials} <= {"done", "stopped early"}
    for t in outcome.trials:
        finished = (Path(t.run_dir) / "summary.json").is_file()
        assert finished == (t.status == "done"), (t.name, t.status, t.final("timesteps"))
        if not finished:
            assert t.final("timesteps") < 3 * 128
    assert (outcome.best_preset is not None) == any(t.status == "done" for t in outcome.trials)


@pytest.mark.slow
def test_restarted_trial_continues_its_run_from_the_last_checkpoint(tmp_path, monkeypatch):
    """What a resumed sweep does with a trial that was cut off after a checkpoint."""
    trial_folder = tmp_path / "runs" / "c0_s0"
    hyper = {"n_envs": 1, "n_epochs": 2, "n_steps": 64, "batch_size": 32}
    run = train(TrainArgs(algo="ppo", env_id=ENV, n_timesteps=STEPS, seed=0, log_folder=str(trial_folder),
                          eval_freq=128, eval_episodes=2, device="cpu", save_freq=128, progress_bar=False,
                          hyperparams=hyper))
    # cut it back to the state after the first checkpoint (128 steps): no summary, no later files
    (run / "summary.json").unlink()
    for late in (run / "checkpoints").glob("*_256_steps*"):
        late.unlink()
    lines = (run / "evaluations.jsonl").read_text().splitlines()
    (run / "evaluations.jsonl").write_text(lines[0] + "\n")
    assert latest_checkpoint(run)[1] == 128

    reported = []
    monkeypatch.setattr("surgsim.rl.sweep.trainable.tune.report", reported.append)
    template = TrainArgs(algo="ppo", env_id=ENV, n_timesteps=STEPS, eval_freq=128, eval_episodes=2, device="cpu",
                         hyperparams={"n_envs": 1, "n_epochs": 2}, save_freq=128)
    spec = SweepSpec(template, seeds=[0])
    config = {"trial": asdict(PlannedTrial("c0_s0", 0, 0, {"n_steps": 64, "batch_size": 32}))}
    sweep_trial(config, spec, tmp_path)
    assert [r["timesteps"] for r in reported] == [256]
    assert set(reported[0]) == {"timesteps", "success_rate", "mean_return", "critical_failure_rate", "mean_length"}
    assert json.loads((run / "summary.json").read_text())["timesteps"] == STEPS
    assert sorted(p.name for p in (trial_folder / "ppo").iterdir()) == [f"{ENV_NAME}_1"]  # same run folder

    # restarted once more after it had finished: it reports the last evaluation and does not train
    reported.clear()
    sweep_trial(config, spec, tmp_path)
    assert [r["timesteps"] for r in reported] == [256]
    assert len((run / "evaluations.jsonl").read_text().splitlines()) == 2

    # restarted after its last evaluation was logged but before summary.json: nothing new to
    # evaluate, so it reports the logged one (this raised IndexError)
    (run / "summary.json").unlink()
    reported.clear()
    sweep_trial(config, spec, tmp_path)
    assert [r["timesteps"] for r in reported] == [256]
    assert json.loads((run / "summary.json").read_text())["timesteps"] == STEPS


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--seeds", "3-1"], "--seeds '3-1': range '3-1' runs backwards"),
        (["--seeds", "a,b"], "--seeds 'a,b': 'a' is not a seed or a range"),
        (["--grid", "learning_rate"], "--grid 'learning_rate' is not of the form key=value1,value2"),
        (["--grid", "n_steps=64,,128"], "--grid 'n_steps=64,,128': empty value"),
        (["--search", "learning_rate=normal:0:1"], "distribution one of ['uniform', 'loguniform', 'randint']"),
        (["--search", "learning_rate=loguniform:1e-3:1e-5"], "low must be below high"),
        (["--search", "learning_rate=loguniform:1e-5:1e-3"], "--search ranges need --num-samples"),
        (["--scheduler", "hyperband"], "--scheduler 'hyperband': expected one of ['none', 'asha']"),
        (["--env", "surgsim/Nope-v0"], "unknown env id 'surgsim/Nope-v0'"),
        (["--hyperparams", "n_envs"], "--hyperparams entry 'n_envs' is not of the form key:value"),
        (["--grid", "learnin_rate=1e-4,3e-4"], "--grid/--search 'learnin_rate' is not a PPO hyperparameter; did you mean 'learning_rate'?"),
    ],
)
def test_cli_input_errors_exit_2(tmp_path, argv, message):
    result = runner.invoke(app, ["sweep", "--algo", "ppo", "--env", ENV, "-f", str(tmp_path), *argv])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "sweeps").exists()  # nothing half-made


def test_resume_of_a_folder_that_is_not_a_sweep_exits_2(tmp_path):
    result = runner.invoke(app, ["sweep", "--resume", str(tmp_path)])
    assert result.exit_code == 2
    assert f"{tmp_path} is not a sweep folder (no sweep.json)" in result.output


def test_parsers_read_seeds_grids_and_ranges():
    assert parse_seeds("0-3,10,2") == [0, 1, 2, 3, 10]
    grid = parse_grid(["learning_rate=1e-4,3e-4", "n_steps=64,128"])
    assert grid == {"learning_rate": [1e-4, 3e-4], "n_steps": [64, 128]}  # numbers, not YAML 1.1's strings
    assert [type(v) for v in grid["n_steps"]] == [int, int]
    assert parse_grid(["policy_kwargs={net_arch: [64, 64]},{net_arch: [128]}", "gamma=0.9,0.99"]) == {
        "policy_kwargs": [{"net_arch": [64, 64]}, {"net_arch": [128]}], "gamma": [0.9, 0.99],
    }
    assert parse_search(["n_epochs=randint:3:20"]) == {"n_epochs": ("randint", 3.0, 20.0)}
    with pytest.raises(SweepError, match="randint needs integer bounds"):
        parse_search(["n_epochs=randint:3:7.5"])


def test_grid_is_a_product_and_random_configs_repeat_with_their_seed():
    spec = SweepSpec(TrainArgs(algo="ppo", env_id=ENV), seeds=[0], grid={"a": [1, 2], "b": ["x", "y", "z"]})
    configs = expand_configs(spec)
    assert len(configs) == 6 and {(c["a"], c["b"]) for c in configs} == {(a, b) for a in (1, 2) for b in "xyz"}

    spec = SweepSpec(TrainArgs(algo="ppo", env_id=ENV), seeds=[0], num_samples=20, grid={"gamma": [0.9, 0.99]},
                     search={"learning_rate": ("loguniform", 1e-5, 1e-3), "n_epochs": ("randint", 3, 6)})
    drawn = expand_configs(spec)
    assert drawn == expand_configs(spec)  # same sample seed, same configs
    assert all(1e-5 <= c["learning_rate"] <= 1e-3 and c["n_epochs"] in (3, 4, 5) and c["gamma"] in (0.9, 0.99)
               for c in drawn)
    spec.sample_seed = 1
    assert expand_configs(spec) != drawn


def test_mean_and_band_by_hand():
    steps, mean, low, high = mean_and_band([
        (np.array([100.0, 200.0]), np.array([0.4, 0.9])),
        (np.array([100.0, 200.0]), np.array([0.5, 1.0])),
        (np.array([100.0, 200.0, 300.0]), np.array([0.6, 1.0, 1.0])),
    ])
    assert steps.tolist() == [100, 200, 300]
    assert mean == pytest.approx([0.5, 2.9 / 3, 1.0])
    # three seeds at 100 steps: half width = t(0.975, 2) * std(ddof=1) / sqrt(3) = 4.3027 * 0.1 / 1.7321
    assert (low[0], high[0]) == pytest.approx((0.5 - 0.24841, 0.5 + 0.24841), abs=1e-4)
    assert high[1] == 1.0 and low[1] == pytest.approx(2.9 / 3 - 4.3027 * 0.057735 / 1.7321, abs=1e-4)  # clipped at 1
    assert low[2] == high[2] == 1.0  # only the third seed reached 300 steps: no band


def test_asha_stops_on_success_rate_over_the_planned_budget():
    spec = SweepSpec(TrainArgs(algo="ppo", env_id=ENV, n_timesteps=90_000, eval_freq=1_000), seeds=[0], scheduler="asha")
    scheduler = make_scheduler(spec, [{}])
    assert (scheduler._time_attr, scheduler._metric, scheduler._mode) == ("timesteps", "success_rate", "max")
    assert scheduler._max_t == 90_000
    # the first rung after a ninth of the budget (10k steps), then every third
    assert sorted(rung for rung, _ in scheduler._brackets[0]._rungs) == [10_000, 30_000, 90_000]


def test_a_sweep_with_goal_observations_starts_from_the_her_preset():
    spec = SweepSpec(TrainArgs(algo="sac", env_id="surgsim/NeedleReach-v0", env_kwargs={"obs_type": "goal"}), seeds=[0])
    assert base_preset(spec)["replay_buffer_class"] == "HerReplayBuffer"
    state = SweepSpec(TrainArgs(algo="sac", env_id="surgsim/NeedleReach-v0"), seeds=[0])
    assert "replay_buffer_class" not in base_preset(state)


def test_the_plan_keeps_the_train_template(tmp_path):
    """sweep.json stores the TrainArgs template; reading it back gives the spec that was started."""
    template = TrainArgs(algo="ppo", env_id=ENV, n_timesteps=STEPS, log_folder=str(tmp_path), device="cpu",
                         env_kwargs={"obs_type": "goal"}, hyperparams={"n_steps": 64.0})
    spec = SweepSpec(template, seeds=[0, 1], search={"learning_rate": ("loguniform", 1e-5, 1e-3)}, num_samples=2)
    sweep_dir, configs = start_sweep(spec)
    assert spec.template.hyperparams == {"n_steps": 64}  # checked as `surgsim train` checks it
    assert read_plan(sweep_dir) == (spec, configs)
    assert json.loads((sweep_dir / "sweep.json").read_text())["spec"]["template"]["env_kwargs"] == {"obs_type": "goal"}


def test_resume_of_a_sweep_from_an_older_surgsim_exits_2(tmp_path):
    old = {"spec": {"algo": "ppo", "env_id": ENV, "seeds": [0], "log_folder": str(tmp_path)}, "configs": [{}]}
    (tmp_path / "sweep.json").write_text(json.dumps(old))
    result = runner.invoke(app, ["sweep", "--resume", str(tmp_path)])
    assert result.exit_code == 2, result.output
    error = [line for line in result.output.splitlines() if line.strip()]
    assert len(error) == 1 and "cannot resume" in error[0] and "start the sweep anew" in error[0]


def test_train_and_sweep_share_their_options():
    """Same names, help and defaults in both commands; the defaults TrainArgs has are its own."""
    import dataclasses

    import typer.main

    commands = typer.main.get_command(app).commands
    train, sweep = ({p.name: p for p in commands[name].params} for name in ("train", "sweep"))
    for option in ("algo", "env", "n_timesteps", "env_kwargs", "hyperparams", "eval_freq", "eval_episodes",
                   "save_freq", "device"):
        assert (train[option].opts, train[option].help, train[option].default) == \
            (sweep[option].opts, sweep[option].help, sweep[option].default)
    for field in dataclasses.fields(TrainArgs):
        if field.name in ("n_timesteps", "eval_freq", "eval_episodes", "save_freq", "device"):
            assert train[field.name].default == field.default, field.name
