"""A newcomer's first commands: the filmed demo, --version, python -m surgsim, extras named on error."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image, ImageSequence
from simhelpers import run_python
from typer.testing import CliRunner

import surgsim
from surgsim._extras import EXTRAS, MissingExtra, require
from surgsim.cli import app
from surgsim.rl.evaluate import run_episodes
from surgsim.rl.overlay import AnnotatedFrames

runner = CliRunner()


def _status_colours(frame: np.ndarray) -> set[str]:
    """Which status colours appear in the caption's last line (green success, red failure)."""
    band = frame[-frame.shape[0] // 20 - 12:, :, :].reshape(-1, 3).astype(int)
    r, g, b = band[:, 0], band[:, 1], band[:, 2]
    found = set()
    if np.any((g > 180) & (r < 140) & (b < 160)):
        found.add("green")
    if np.any((r > 200) & (g < 130) & (b < 130)):
        found.add("red")
    return found


def test_annotated_frames_film_whole_episodes_and_hold_the_outcome(make_env):
    env = AnnotatedFrames(make_env("surgsim/NeedleReach-v0", render_mode="rgb_array"),
                          episodes=2, width=320, hold_frames=5)
    steps = [0]

    def expert(obs):
        steps[-1] += 1
        return env.unwrapped.expert_action()

    result = run_episodes(env, expert, episodes=3, seed=0, on_episode=lambda i, info: steps.append(0))
    assert result.success_rate == 1.0
    # episodes 1 and 2 filmed: a frame after reset, one per step, then the held last frame
    assert len(env.frames) == sum(n + 1 + 5 for n in steps[:2])
    assert {f.shape[1] for f in env.frames} == {320}
    assert env.frames[0].shape[0] > 320  # the picture plus a caption band
    last = env.frames[steps[0]]  # the first episode's final frame
    assert _status_colours(last) == {"green"}
    assert _status_colours(env.frames[0]) == set()  # "in progress" is white


def test_a_failure_is_shown_in_red(make_env):
    env = AnnotatedFrames(make_env("surgsim/NeedleReachDiscrete-v0", render_mode="rgb_array"),
                          episodes=1, width=320, hold_frames=0)
    # action 1 (+x) every step drives the needle out of the workspace: a certain failure
    result = run_episodes(env, lambda obs: 1, episodes=1, seed=0)
    assert result.outcomes == {"workspace": 1}
    assert _status_colours(env.frames[-1]) == {"red"}
    assert _status_colours(env.frames[-2]) == set()  # the step before, still "in progress" (white)


def test_annotated_frames_need_an_rgb_env(make_env):
    with pytest.raises(ValueError, match="render_mode='rgb_array'"):
        AnnotatedFrames(make_env("surgsim/NeedleReach-v0"))


def test_demo_writes_a_gif_of_whole_episodes(tmp_path):
    out = tmp_path / "demo.gif"
    result = runner.invoke(app, ["demo", "--env", "surgsim/NeedleReach-v0", "-n", "3", "--film", "2",
                                 "--fps", "10", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "written:" in result.stdout and "2 episodes" in result.stdout
    gif = Image.open(out)
    frames = [frame.copy().convert("RGB") for frame in ImageSequence.Iterator(gif)]
    # identical held frames are merged by the GIF writer into one longer frame
    durations = [frame.info["duration"] for frame in ImageSequence.Iterator(Image.open(out))]
    assert gif.size[0] == 480
    assert len(frames) > 2 * 5  # two whole expert episodes of more than 5 steps each
    assert max(durations) >= 1000  # the outcome stays on screen for over a second
    assert sum(durations) >= 2 * 1500 + len(frames) * 100 - 2 * 100
    assert _status_colours(np.asarray(frames[-1])) == {"green"}


@pytest.mark.parametrize(("out", "message"), [
    ("demo.txt", "unsupported video format '.txt'"),
    ("a-file/demo.gif", "is not a folder"),
    ("/proc/demo.gif", "cannot write in /proc"),
])
def test_demo_refuses_an_output_it_cannot_write(tmp_path, out, message):
    (tmp_path / "a-file").write_text("")
    result = runner.invoke(app, ["demo", "-n", "1", "--out", str(tmp_path / out)])
    assert result.exit_code == 2
    assert message in result.output
    assert "Traceback" not in result.output


def test_version_flag():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"surgsim {surgsim.__version__}"


@pytest.mark.slow
def test_python_dash_m_surgsim_runs_the_cli():
    out = run_python("import sys; sys.argv = ['surgsim', '--version']; import runpy; runpy.run_module('surgsim', run_name='__main__')")
    assert out.strip() == f"surgsim {surgsim.__version__}"


def test_a_missing_extra_is_named_with_its_pip_command(monkeypatch):
    monkeypatch.setitem(EXTRAS, "train", ("stable_baselines3", "no_such_module_xyz"))
    with pytest.raises(MissingExtra, match=r"^training needs the 'train' extra \(missing: no_such_module_xyz\): "
                                           r"pip install 'surgsim\[train\]'$"):
        require("train", "training")
    result = runner.invoke(app, ["train", "--env", "surgsim/NeedleReach-v0", "-n", "10"])
    assert result.exit_code == 2
    assert "pip install 'surgsim[train]'" in result.output
    assert "no_such_module_xyz" in result.output


@pytest.mark.slow
def test_the_core_modules_import_without_torch():
    """The envs, sessions, scorer, planner and demo import in a process where torch cannot load."""
    code = (
        "import gymnasium as gym, surgsim, surgsim.sessions, surgsim.scoring, surgsim.planning\n"
        "import surgsim.cli, surgsim.rl.overlay, surgsim.rl.render, surgsim.rl.evaluate\n"
        "env = gym.make('surgsim/SurgicalPath-v0'); env.reset(seed=0); env.step(env.action_space.sample())\n"
        "print('ok')\n"
    )
    assert run_python(code, blocked=("torch", "stable_baselines3", "ray")).strip().endswith("ok")


def test_demo_writes_an_mp4_with_the_video_extra(tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "demo.mp4"
    result = runner.invoke(app, ["demo", "--env", "surgsim/NeedleReach-v0", "-n", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert out.read_bytes()[4:8] == b"ftyp"  # an ISO media (MP4) file


def test_render_refuses_a_video_format_before_loading_the_run(tmp_path):
    # the run folder does not even exist: the output is checked first, as in the demo
    result = runner.invoke(app, ["render", str(tmp_path / "no-run"), "--out", str(tmp_path / "run.avi")])
    assert result.exit_code == 2
    assert "unsupported video format '.avi'" in result.output and "Traceback" not in result.output
