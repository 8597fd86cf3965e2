"""Demonstration datasets in Minari's format: collect / from-sessions round trips against fresh
replays of the same seeds, the degraded expert, crash safety and the `surgsim dataset` CLI."""

from __future__ import annotations

import errno
import sys

import gymnasium as gym
import minari
import numpy as np
import pytest
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.datasets import (
    DatasetError, Demonstrations, ExpertPolicy, collect, from_sessions, load_demonstrations,
)
from surgsim.datasets.collect import rollout
from surgsim.sessions import SessionError, SessionRecorder, read_session
from surgsim.sessions.io import write_session
from surgsim.tasks.experts import within_one_step

ENV = "surgsim/NeedleReach-v0"
DISCRETE = "surgsim/NeedleReachDiscrete-v0"
EXPERT = "surgsim/NeedleReach/expert-v0"
runner = CliRunner()


def expert_episode(env: gym.Env, seed: int, max_steps: int | None = None) -> dict:
    """Step the plain scripted expert from a reset with ``seed``: the expected data. An episode
    stopped after ``max_steps`` (the next reset cuts it short) counts as truncated."""
    obs, _ = env.reset(seed=seed)
    episode = {"observations": [obs], "actions": [], "rewards": [], "terminations": [], "truncations": []}
    done = False
    while not done and len(episode["actions"]) != max_steps:
        action = env.unwrapped.expert_action()
        obs, reward, terminated, truncated, info = env.step(action)
        for key, value in zip(("observations", "actions", "rewards", "terminations", "truncations"),
                              (obs, action, reward, terminated, truncated)):
            episode[key].append(value)
        done = terminated or truncated
    if not done:  # cut short: the recorder ends the episode with "stopped", a truncation
        episode["truncations"][-1] = True
    episode["success"] = bool(info["is_success"])
    return episode


def replay_expert(env_id: str, seed: int, **env_kwargs) -> dict:
    """The expert's episode on ``seed`` in a new env."""
    env = gym.make(env_id, **env_kwargs)
    episode = expert_episode(env, seed)
    env.close()
    return episode


def mean_random_return(env_id: str, seeds: range) -> float:
    """Uniform random actions, the action space seeded with each episode's seed (the stated reference)."""
    env = gym.make(env_id)
    returns = []
    for seed in seeds:
        env.action_space.seed(seed)
        env.reset(seed=seed)
        total, done = 0.0, False
        while not done:
            _, reward, terminated, truncated, _ = env.step(env.action_space.sample())
            total += reward
            done = terminated or truncated
        returns.append(total)
    env.close()
    return float(np.mean(returns))


def load(root, dataset: str, monkeypatch) -> minari.MinariDataset:
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(root))
    return minari.load_dataset(dataset)


def assert_episode_equal(stored, expected: dict) -> None:
    np.testing.assert_array_equal(stored.observations, np.array(expected["observations"]))
    np.testing.assert_array_equal(stored.actions, np.array(expected["actions"]))
    np.testing.assert_array_equal(stored.rewards, np.array(expected["rewards"]))
    assert stored.terminations.tolist() == expected["terminations"]
    assert stored.truncations.tolist() == expected["truncations"]


@pytest.fixture(scope="module")
def expert_root(tmp_path_factory):
    """3 expert episodes on seeds 5-7, reference scores over seeds 8-10."""
    root = tmp_path_factory.mktemp("datasets")
    assert collect(ENV, "expert", 3, root, seed=5, ref_episodes=3, progress=False) == root / EXPERT
    return root


# ------------------------------------------------------------------ collect round trip
def test_collect_round_trips_through_minari(expert_root, monkeypatch):
    data = load(expert_root, EXPERT, monkeypatch)
    expected = [replay_expert(ENV, seed) for seed in (5, 6, 7)]
    assert data.total_episodes == 3
    assert data.total_steps == sum(len(e["actions"]) for e in expected)
    for stored, episode in zip(data.iterate_episodes(), expected):
        assert len(stored.observations) == len(stored.actions) + 1  # the reset's observation first
        assert_episode_equal(stored, episode)
        assert stored.infos["is_success"][-1] == episode["success"]
    assert [m["seed"] for m in data.storage.get_episode_metadata(range(3))] == [5, 6, 7]
    assert data.recover_environment().spec.id == ENV
    meta = data.storage.metadata
    ref_min = mean_random_return(ENV, range(8, 11))
    ref_max = float(np.mean([sum(replay_expert(ENV, seed)["rewards"]) for seed in range(8, 11)]))
    assert meta["ref_min_score"] == pytest.approx(ref_min, rel=1e-12)
    assert meta["ref_max_score"] == pytest.approx(ref_max, rel=1e-12)
    assert meta["ref_min_score"] < meta["ref_max_score"]
    assert meta["num_episodes_average_score"] == 3
    assert meta["data_format"] == "arrow" and meta["algorithm_name"] == "the scripted expert"


def test_load_demonstrations_flattens_the_episodes(expert_root):
    demos = load_demonstrations(expert_root, EXPERT)
    expected = [replay_expert(ENV, seed) for seed in (5, 6, 7)]
    lengths = [len(e["actions"]) for e in expected]
    assert len(demos) == sum(lengths) and demos.episodes == 3 and demos.seeds == [5, 6, 7]
    assert demos.episode.tolist() == [i for i, n in enumerate(lengths) for _ in range(n)]
    observations = [np.array(e["observations"]) for e in expected]
    np.testing.assert_array_equal(demos.observations, np.concatenate([o[:-1] for o in observations]))
    np.testing.assert_array_equal(demos.next_observations, np.concatenate([o[1:] for o in observations]))
    same = demos.episode[:-1] == demos.episode[1:]
    np.testing.assert_array_equal(demos.next_observations[:-1][same], demos.observations[1:][same])
    np.testing.assert_array_equal(demos.actions, np.concatenate([e["actions"] for e in expected]))
    np.testing.assert_array_equal(demos.rewards, np.concatenate([e["rewards"] for e in expected]))
    ends = np.cumsum(lengths) - 1
    assert np.flatnonzero(demos.terminations).tolist() == ends.tolist()  # the expert reaches every target
    assert not demos.truncations.any()
    assert demos.success_rate == 1.0
    assert demos.ref_min_score < demos.ref_max_score
    assert demos.env_spec.id == ENV


def test_load_demonstrations_of_a_missing_dataset_names_it(tmp_path):
    with pytest.raises(DatasetError, match=r"no dataset surgsim/NeedleReach/none-v0 under .*none-v0\)"):
        load_demonstrations(tmp_path, "surgsim/NeedleReach/none-v0")


def test_returns_to_go_and_success_rate_by_hand():
    demos = Demonstrations(
        dataset="hand", env_spec=None, observations=np.zeros((5, 1)), actions=np.zeros(5),
        rewards=np.array([1.0, 2.0, 3.0, 4.0, 5.0]), next_observations=np.zeros((5, 1)),
        terminations=np.array([False, False, True, False, False]),
        truncations=np.array([False, False, False, False, True]), episode=np.array([0, 0, 0, 1, 1]),
        seeds=[0, 1], successes=np.array([True, False]), ref_min_score=None, ref_max_score=None,
    )
    # episode 0: 3; 2 + 0.5 * 3; 1 + 0.5 * 3.5.  episode 1 (truncated, not bootstrapped): 5; 4 + 0.5 * 5
    np.testing.assert_allclose(demos.returns_to_go(0.5), [2.75, 3.5, 3.0, 6.5, 5.0])
    np.testing.assert_allclose(demos.returns_to_go(1.0), [6.0, 5.0, 3.0, 9.0, 5.0])
    assert demos.success_rate == 0.5


# ------------------------------------------------------------------ the degraded expert
def actions_of(env_id: str, impairment: float, seeds) -> list[list]:
    """The actions of one ExpertPolicy rolled out on ``seeds`` in turn, in a new env."""
    env = gym.make(env_id)
    policy = ExpertPolicy(env, impairment)
    actions = [rollout(env, policy, seed).actions for seed in seeds]
    env.close()
    return actions


def test_impairment_zero_is_the_plain_expert():
    np.testing.assert_array_equal(actions_of(ENV, 0.0, [3])[0], replay_expert(ENV, 3)["actions"])
    assert actions_of(DISCRETE, 0.0, [3])[0] == replay_expert(DISCRETE, 3)["actions"]


@pytest.mark.parametrize("env_id", [ENV, DISCRETE])
def test_impairment_is_reproducible_per_seed_and_differs_from_the_expert(env_id, make_env):
    """An episode's degradation depends on its seed only, not on the episodes rolled out before."""
    (after_another,) = actions_of(env_id, 0.5, [3, 4])[1:]
    (alone,) = actions_of(env_id, 0.5, [4])
    assert len(after_another) == len(alone)
    np.testing.assert_array_equal(np.array(after_another), np.array(alone))
    expert = replay_expert(env_id, 4)["actions"]
    assert len(alone) != len(expert) or not np.array_equal(np.array(alone), np.array(expert))
    space = make_env(env_id).action_space
    assert all(space.contains(a) for a in alone)


def test_impairment_noise_keeps_its_direction_on_a_full_step(make_env, monkeypatch):
    """A noisy step longer than a full step is shortened along its own direction, not clipped per
    axis: clipping a full step on every axis would erase the noise on about half the axes (two or
    three axes pinned at +1 in most steps), so an impaired reach far from its target would look
    like the expert's."""
    env = make_env(ENV)
    monkeypatch.setattr(env.unwrapped, "expert_action", lambda: np.ones(3, dtype=np.float32))
    policy = ExpertPolicy(env, 1.0)
    policy.reset(0)
    actions = np.array([policy(None) for _ in range(400)])
    assert np.abs(actions).max() <= 1.0
    pinned = (np.abs(actions) == 1.0).sum(axis=1)
    assert pinned.max() == 1  # only the longest axis of a long step reaches a full step: never 2 or 3
    assert (pinned == 1).mean() > 0.5  # most steps are long ones, shortened along their direction


def test_within_one_step_keeps_the_direction() -> None:
    np.testing.assert_allclose(within_one_step(np.array([2.0, 1.0, -0.5])), [1.0, 0.5, -0.25])
    np.testing.assert_array_equal(within_one_step(np.array([0.3, -0.2, 1.0])), [0.3, -0.2, 1.0])


def test_impairment_lowers_success_on_discrete_and_slows_continuous(make_env):
    """Measured on seeds 0-9. NeedleReachDiscrete: success 100% at impairment 0, 20% at 1 (over 200
    seeds 40.5%, no block of 10 above 80%). Continuous NeedleReach forgives the noise: success stays
    100% at impairment 1 (200 seeds), the episodes get longer (mean 6.9 -> 16.0 steps on seeds 0-9)."""
    env = make_env(DISCRETE)
    success = {imp: np.mean([rollout(env, ExpertPolicy(env, imp), s).infos["is_success"][-1]
                             for s in range(10)])
               for imp in (0.0, 1.0)}
    assert success[0.0] == 1.0 and success[1.0] < success[0.0]
    env = make_env(ENV)
    steps = {imp: np.mean([len(rollout(env, ExpertPolicy(env, imp), s).actions) for s in range(10)])
             for imp in (0.0, 1.0)}
    assert steps[1.0] > steps[0.0]


# ------------------------------------------------------------------ action and observation spaces
def test_discrete_actions_are_stored_as_integers(tmp_path, monkeypatch):
    folder = collect(DISCRETE, "expert", 2, tmp_path, ref_episodes=2, progress=False)
    assert folder == tmp_path / "surgsim/NeedleReachDiscrete/expert-v0"
    data = load(tmp_path, "surgsim/NeedleReachDiscrete/expert-v0", monkeypatch)
    assert isinstance(data.action_space, gym.spaces.Discrete)
    for seed, stored in enumerate(data.iterate_episodes()):
        assert np.issubdtype(stored.actions.dtype, np.integer)
        assert_episode_equal(stored, replay_expert(DISCRETE, seed))
    assert np.issubdtype(load_demonstrations(tmp_path, "surgsim/NeedleReachDiscrete/expert-v0").actions.dtype,
                         np.integer)


def test_goal_observations_round_trip(tmp_path, monkeypatch):
    collect(ENV, "expert", 2, tmp_path, name="goal", ref_episodes=2, env_kwargs={"obs_type": "goal"},
            progress=False)
    data = load(tmp_path, "surgsim/NeedleReach/goal-v0", monkeypatch)
    assert isinstance(data.observation_space, gym.spaces.Dict)
    assert data.recover_environment().unwrapped.obs_type == "goal"
    for seed, stored in enumerate(data.iterate_episodes()):
        expected = replay_expert(ENV, seed, obs_type="goal")
        assert set(stored.observations) == {"observation", "achieved_goal", "desired_goal"}
        for key, values in stored.observations.items():
            np.testing.assert_array_equal(values, np.array([o[key] for o in expected["observations"]]))
        np.testing.assert_array_equal(stored.actions, np.array(expected["actions"]))
        np.testing.assert_array_equal(stored.rewards, np.array(expected["rewards"]))
    with pytest.raises(DatasetError, match="needs vector observations"):
        load_demonstrations(tmp_path, "surgsim/NeedleReach/goal-v0")


# ------------------------------------------------------------------ from recorded sessions
def record_expert(folder, env_id: str, seeds, trainee: str = "t01",
                  cut_after: dict | None = None) -> list[dict]:
    """Record one expert episode per seed with observations; ``cut_after[seed]`` steps end it by
    a reset."""
    env = SessionRecorder(gym.make(env_id), folder, trainee, record_obs=True)
    episodes = [expert_episode(env, seed, (cut_after or {}).get(seed)) for seed in seeds]
    env.close()
    return episodes


def record_one_step(folder, trainee: str = "t01"):
    """A session of one expert step, recorded without observations."""
    env = SessionRecorder(gym.make(ENV), folder, trainee)
    env.reset(seed=0)
    env.step(env.unwrapped.expert_action())
    env.close()
    return env.written[0]


@pytest.mark.parametrize("env_id", [ENV, DISCRETE])
def test_sessions_become_a_dataset(tmp_path, monkeypatch, env_id):
    expected = record_expert(tmp_path / "sessions", env_id, [1, 2, 3], cut_after={2: 3})
    folder = from_sessions(tmp_path / "sessions", tmp_path / "root", progress=False)
    name = env_id.split("/")[1].removesuffix("-v0")
    assert folder == tmp_path / "root" / "surgsim" / name / "sessions-v0"
    data = load(tmp_path / "root", f"surgsim/{name}/sessions-v0", monkeypatch)
    assert data.total_episodes == 3
    for stored, episode in zip(data.iterate_episodes(), expected):
        assert_episode_equal(stored, episode)
    assert stored.actions.dtype == (np.int64 if env_id == DISCRETE else np.float32)
    assert [m["seed"] for m in data.storage.get_episode_metadata(range(3))] == [1, 2, 3]
    assert data.recover_environment().spec.id == env_id


def test_a_recovered_session_ends_by_truncation(tmp_path, monkeypatch):
    """A session recovered from a crashed recording's journal (last event recording_interrupted)
    did not end the task: its episode is truncated."""
    expected = record_expert(tmp_path / "sessions", ENV, [4])[0]
    path = tmp_path / "sessions" / "t01-0001.parquet"
    session = read_session(path)
    session.meta["events"] = [{"time": float(session.time[-1]), "name": "recording_interrupted"}]
    session.meta["complete"] = False
    write_session(session, path)
    from_sessions(tmp_path / "sessions", tmp_path / "root", progress=False)
    stored = next(load(tmp_path / "root", "surgsim/NeedleReach/sessions-v0", monkeypatch).iterate_episodes())
    np.testing.assert_array_equal(stored.observations, np.array(expected["observations"]))
    assert not stored.terminations.any() and stored.truncations.tolist()[-1] is True


def test_sessions_without_observations_are_refused_by_name(tmp_path):
    record_one_step(tmp_path / "sessions", "t02")
    with pytest.raises(DatasetError, match=r"t02-0001\.parquet: no observations"):
        from_sessions(tmp_path / "sessions", tmp_path / "root", progress=False)
    assert not (tmp_path / "root").exists()


def test_sessions_of_two_envs_are_refused(tmp_path):
    record_expert(tmp_path / "sessions", ENV, [0], trainee="a")
    record_expert(tmp_path / "sessions", DISCRETE, [0], trainee="b")
    with pytest.raises(DatasetError, match="one simulator env") as raised:
        from_sessions(tmp_path / "sessions", tmp_path / "root", progress=False)
    assert ENV in str(raised.value) and DISCRETE in str(raised.value)


def test_sessions_of_two_difficulties_are_refused(tmp_path):
    """The dataset's env spec holds one difficulty; it used to take the first session's."""
    for difficulty, trainee in (("easy", "a"), ("hard", "b")):
        env = SessionRecorder(gym.make(ENV, difficulty=difficulty), tmp_path / "sessions", trainee,
                              record_obs=True)
        expert_episode(env, 0)
        env.close()
    with pytest.raises(DatasetError, match=r"one difficulty of surgsim/NeedleReach-v0; found \['easy', 'hard'\]"):
        from_sessions(tmp_path / "sessions", tmp_path / "root", progress=False)


# ------------------------------------------------------------------ crash safety
def test_an_existing_dataset_is_refused_before_any_episode(expert_root, monkeypatch):
    def no_rollout(*args, **kwargs):
        raise AssertionError("an episode was rolled out")

    # the package's `collect` (the function) hides the module of that name
    monkeypatch.setattr(sys.modules["surgsim.datasets.collect"], "rollout", no_rollout)
    with pytest.raises(DatasetError, match="expert-v0 already exists"):
        collect(ENV, "expert", 3, expert_root, progress=False)


@pytest.mark.parametrize("error", [OSError(errno.ENOSPC, "No space left on device"),
                                   RuntimeError("minari broke")])
def test_a_failed_write_leaves_nothing_under_the_root(tmp_path, monkeypatch, error):
    def broken(*args, **kwargs):
        raise error

    monkeypatch.setattr(minari, "create_dataset_from_buffers", broken)
    expected = DatasetError if isinstance(error, OSError) else RuntimeError
    with pytest.raises(expected) as raised:
        collect(ENV, "expert", 2, tmp_path / "root", ref_episodes=2, progress=False)
    if expected is DatasetError:
        assert str(raised.value) == f"cannot write {tmp_path / 'root' / EXPERT}: No space left on device"
    assert list((tmp_path / "root").iterdir()) == []  # no dataset, no temporary folder


# ------------------------------------------------------------------ CLI
def test_cli_collect_writes_once_then_refuses(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the default --out, "datasets", is relative
    args = ["dataset", "collect", "--env", ENV, "-n", "2", "--seed", "3", "--no-progress"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "dataset: datasets/surgsim/NeedleReach/expert-v0"
    data = load(tmp_path / "datasets", EXPERT, monkeypatch)
    assert [m["seed"] for m in data.storage.get_episode_metadata(range(2))] == [3, 4]
    assert data.storage.metadata["num_episodes_average_score"] == 20

    again = runner.invoke(app, args)
    assert again.exit_code == 2
    assert again.output.strip().splitlines() == [
        "error: datasets/surgsim/NeedleReach/expert-v0 already exists: choose another --name or --out"]


@pytest.mark.parametrize("args, message", [
    (["--env", ENV, "--impairment", "2"], "error: --impairment must be in [0, 1], got 2.0"),
    (["--env", ENV, "--name", "../escaped"], "error: --name '../escaped': use letters, digits, _ and - (no path, no -v<N> version suffix)"),
    (["--env", ENV, "--name", "expert-v3"], "error: --name 'expert-v3': use letters, digits, _ and - (no path, no -v<N> version suffix)"),
    (["--env", "surgsim/Nope-v0"],
     "error: unknown env id 'surgsim/Nope-v0'; `surgsim envs` lists the registered ids"),
    (["--env", ENV, "--policy", "some/missing/run"], "error: run folder some/missing/run does not exist"),
    (["--env", ENV, "--policy", "some/run", "--impairment", "0.5"],
     "error: --impairment degrades the scripted expert only; drop it with --policy RUN_DIR"),
])
def test_cli_collect_bad_input_exits_2_with_one_line(tmp_path, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["dataset", "collect", "-n", "2", "--no-progress", *args])
    assert result.exit_code == 2, result.output
    assert result.output.strip().splitlines() == [message]
    assert not (tmp_path / "datasets" / "surgsim").exists()


def test_cli_from_sessions(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    missing = runner.invoke(app, ["dataset", "from-sessions", "missing/"])
    assert missing.exit_code == 2
    assert missing.output.strip().splitlines() == ["error: missing: no such file or folder"]

    expected = record_expert(tmp_path / "sessions", ENV, [0, 1])
    result = runner.invoke(app, ["dataset", "from-sessions", "sessions", "--name", "trainees", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert result.output.strip().splitlines()[-1] == "dataset: datasets/surgsim/NeedleReach/trainees-v0"
    demos = load_demonstrations(tmp_path / "datasets", "surgsim/NeedleReach/trainees-v0")
    np.testing.assert_array_equal(demos.actions, np.concatenate([e["actions"] for e in expected]))


# ------------------------------------------------------------------ the recorder's observations
@pytest.mark.parametrize("obs_type", ["goal", "rgb"])
def test_record_obs_needs_vector_observations(tmp_path, make_env, obs_type):
    with pytest.raises(SessionError, match="record_obs needs vector observations"):
        SessionRecorder(make_env(ENV, obs_type=obs_type), tmp_path, "t01", record_obs=True)


def test_recorded_observations_read_back_exactly(tmp_path):
    expected = record_expert(tmp_path, ENV, [9])[0]
    session = read_session(tmp_path / "t01-0001.parquet")
    obs = np.array(expected["observations"])
    recorded = np.column_stack([session.channels[f"obs_{i}"] for i in range(obs.shape[1])])
    assert recorded.shape == obs.shape
    np.testing.assert_array_equal(recorded, obs.astype(np.float64))  # float32 values, exactly
    assert "obs_0" not in read_session(record_one_step(tmp_path / "plain")).channels

