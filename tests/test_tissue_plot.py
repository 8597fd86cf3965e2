"""The elastic-tissue figure: puncture detection, the episode recorder, the PNG, and the demo's
``<stem>_tissue.png``."""

from __future__ import annotations

import struct

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

import surgsim  # noqa: F401  (registers the envs)
from surgsim.cli import app
from surgsim.rl.tissue_plot import EpisodeTrace, find_puncture, plot_tissue

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def png_size(path) -> tuple[int, int]:
    """Width and height (pixels) from a PNG's header."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE
    return struct.unpack(">II", data[16:24])


def expert_episode(env_id: str, **kwargs) -> tuple[EpisodeTrace, list[bool], dict]:
    """The scripted expert's episode on seed 0, recorded; the task's own puncture state after
    each reset / step (the known answer for the puncture the figure marks); and the task's port,
    groove and line length at the end of that episode (before the next reset draws another)."""
    env = EpisodeTrace(gym.make(env_id, difficulty="medium", **kwargs))
    env.reset(seed=0)
    contact = getattr(env.unwrapped.task, "_contact", None)
    punctured = [bool(contact and contact.punctured)]
    done = False
    while not done:
        _, _, terminated, truncated, _ = env.step(env.unwrapped.expert_action())
        punctured.append(bool(env.unwrapped.task._contact.punctured) if contact else False)
        done = terminated or truncated
    task = env.unwrapped.task
    end = {name: np.copy(getattr(task, name)) for name in ("port", "cut_depth", "length")
           if hasattr(task, name)}
    env.reset(seed=1)  # a later episode is not recorded
    env.step(env.unwrapped.expert_action())
    env.close()
    return env, punctured, end


@pytest.mark.parametrize(("forces", "expected"), [
    ([0.0, 0.1, 0.5, 1.3, 0.4, 0.5, 0.6], 4),   # the capsule gives way after 1.3 N
    ([0.0, 0.5, 1.0, 1.5, 1.6], None),          # never drops
    ([0.0, 0.15, 0.05, 0.1], None),             # drops, but from below 0.2 N
    ([0.0, 1.0, 0.8, 0.1], 3),                  # a 20 % dip is not a puncture; the 87 % fall is
])
def test_find_puncture_is_the_first_large_drop_after_a_rise(forces, expected):
    assert find_puncture(forces) == expected


def test_surgical_path_figure_from_a_real_expert_episode(tmp_path):
    trace, punctured, end = expert_episode("surgsim/SurgicalPath-v0")
    assert trace.elastic and trace.done
    assert len(trace.infos) == len(punctured)  # the reset info, then one per step of episode 1
    # the force-drop rule marks the step at which the task's contact first reports a puncture
    force = [info["tool_force"] for info in trace.infos]
    assert True in punctured
    assert find_puncture(force) == punctured.index(True)
    np.testing.assert_array_equal(trace.port, end["port"])
    assert trace.cut_depth is None

    out = trace.plot(tmp_path / "figs" / "path.png", "SurgicalPath, seed 0")
    assert out == tmp_path / "figs" / "path.png"
    width, height = png_size(out)
    assert out.stat().st_size > 10_000
    assert (width, height) == (700, 520)  # two panels at 100 dpi
    assert [p.name for p in out.parent.iterdir()] == ["path.png"]  # no temporary left behind


def test_incision_figure_draws_blade_depth_and_the_groove(tmp_path):
    trace, punctured, end = expert_episode("surgsim/Incision-v0")
    assert "target_position" not in trace.infos[0]
    assert trace.cut_depth.shape == (81,)
    np.testing.assert_array_equal(trace.cut_depth, end["cut_depth"])
    assert trace.line_length == end["length"]
    assert trace.cut_depth.max() > 0  # the expert cut a groove
    assert find_puncture([info["tool_force"] for info in trace.infos]) == punctured.index(True)

    out = trace.plot(tmp_path / "cut.png", "Incision, seed 0")
    width, height = png_size(out)
    assert out.stat().st_size > 10_000
    assert height > 520  # the third panel: the groove along the line


def test_rigid_tissue_draws_nothing(tmp_path):
    trace, _, _ = expert_episode("surgsim/SurgicalPath-v0", tissue="rigid")
    assert trace.infos and not trace.elastic
    assert trace.plot(tmp_path / "rigid.png", "rigid") is None
    assert not (tmp_path / "rigid.png").exists()
    with pytest.raises(ValueError, match="tool_force"):
        plot_tissue(trace.infos, tmp_path / "rigid.png", "rigid", 2.0, 5.0)


def test_demo_writes_the_tissue_figure_next_to_the_film(tmp_path):
    out = tmp_path / "demo.gif"
    result = CliRunner().invoke(app, ["demo", "-n", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    figure = tmp_path / "demo_tissue.png"
    assert f"written: {figure}" in result.output
    assert png_size(figure) == (700, 520)
    assert figure.stat().st_size > 10_000
