"""The session recorder (episodes become sessions, crashes lose at most a second), `surgsim play` and `eval --record`."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap

import gymnasium as gym
import numpy as np
import pytest
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.sessions import SessionError, SessionRecorder, read_meta, read_session, recover_partial

runner = CliRunner()


def test_expert_episode_becomes_a_session(tmp_path):
    env = SessionRecorder(gym.make("surgsim/NeedleReach-v0"), tmp_path, "expert", labels={"skill": "E"})
    _, info = env.reset(seed=7)
    tips, actions, rewards = [info["tip_position"]], [], []
    done = False
    while not done:
        action = env.unwrapped.expert_action()
        _, reward, terminated, truncated, info = env.step(action)
        tips.append(info["tip_position"])
        actions.append(action)
        rewards.append(reward)
        done = terminated or truncated
    assert info["is_success"]
    env.close()
    assert env.written == [tmp_path / "expert-0001.parquet"]

    session = read_session(env.written[0])
    n = len(tips)
    np.testing.assert_allclose(session.time, np.arange(n) / 20.0)  # NeedleReach runs at 20 Hz
    np.testing.assert_array_equal(session.tracks["tool"].position, np.array(tips))
    np.testing.assert_allclose(np.linalg.norm(session.tracks["tool"].orientation, axis=1), 1.0, atol=1e-6)
    recorded_actions = np.column_stack([session.channels[f"action_{i}"] for i in range(3)])
    np.testing.assert_allclose(recorded_actions[1:], np.array(actions), rtol=1e-6)
    np.testing.assert_array_equal(recorded_actions[0], 0.0)
    np.testing.assert_allclose(session.channels["reward"], [0.0, *rewards])
    assert session.channels["success"].tolist() == [False] * (n - 1) + [True]
    assert "clearance" not in session.channels  # NeedleReach has no critical structure to measure from
    np.testing.assert_allclose(
        session.channels["distance_to_target"][-1],
        np.linalg.norm(np.array(tips[-1]) - np.array(session.meta["target"])),
    )
    meta = session.meta
    assert meta["complete"] is True and meta["trainee"] == "expert" and meta["labels"] == {"skill": "E"}
    assert meta["source"]["env_id"] == "surgsim/NeedleReach-v0" and meta["source"]["seed"] == 7
    assert meta["sampling_rate_hz"] == 20.0 and meta["task"] == "NeedleReach"
    assert meta["events"] == [{"time": (n - 1) / 20.0, "name": "success"}]
    assert np.asarray(meta["reference_path"]).shape[1] == 3
    assert not list(tmp_path.glob("*.partial"))


def test_episodes_are_numbered_and_cut_short_ones_marked_incomplete(tmp_path):
    env = SessionRecorder(gym.make("surgsim/SurgicalPathDiscrete-v0"), tmp_path, "t07")
    env.reset(seed=1)
    for action in (1, 3, 5):
        env.step(action)
    env.reset(seed=2)  # the first episode is cut short by a reset
    env.reset(seed=3)  # no step: nothing worth keeping
    env.step(0)
    env.step(2)
    env.close()
    assert [p.name for p in env.written] == ["t07-0001.parquet", "t07-0002.parquet"]
    first = read_session(env.written[0])
    assert first.channels["action_0"].tolist() == [0.0, 1.0, 3.0, 5.0]  # discrete actions as indices
    assert first.meta["complete"] is False and first.meta["events"] == [{"time": 0.15, "name": "stopped"}]
    assert "clearance" in first.channels and "depth" in first.channels
    assert read_meta(env.written[1])["source"]["seed"] == 3
    # a new recorder in the same folder never overwrites
    again = SessionRecorder(gym.make("surgsim/SurgicalPathDiscrete-v0"), tmp_path, "t07")
    again.reset(seed=4)
    again.step(0)
    again.close()
    assert again.written == [tmp_path / "t07-0003.parquet"]


_KILLED = textwrap.dedent(
    """
    import os, signal, sys
    import gymnasium as gym, numpy as np, surgsim
    from surgsim.sessions import SessionRecorder
    env = SessionRecorder(gym.make("surgsim/NeedleReach-v0"), sys.argv[1], "t01", flush_every_s=1.0)
    _, info = env.reset(seed=0)
    tips = [info["tip_position"]]
    for _ in range(int(sys.argv[2])):
        _, _, terminated, truncated, info = env.step(np.zeros(3, dtype=np.float32))
        tips.append(info["tip_position"])
        assert not (terminated or truncated)
    np.save(os.path.join(sys.argv[1], "tips.npy"), np.array(tips), allow_pickle=False)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.mark.slow
def test_killed_recording_never_reads_complete_and_recovers_all_but_the_last_second(tmp_path):
    steps = 35  # 1.75 s at 20 Hz: the journal holds the first flushed second, the rest is lost
    proc = subprocess.run([sys.executable, "-c", _KILLED, str(tmp_path), str(steps)], capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    tips = np.load(tmp_path / "tips.npy", allow_pickle=False)
    journal = tmp_path / "t01-0001.parquet.partial"
    assert journal.exists() and not (tmp_path / "t01-0001.parquet").exists()
    for read in (read_session, read_meta):
        with pytest.raises(SessionError, match=r"t01-0001\.parquet\.partial: an unfinished recording journal"):
            read(journal)

    result = runner.invoke(app, ["session", "recover", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "recovered: t01-0001.parquet" in result.output and "complete: false" in result.output
    assert not journal.exists()
    session = read_session(tmp_path / "t01-0001.parquet")
    assert session.meta["complete"] is False
    assert session.meta["events"][-1]["name"] == "recording_interrupted"
    lost = steps / 20.0 - session.time[-1]
    assert 0.0 <= lost <= 1.0
    assert session.n_samples >= 21  # at least the first second (rows 0..20) was flushed
    np.testing.assert_array_equal(session.tracks["tool"].position, tips[: session.n_samples])


def test_recover_errors(tmp_path):
    with pytest.raises(SessionError, match=r"x\.parquet\.partial: no such file"):
        recover_partial(tmp_path / "x.parquet.partial")
    garbage = tmp_path / "y.parquet.partial"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(SessionError, match=r"y\.parquet\.partial: "):
        recover_partial(garbage)
    result = runner.invoke(app, ["session", "recover", str(tmp_path / "empty")])
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # a reported failure, not a crash (also exit 1)
    assert f"1 of 1 file(s) could not be recovered:\n{tmp_path / 'empty'}: no such file" in result.output


def test_recorder_refuses_a_bad_trainee_id(tmp_path):
    with pytest.raises(ValueError, match=r"trainee id 'Jane Doe' is not valid"):
        SessionRecorder(gym.make("surgsim/NeedleReach-v0"), tmp_path, "Jane Doe")


# ------------------------------------------------------------------ play
def test_play_with_scripted_keys_records_a_session(tmp_path):
    keys = tmp_path / "keys.txt"
    keys.write_text("ddd www\neee ..\n")
    out = tmp_path / "sessions"
    result = runner.invoke(app, ["play", "--env", "surgsim/NeedleReach-v0", "--trainee", "t07", "--record", str(out),
                                 "--keys-file", str(keys), "--seed", "5"])
    assert result.exit_code == 0, result.output
    assert f"written: {out / 't07-0001.parquet'} (incomplete)" in result.output
    session = read_session(out / "t07-0001.parquet")
    assert session.n_samples == 12  # reset + one row per key
    actions = np.column_stack([session.channels[f"action_{i}"] for i in range(3)])
    np.testing.assert_array_equal(actions[1:4], [[1, 0, 0]] * 3)  # d: +x
    np.testing.assert_array_equal(actions[4:7], [[0, 1, 0]] * 3)  # w: +y
    np.testing.assert_array_equal(actions[7:10], [[0, 0, 1]] * 3)  # e: +z
    np.testing.assert_array_equal(actions[10:], 0.0)  # '.': no motion
    position = session.tracks["tool"].position
    assert position[3, 0] > position[0, 0] and position[6, 1] > position[3, 1] and position[9, 2] > position[6, 2]
    assert session.meta["trainee"] == "t07" and session.meta["source"]["seed"] == 5


def test_play_discrete_env_maps_keys_to_action_indices(tmp_path):
    result = runner.invoke(app, ["play", "--env", "surgsim/IncisionDiscrete-v0", "--trainee", "t08",
                                 "--record", str(tmp_path), "--keys", "dwq.a", "--seed", "0"])
    assert result.exit_code == 0, result.output
    session = read_session(tmp_path / "t08-0001.parquet")
    # index 0 is no motion, then (+, -) per axis: d = +axis 0 -> 1, w = +axis 1 -> 3, q = -axis 2 -> 6
    assert session.channels["action_0"].tolist() == [0, 1, 3, 6, 0, 2]


def test_play_rejects_unknown_keys_and_envs(tmp_path):
    argv = ["play", "--trainee", "t07", "--record", str(tmp_path)]
    result = runner.invoke(app, [*argv, "--env", "surgsim/NeedleReach-v0", "--keys", "wz"])
    assert result.exit_code == 2 and "--keys: unknown key(s) ['z']" in result.output
    result = runner.invoke(app, [*argv, "--env", "surgsim/Nope-v0", "--keys", "w"])
    assert result.exit_code == 2 and "unknown env id 'surgsim/Nope-v0'" in result.output
    assert not list(tmp_path.iterdir())


# ------------------------------------------------------------------ eval --record
def test_eval_record_writes_one_session_per_episode(tmp_path):
    from surgsim.rl.train import TrainArgs, train

    run = train(TrainArgs(algo="ppo", env_id="surgsim/NeedleReach-v0", n_timesteps=256, seed=0,
                          log_folder=str(tmp_path / "logs"), eval_freq=256, eval_episodes=2, device="cpu",
                          progress_bar=False, n_envs=1, hyperparams={"n_steps": 128, "batch_size": 64}))
    out = tmp_path / "agent"
    result = runner.invoke(app, ["eval", str(run), "--episodes", "3", "--seed", "10", "--device", "cpu",
                                 "--record", str(out)])
    assert result.exit_code == 0, result.output
    assert "recorded 3 session(s)" in result.output
    paths = sorted(out.glob("*.parquet"))
    assert [p.name for p in paths] == [f"agent-ppo-000{i}.parquet" for i in (1, 2, 3)]
    seeds = [read_session(p).meta["source"]["seed"] for p in paths]
    assert seeds == [10, 11, 12]
    assert all(read_meta(p)["complete"] for p in paths)


def test_elastic_sessions_record_the_tool_force_and_the_scorer_grades_it(tmp_path):
    """contact_force is the env's tool_force at every sample and the scorer's force metrics read it
    (an Incision expert cuts below the 2 N excessive-force threshold); a blade pushed straight down
    cuts into the vessel layer: the session ends in bleeding with the touch recorded."""
    env = SessionRecorder(gym.make("surgsim/Incision-v0"), tmp_path, "t")
    forces = []
    for policy in (lambda: env.unwrapped.expert_action(), lambda: np.array([0.0, 0.0, -1.0], np.float32)):
        _, info = env.reset(seed=3)
        episode = [info["tool_force"]]
        done = False
        while not done:
            _, _, terminated, truncated, info = env.step(policy())
            episode.append(info["tool_force"])
            done = terminated or truncated
        forces.append(episode)
    env.close()
    from surgsim.scoring.score import grade_session

    expert, pushed = (read_session(path) for path in env.written)
    np.testing.assert_allclose(expert.channels["contact_force"], forces[0])
    np.testing.assert_allclose(pushed.channels["contact_force"], forces[1])
    graded = grade_session(expert)
    assert graded.metrics.combined["contact_force_peak"] == pytest.approx(max(forces[0]))
    assert 0 < max(forces[0]) < 2.0
    assert not [e for e in graded.critical_errors if e.kind == "excessive_force"]
    # the pushed blade cuts into the vessel layer: bleeding, with the touch recorded as critical
    assert pushed.meta["events"][-1]["name"] == "bleeding"
    assert pushed.channels["critical_contact"][-1]
    kinds = {e.kind for e in grade_session(pushed).critical_errors}
    assert "bleeding" in kinds or "critical_contact" in kinds


def test_rigid_sessions_have_no_force_channel(tmp_path):
    env = SessionRecorder(gym.make("surgsim/Incision-v0", tissue="rigid"), tmp_path, "t")
    env.reset(seed=3)
    env.step(env.unwrapped.expert_action())
    env.close()
    assert "contact_force" not in read_session(env.written[0]).channels
