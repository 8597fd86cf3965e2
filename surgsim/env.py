"""The Gymnasium environment joining a PyBullet World and a Task, and its registration."""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Mapping

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from surgsim._data import data_dir
from surgsim.actions import DiscreteActions
from surgsim.errors import EnvError
from surgsim.planning.reference import reference_strategy
from surgsim.polyline import Polyline, fast_clip
from surgsim.tasks import make_task
from surgsim.tasks.base import CONTROL_RATE_HZ
from surgsim.tasks.rewards import TERM_NAMES, reward_terms
from surgsim.tasks.spec import DIFFICULTIES, SpecError, TaskSpec, load_spec, parse_spec

if TYPE_CHECKING:  # PyBullet is imported when an env is built, not by `import surgsim`
    from surgsim.tasks.base import Measurement

ACTION_TYPES = ("continuous", "discrete")
TISSUE_MODELS = ("rigid", "elastic", "fem")
OBS_TYPES = ("state", "goal", "rgb", "depth")
REWARD_TYPES = ("dense", "sparse")


#: the largest seed surgsim's commands accept: NumPy's legacy seeding, and so SB3, stops there
MAX_SEED = 2**32 - 1
_COST_TERMS = ("time", "proximity", "damage", "failure")
#: info key of each reward term (written once, not formatted at every step)
_INFO_KEYS = {name: f"reward_{name}" for name in ("goal", *TERM_NAMES, "force")}


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise EnvError(f"{name}={value!r} is not valid; expected one of {list(allowed)}")
    return value


def resolve_spec(task_spec: str | Path | Mapping | TaskSpec) -> TaskSpec:
    """A spec from a model, a mapping, a YAML path, or the file name of a built-in spec."""
    if isinstance(task_spec, Mapping):
        return parse_spec(dict(task_spec))
    if isinstance(task_spec, (str, Path)):
        path = Path(task_spec)
        if not path.is_file():
            path = data_dir("envs") / path
        if not path.is_file():
            raise SpecError(f"{task_spec}: spec file not found (nor in {data_dir('envs')})")
        return load_spec(path)
    return task_spec


class SurgSimEnv(gym.Env):
    """A surgical task in PyBullet.

    Args:
        task_spec: spec model, mapping, YAML path, or file name of a spec in ``envs/``.
        action_type: ``"continuous"`` (Box in [-1, 1]; values outside are clipped) or
            ``"discrete"`` (2n+1 actions: no-op, then plus and minus along each degree of freedom).
        obs_type: ``"state"``, ``"goal"`` (Dict for HER; position-goal tasks only),
            ``"rgb"`` or ``"depth"`` (endoscope camera, ``image_size`` square).
        reward_type: ``"dense"`` (every shaped term) or ``"sparse"`` (success / failure only;
            with ``obs_type="goal"``: -1 until the goal is reached, plus the failure penalty).
        difficulty: ``"easy"``, ``"medium"`` or ``"hard"``; widens the anatomy randomisation.
        render_mode: ``"rgb_array"`` or ``"human"`` (a PyBullet GUI window).
        reference: the reference path of the tool tip; default: the spec's ``reference``
            (``"planner"`` for SurgicalPath, ``"straight"`` for the others).
            ``"straight"`` (the task's simple route;
            the progress reward is the task's own), ``"planner"`` (planned at every reset by
            :func:`surgsim.planning.plan`, collision-checked) or ``"predictor"`` (predicted by the
            checkpoint ``predictor`` from the pre-operative volume). With a planned or predicted
            reference the progress reward follows the path: its potential is minus the distance
            still to go along it (the tip's deviation from the path plus the path length ahead).
            The reference also drives the scripted expert, ``info["reference_deviation"]`` and
            ``info["distance_to_go"]``, and is what recorded sessions store.
        predictor: path of a predictor checkpoint (``reference="predictor"`` only).
        reference_obs: append the next reference waypoint, relative to the tip and divided by
            the spec's progress scale, to the state observation (3 more entries).
        tissue: the tissue model; default: the spec's ``tissue.model`` (``"elastic"``).
            ``"elastic"``: the tissue pushes back on the tool (``info["tool_force"]``, N), the
            anatomy moves under its load (``info["target_position"]``), forces reach the state
            observation (3 more entries), a ``force`` reward term and the ``excessive_force``
            failure (see :mod:`surgsim.sim.tissue`). ``"fem"``: the same interface, with the
            tissue a PyBullet finite-element soft body and every tissue force from the engine
            (see :mod:`surgsim.sim.fem_contact`; tens of steps/s, real time, for trainees and
            for checking the elastic tier). ``"rigid"``: geometry only, no force.

    ``reset(options={"patient": name})`` builds a named fixed patient from the spec.
    Episodes are truncated at the spec's ``max_episode_steps``.
    """

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": CONTROL_RATE_HZ}

    def __init__(
        self,
        task_spec: str | Path | Mapping | TaskSpec = "surgical_path.yaml",
        action_type: str = "continuous",
        obs_type: str = "state",
        reward_type: str = "dense",
        difficulty: str = "medium",
        render_mode: str | None = None,
        reference: str | None = None,
        predictor: str | Path | None = None,
        reference_obs: bool = False,
        tissue: str | None = None,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise TypeError(
                f"SurgSimEnv got unknown keyword argument(s) {sorted(unknown)}; valid: task_spec, "
                "action_type, obs_type, reward_type, difficulty, render_mode, reference, predictor, "
                "reference_obs, tissue"
            )
        self.task_spec = resolve_spec(task_spec)
        if tissue is not None:
            model = _choice("tissue", tissue, TISSUE_MODELS)
            spec_tissue = self.task_spec.tissue.model_copy(update={"model": model})
            self.task_spec = self.task_spec.model_copy(update={"tissue": spec_tissue})
        #: the tissue model in use, ``"rigid"``, ``"elastic"`` or ``"fem"``
        self.tissue = self.task_spec.tissue.model
        self.action_type = _choice("action_type", action_type, ACTION_TYPES)
        self.obs_type = _choice("obs_type", obs_type, OBS_TYPES)
        self.reward_type = _choice("reward_type", reward_type, REWARD_TYPES)
        self.difficulty = _choice("difficulty", difficulty, DIFFICULTIES)
        if render_mode is not None:
            _choice("render_mode", render_mode, tuple(self.metadata["render_modes"]))
        self.render_mode = render_mode
        self.task = make_task(self.task_spec)
        self.reference = reference or self.task_spec.reference
        self.reference_obs = bool(reference_obs)
        if self.reference_obs and self.obs_type not in ("state", "goal"):
            raise EnvError(f"reference_obs=True needs obs_type 'state' or 'goal', not {obs_type!r}")
        self._strategy = reference_strategy(self.reference, self.task_spec, predictor)
        #: where the current reference path came from: the ``reference`` asked for, or
        #: ``"straight"`` when the planner found no path for this patient (with a warning)
        self.reference_source = self.reference
        self._reference = Polyline(np.zeros((1, 3)))
        self._reference_s = self._deviation = self._to_go = 0.0
        if obs_type == "goal" and not self.task.position_goal:
            raise EnvError(
                f"obs_type='goal' needs a task whose goal is a position; {self.task_spec.name} has none"
            )

        n = self.task.action_dim
        if self.action_type == "continuous":
            self.action_space = spaces.Box(-1.0, 1.0, (n,), np.float32)
        else:
            self._codec = DiscreteActions(n)
            self.action_space = spaces.Discrete(self._codec.size)
        self.observation_space = self._make_observation_space()
        if self.obs_type == "goal":
            # Only goal envs expose compute_reward: SB3 and HER tools take its presence to mean
            # a GoalEnv with Dict observations.
            self.compute_reward = self._compute_reward
        self._max_steps = self.task_spec.max_episode_steps
        self._steps = 0

        renders = render_mode is not None or self.obs_type in ("rgb", "depth")
        from surgsim.sim import World

        self.world = World(gui=render_mode == "human", visuals=renders)
        self.task.attach(self.world)
        self._dense = self.reward_type == "dense"
        self._potential = 0.0
        elastic = self.tissue != "rigid"
        self._costs = (*_COST_TERMS, "force") if elastic else _COST_TERMS
        self._terms = (*TERM_NAMES, "force") if elastic else TERM_NAMES

    def _make_observation_space(self) -> spaces.Space:
        size = self.task_spec.image_size
        n_state = self.task.obs_dim + (3 if self.reference_obs else 0)
        state = spaces.Box(-np.inf, np.inf, (n_state,), np.float32)
        if self.obs_type == "state":
            return state
        if self.obs_type == "goal":
            goal = spaces.Box(-np.inf, np.inf, (3,), np.float32)
            return spaces.Dict({"observation": state, "achieved_goal": goal, "desired_goal": goal})
        if self.obs_type == "rgb":
            return spaces.Box(0, 255, (size, size, 3), np.uint8)
        return spaces.Box(0.0, self.task_spec.camera.far, (size, size, 1), np.float32)

    # ---------------------------------------------------------------- API
    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        rng, difficulty = self.np_random, self.difficulty
        options = dict(options or {})
        patient = options.pop("patient", None)
        if options:
            raise EnvError(f"unknown reset option(s) {sorted(options)}; valid: ['patient']")
        if patient is not None:
            patients = self.task_spec.patients
            if patient not in patients:
                raise EnvError(
                    f"unknown patient {patient!r} for {self.task_spec.name}; known: {sorted(patients)}"
                )
            rng = np.random.default_rng(patients[patient].seed)
            difficulty = patients[patient].difficulty
        m = self.task.reset(rng, difficulty)
        self._steps = 0
        points, self.reference_source = self._strategy.make(self.task)
        self._reference = Polyline(points, "reference path")
        self._potential = self._track(m)
        zero = dict.fromkeys(self._term_names(), 0.0)
        return self._observation(m), self._info(m, zero)

    def step(self, action):
        m = self.task.step(self._to_unit_action(action))
        potential_after = self._track(m)
        task = self.task
        failure = m.failure_reason is not None
        spec = self.task_spec
        terms = reward_terms(
            spec.reward,
            gamma=spec.gamma,
            potential_before=self._potential,
            # Phi is not zeroed at terminal states: that would pay the whole remaining potential
            # as a bonus on failure (measured: +18 against a -10 penalty on Incision)
            potential_after=potential_after,
            clearance=m.clearance,
            safety_margin=task.safety_margin,
            damage_increment=m.damage_increment * task.damage_to_reward_units,
            success=m.success,
            failure=failure,
            dense=self._dense,
            force=None if m.force is None else (math.sqrt(sum(f * f for f in m.force)), task.safe_force),
        )
        self._potential = potential_after
        observation = self._observation(m)
        if self.obs_type == "goal":
            costs = sum(terms[k] for k in self._costs)
            achieved, desired = observation["achieved_goal"], observation["desired_goal"]
            goal = float(self._goal_term(np.linalg.norm(achieved - desired)))
            terms = {"goal": goal, **{k: terms[k] for k in self._costs}}
            info = self._info(m, terms)
            info["goal_independent_reward"] = costs
            # computed exactly as HER will recompute it, from the float32 goals
            reward = float(self._compute_reward(achieved, desired, info))
        else:
            info = self._info(m, terms)
            reward = sum(terms.values())
        self._steps += 1
        truncated = self._steps >= self._max_steps and not (m.success or failure)
        return observation, reward, m.success or failure, truncated, info

    def render(self):
        if self.render_mode == "rgb_array":
            size = self.task_spec.render_size
            return self.task.camera.rgb(self.world, size, size)
        return None

    def close(self) -> None:
        self.task.close()
        self.world.close()

    # ----------------------------------------------------------- helpers
    def _compute_reward(self, achieved_goal, desired_goal, info) -> np.ndarray:
        """Vectorised goal reward for HER, computable from the goals alone.

        SB3's ``HerReplayBuffer`` passes empty info dicts by default, so ``info`` is optional.
        The reward is the goal term (dense: ``-distance / scale``; sparse: -1 until within
        tolerance, else 0) plus the goal-independent costs: ``info["goal_independent_reward"]``
        when given (step infos; SB3's ``copy_info_dict=True``), else the costs the goals and the
        spec decide: the dense time cost and the failure penalty for failures the achieved goal
        alone decides (:meth:`Task.goal_failure`; NeedleReach: leaving the workspace). Without
        info it therefore leaves out only the terms that depend on the patient's anatomy
        (SurgicalPath's proximity, damage and failures); on NeedleReach it is exact.
        ``info``: a dict (for every goal), a sequence of dicts (one per goal) or None.
        Exposed as ``compute_reward`` when ``obs_type="goal"``.
        """
        # float64 throughout, so that one goal and a batch round the same way
        achieved, desired = np.asarray(achieved_goal, np.float64), np.asarray(desired_goal, np.float64)
        reward = self._goal_term(np.linalg.norm(achieved - desired, axis=-1))
        weights = self.task_spec.reward
        known = -weights.failure * self.task.goal_failure(achieved) - (weights.time if self._dense else 0.0)
        known = np.broadcast_to(known, np.shape(reward))
        if info is None or isinstance(info, Mapping):
            infos = np.full(np.shape(reward), info or {}, dtype=object)
        else:
            infos = np.asarray(info, dtype=object).reshape(np.shape(reward))
        costs = [one.get("goal_independent_reward", k) for one, k in zip(infos.ravel(), known.ravel())]
        return np.asarray(reward + np.reshape(costs, np.shape(reward)), dtype=np.float32)

    def _goal_term(self, distance):
        if self._dense:
            return -np.asarray(distance) / self.task.progress_scale
        return -(np.asarray(distance) > self.task.tolerance).astype(np.float64)

    def expert_action(self):
        """The scripted expert's action in this env's action space.

        With ``reference="straight"`` the task's own expert; otherwise it pursues the reference
        path: it moves (in configuration space) towards the point one lookahead ahead of the tip's
        projection on the path.
        """
        unit = self._strategy.expert_action(self.task, self._reference_ahead)
        if self.action_type == "continuous":
            return unit.astype(np.float32)
        return self._codec.encode(unit)

    def reference_path(self) -> np.ndarray:
        """The current patient's reference path of the tool tip, (N, 3) in metres."""
        return self._reference.points.copy()

    def preop_volume(self, resolution: int | None = None):
        """The current patient's pre-operative volume (:class:`surgsim.planning.Volume`)."""
        from surgsim.planning.volume import preop_volume

        return preop_volume(self.task, resolution)

    # ------------------------------------------------------- reference path
    def _track(self, m: Measurement) -> float:
        """Project the tip on the reference path; the progress potential: the task's own, or with
        a planned or predicted reference, minus the distance to go along it."""
        s, deviation = self._reference.project(m.tip)
        self._reference_s, self._deviation = s, deviation
        self._to_go = deviation + self._reference.length - s
        return self._strategy.potential(m, self._to_go, self.task.progress_scale)

    def _reference_ahead(self) -> np.ndarray:
        """The next reference waypoint: one lookahead beyond the tip's projection on the path."""
        return self._reference.point_at(self._reference_s + self.task.reference_lookahead)

    def _to_unit_action(self, action) -> np.ndarray:
        if self.action_type == "discrete":
            return self._codec.decode(action)
        a = np.asarray(action, dtype=np.float64)
        if a.shape != self.action_space.shape:
            raise EnvError(f"action shape {a.shape} does not match {self.action_space.shape}")
        # math.isfinite on the few floats: the same test as np.isfinite(a).all(), a microsecond sooner
        if not all(map(math.isfinite, a.tolist())):
            raise EnvError(f"action contains NaN or infinite values: {a.tolist()}")
        return fast_clip(a, -1.0, 1.0)  # a.clip(-1.0, 1.0) without its dispatch (same bits)

    def _term_names(self) -> Iterable[str]:
        return ("goal", *self._costs) if self.obs_type == "goal" else self._terms

    def _state(self, m: Measurement) -> np.ndarray:
        state = m.state
        if not self.reference_obs:
            return state
        ahead = (self._reference_ahead() - m.tip) / self.task.progress_scale
        return np.concatenate([state, ahead.astype(np.float32)])

    def _observation(self, m: Measurement):
        if self.obs_type == "state":
            return self._state(m)
        if self.obs_type == "goal":
            return {
                "observation": self._state(m),
                "achieved_goal": m.tip.astype(np.float32),
                "desired_goal": m.goal.astype(np.float32),
            }
        size = self.task_spec.image_size
        if self.obs_type == "rgb":
            return self.task.camera.rgb(self.world, size, size)
        return self.task.camera.rgbd(self.world, size, size)[1][:, :, None]

    def _info(self, m: Measurement, terms: Mapping[str, float]) -> dict[str, Any]:
        info = {_INFO_KEYS[name]: value for name, value in terms.items()}
        info.update(
            is_success=m.success,
            is_failure=m.failure_reason is not None,
            failure_reason=m.failure_reason,
            distance_to_target=m.distance,
            clearance=m.clearance,
            depth=m.depth,
            tissue_damage=m.damage_total,
            tip_position=m.tip.copy(),
            tip_orientation=m.tip_orientation,
            reference_deviation=self._deviation,
            distance_to_go=self._to_go,
        )
        if m.force is not None:
            vector = np.array(m.force)
            info.update(
                tool_force=float(math.sqrt(vector @ vector)),
                tool_force_vector=vector,
                critical_force=m.critical_force,
                critical_contact=m.critical_contact,
            )
            if m.goal is not None:
                info["target_position"] = m.goal.copy()
        return info


# ------------------------------------------------------------- registration
#: registered id -> one-line description, filled by :func:`register_envs`
REGISTERED: dict[str, str] = {}


def register_envs() -> None:
    """Register ``surgsim/<Name>-v0`` and ``surgsim/<Name>Discrete-v0`` for every spec in envs/."""
    for path in sorted(data_dir("envs").glob("*.yaml")):
        spec = load_spec(path)
        for suffix, action_type in (("", "continuous"), ("Discrete", "discrete")):
            env_id = f"surgsim/{spec.name}{suffix}-v0"
            REGISTERED[env_id] = spec.description + (" (discrete actions)" if suffix else "")
            if env_id in gym.registry:
                continue
            # no max_episode_steps: the env truncates at its own spec's limit, which a custom
            # task_spec may set longer or shorter than the built-in spec's
            gym.register(
                id=env_id,
                entry_point="surgsim.env:SurgSimEnv",
                kwargs={"task_spec": path.name, "action_type": action_type},
            )
