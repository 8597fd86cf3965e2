"""rl_zoo3 interoperability: its trainer uses our presets, its `enjoy` replays our runs."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
import yaml
from simhelpers import quick_train_args

from surgsim.rl.presets import RUN_KEYS, load_preset, preset_path
from surgsim.rl.train import env_name, train

pytest.importorskip("rl_zoo3")

pytestmark = pytest.mark.slow  # subprocesses running rl_zoo3


def _zoo(*argv: str, cwd) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", *argv, "--gym-packages", "surgsim"],
        cwd=cwd, capture_output=True, text=True, timeout=300,
    )


@pytest.mark.parametrize(
    "algo, env_id, steps",
    [
        ("ppo", "surgsim/NeedleReach-v0", 1024),
        ("dqn", "surgsim/NeedleReachDiscrete-v0", 1200),
        ("sac", "surgsim/NeedleReach-v0", 1100),
    ],
)
def test_rl_zoo3_trains_with_our_presets(tmp_path, algo, env_id, steps):
    done = _zoo(
        "rl_zoo3.train", "--algo", algo, "--env", env_id, "-conf", str(preset_path(algo)),
        "-n", str(steps), "-f", str(tmp_path), "--eval-freq", "-1", "--seed", "0", cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    name = env_name(env_id)
    run = tmp_path / algo / f"{name}_1"
    assert (run / f"{name}.zip").is_file()
    used = dict(yaml.unsafe_load((run / name / "config.yml").read_text()))  # rl_zoo3 writes OrderedDict tags
    preset = load_preset(algo, env_id)
    for key, value in preset.items():
        if key not in RUN_KEYS and key != "policy_kwargs":
            assert used[key] == value, f"{key}: rl_zoo3 used {used[key]!r}, preset says {value!r}"


def test_rl_zoo3_enjoy_replays_our_run_with_its_statistics(tmp_path):
    """A normalised run trained by `surgsim train` succeeds when rl_zoo3 replays it."""
    train(quick_train_args(tmp_path, "ppo", "surgsim/NeedleReach-v0", 16_384, hyperparams={"normalize": True}))
    done = _zoo(
        "rl_zoo3.enjoy", "--algo", "ppo", "--env", "surgsim/NeedleReach-v0", "-f", str(tmp_path),
        "--exp-id", "1", "-n", "500", "--no-render", "--device", "cpu", cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Loading running average" in done.stdout
    found = re.search(r"Success rate: ([\d.]+)%", done.stdout)
    assert found, done.stdout[-2000:]
    assert float(found.group(1)) >= 80.0
