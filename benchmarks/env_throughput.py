#!/usr/bin/env python
"""Environment throughput benchmark for surgsim: steps per second with random actions.

Measures, in one run:

* every registered ``surgsim/*-v0`` id made with ``gym.make`` (state observations, one process);
* image observations (``obs_type="rgb"``) on SurgicalPath and NeedleReach;
* the same ids in a 2-env ``SyncVectorEnv`` and a 2-worker ``AsyncVectorEnv`` (total env steps/s);
* a raw PyBullet reference for each task family: that family's scene in one env, with only the
  PyBullet calls one env step of that task makes, in a bare loop (see ``RAW_CALLS``), and a bare
  ``stepSimulation`` loop of the SurgicalPath scene;
* panda-gym's ``PandaReach-v3`` as the peer, when panda-gym is installed (``pip install panda-gym``
  or the ``bench`` extra); skipped, with a note, when it is not.

Each state-observation id is compared with its own family's raw reference (goal: at least
``RAW_GOAL`` of it, i.e. Python overhead at most as costly as the queries) and with PandaReach-v3
(goal: at least ``PEER_GOAL`` times its steps/s).

Random actions are sampled from the action space before the clock starts; an episode that ends
(terminated or truncated) is reset inside the timed loop, so reset cost is included. Each case
is timed ``--repeats`` times on the same env and the best repeat is reported (spread = how far
the worst repeat fell below the best). The verdicts compare the single-process figures with the
project's goals; this is a measurement, so the exit code is 0 whatever they say.

    python benchmarks/env_throughput.py            # default, about 2-3 minutes on 2 cores
    python benchmarks/env_throughput.py --quick    # smoke run, under 30 s
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import datetime
import functools
import json
import math
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

import gymnasium as gym
import numpy as np

# Run from a checkout without installing: put the repository root on the path.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

import surgsim  # registers the surgsim/ ids

#: goals (steps/s, one process, state observations), by task family
GOALS = {"NeedleReach": 20_000, "SurgicalPath": 8_000, "Incision": 8_000}
#: goal for image observations (steps/s, one process)
IMAGE_GOAL = 500
IMAGE_IDS = ("surgsim/SurgicalPath-v0", "surgsim/NeedleReach-v0")
#: the env id whose scene each family's raw reference uses: the family's plain id
RAW_IDS = {fam: f"surgsim/{fam}-v0" for fam in GOALS}
#: the PyBullet calls one env step of each family makes (read off its task's step and measure)
RAW_CALLS = {
    "NeedleReach": "1 resetBasePositionAndOrientation (tool.move) + 1 getBasePositionAndOrientation "
                   "(orientation)",
    "SurgicalPath": "1 resetBasePositionAndOrientation (tool.move) + 1 getClosestPoints per critical "
                    "structure (clearance) + 1 rayTest (tissue length) + 1 getBasePositionAndOrientation",
    "Incision": "1 resetBasePositionAndOrientation (tool.move) + 1 rayTest (depth) + 1 getClosestPoints "
                "(clearance) + 1 getBasePositionAndOrientation",
}
#: goals of a state-observation id: at least this fraction of its family's raw reference ...
RAW_GOAL = 0.5
#: ... and at least this many times PandaReach-v3's steps/s (issue 12, rigid tissue: the raw
#: references make the calls of a rigid step) ...
PEER_GOAL = 24.0
#: ... and with the default elastic tissue at least this many times (issue 13)
ELASTIC_PEER_GOAL = 10.0
TISSUES = ("elastic", "rigid")
#: the id whose scene the bare stepSimulation reference steps
STEPSIM_ID = RAW_IDS["SurgicalPath"]
PEER_ID = "PandaReach-v3"
SEED = 0

clock = time.perf_counter


# --------------------------------------------------------------------------- results
@dataclass
class Result:
    name: str  # env id or reference name
    runner: str  # "1 proc", "Sync x2", "Async x2", "raw", "peer"
    obs: str
    steps: int  # timed env steps per repeat
    rates: list[float] = field(default_factory=list)  # env steps/s of each repeat
    episodes: list[int] = field(default_factory=list)  # episode ends in each repeat
    reset_s: list[float] = field(default_factory=list)  # time spent in reset() in each repeat
    note: str = ""
    tissue: str = ""  # a surgsim id's tissue model ("" for references and image cases)

    @property
    def label(self) -> str:
        return f"{self.name} [{self.tissue}]" if self.tissue else self.name

    @property
    def best(self) -> float:
        return max(self.rates)

    @property
    def spread(self) -> float:
        return (max(self.rates) - min(self.rates)) / max(self.rates) if len(self.rates) > 1 else 0.0

    @property
    def best_episodes(self) -> int:
        return self.episodes[self.rates.index(self.best)] if self.episodes else 0

    @property
    def ms_per_reset(self) -> float:
        n = sum(self.episodes)
        return 1e3 * sum(self.reset_s) / n if n and self.reset_s else math.nan


def family(env_id: str) -> str:
    name = env_id.split("/")[-1].rsplit("-v", 1)[0]
    return name.removesuffix("Discrete")


def goal_for(result: Result) -> float | None:
    if result.runner != "1 proc":
        return None
    if result.obs in ("rgb", "depth"):
        return IMAGE_GOAL
    return GOALS.get(family(result.name))


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


@contextlib.contextmanager
def quiet_stdout():
    """Silence C-level prints to fd 1 (panda-gym's pybullet.connect prints its argv)."""
    sys.stdout.flush()
    libc = ctypes.CDLL(None)
    saved = os.dup(1)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.close(devnull)
    try:
        yield
    finally:
        libc.fflush(None)
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


# --------------------------------------------------------------------------- loops
def presample(space: gym.Space, n: int, seed: int) -> list:
    space.seed(seed)
    return [space.sample() for _ in range(n)]


def time_env(env: gym.Env, actions: list) -> tuple[float, int, float]:
    """Step through ``actions``, resetting when an episode ends: (steps/s, episodes, reset s)."""
    step, reset = env.step, env.reset
    episodes, reset_time = 0, 0.0
    t0 = clock()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        if terminated or truncated:
            r0 = clock()
            reset()
            reset_time += clock() - r0
            episodes += 1
    elapsed = clock() - t0
    return len(actions) / elapsed, episodes, reset_time


def time_vector_env(venv: gym.vector.VectorEnv, actions: list) -> tuple[float, int]:
    """Vector steps (sub-envs autoreset); total env steps/s, autoreset steps included."""
    step = venv.step
    episodes = 0
    t0 = clock()
    for a in actions:
        _, _, terminated, truncated, _ = step(a)
        episodes += int(np.count_nonzero(np.logical_or(terminated, truncated)))
    elapsed = clock() - t0
    return venv.num_envs * len(actions) / elapsed, episodes


def bench_single(env_id: str, steps: int, repeats: int, make: Callable[[], gym.Env],
                 obs: str, runner: str = "1 proc") -> Result:
    result = Result(env_id, runner, obs, steps)
    env = make()
    try:
        env.reset(seed=SEED)
        actions = presample(env.action_space, steps, SEED)
        time_env(env, actions[: max(50, steps // 10)])  # warm-up
        for _ in range(repeats):
            rate, episodes, reset_time = time_env(env, actions)
            result.rates.append(rate)
            result.episodes.append(episodes)
            result.reset_s.append(reset_time)
    finally:
        env.close()
    return result


def bench_vector(env_id: str, env_steps: int, repeats: int, cls: type, label: str) -> Result:
    num_envs = 2
    vector_steps = max(1, env_steps // num_envs)
    result = Result(env_id, label, "state", vector_steps * num_envs)
    fns = [functools.partial(gym.make, env_id, obs_type="state") for _ in range(num_envs)]
    venv = cls(fns)
    try:
        venv.reset(seed=SEED)
        actions = presample(venv.action_space, vector_steps, SEED)
        time_vector_env(venv, actions[: max(25, vector_steps // 10)])  # warm-up
        for _ in range(repeats):
            rate, episodes = time_vector_env(venv, actions)
            result.rates.append(rate)
            result.episodes.append(episodes)
    finally:
        venv.close()
    return result


class FloorEnv(gym.Env):
    """The least a Gymnasium env making a family's PyBullet calls and returning its observation and
    info can do: each step replays the next recorded pose through ``calls`` and returns a zero
    observation, reward 0 and a copy of a recorded info (its arrays copied too, as an env must
    hand out fresh ones): nothing is computed. Its steps/s over the raw loop's is the most any env
    of that family can reach."""

    def __init__(self, calls: Callable, sequence: list, info: dict,
                 observation_space: gym.Space, action_space: gym.Space) -> None:
        self.calls, self.sequence, self.info = calls, sequence, info
        self.array_keys = [k for k, v in info.items() if isinstance(v, np.ndarray)]
        self.observation_space, self.action_space = observation_space, action_space
        self._zero = np.zeros(observation_space.shape, observation_space.dtype)
        self._i = 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        return self._zero.copy(), {}

    def step(self, action):
        self.calls(*self.sequence[self._i])
        self._i = (self._i + 1) % len(self.sequence)
        info = dict(self.info)
        for key in self.array_keys:
            info[key] = info[key].copy()
        return self._zero.copy(), 0.0, False, False, info


def make_floor_env(calls: Callable, sequence: list, info: dict,
                   observation_space: gym.Space, action_space: gym.Space) -> gym.Env:
    """A :class:`FloorEnv` through ``gym.make``, so that it has the wrappers the envs have."""
    gym.register("surgsim-bench/Floor-v0", entry_point=FloorEnv)
    try:
        return gym.make("surgsim-bench/Floor-v0", calls=calls, sequence=sequence, info=info,
                        observation_space=observation_space, action_space=action_space)
    finally:
        del gym.registry["surgsim-bench/Floor-v0"]


def bench_raw(fam: str, steps: int, repeats: int) -> tuple[Result, Result, Result | None, str]:
    """The PyBullet calls one step of task family ``fam`` makes, on that env's own scene, with no
    env around (:data:`RAW_CALLS`); for SurgicalPath also a bare ``stepSimulation`` loop.

    Instrument poses are recorded first by stepping the env with random actions (same scene, no
    reset), then replayed in the timed loop with every argument precomputed.
    """
    import pybullet as p

    env_id = RAW_IDS[fam]
    env = gym.make(env_id, obs_type="state", tissue="rigid")
    try:
        env.reset(seed=SEED)
        u = env.unwrapped
        world, task = u.world, u.task
        client = world.client
        instrument = world.body(task.instrument_body)
        critical = [world.body(name) for name in task.critical]
        scene = (f"{env_id} after reset(seed={SEED}): {p.getNumBodies(physicsClientId=client)} bodies"
                 + (f", {len(critical)} critical ({', '.join(task.critical)})" if critical else ""))

        n_record = min(steps, 5000)
        poses = []
        for a in presample(u.action_space, n_record, SEED):
            _, _, _, _, info = u.step(a)
            pos, orn = p.getBasePositionAndOrientation(instrument, physicsClientId=client)
            poses.append((pos, orn, tuple(float(v) for v in info["tip_position"])))
        sequence = (poses * math.ceil(steps / n_record))[:steps]
        reset_pose, get_pose = p.resetBasePositionAndOrientation, p.getBasePositionAndOrientation
        closest, ray = p.getClosestPoints, p.rayTest

        if fam == "NeedleReach":
            def calls(pos, orn, tip) -> None:
                reset_pose(instrument, pos, orn, physicsClientId=client)
                get_pose(instrument, physicsClientId=client)
        elif fam == "SurgicalPath":
            from surgsim.tasks.surgical_path import CLEARANCE_RANGE

            port = tuple(float(v) for v in task.port)

            def calls(pos, orn, tip) -> None:
                reset_pose(instrument, pos, orn, physicsClientId=client)
                for body in critical:
                    closest(instrument, body, CLEARANCE_RANGE, physicsClientId=client)
                ray(port, tip, physicsClientId=client)
                get_pose(instrument, physicsClientId=client)
        else:  # Incision
            from surgsim.tasks.incision import CLEARANCE_RANGE

            layer = critical[0]
            # the depth probe: a vertical ray beside the blade, as IncisionTask.signed_depth casts it
            sequence = [(pos, orn, ((x, y + 0.002, 0.1), (x, y + 0.002, -0.1)))
                        for pos, orn, (x, y, _) in sequence]

            def calls(pos, orn, probe) -> None:
                reset_pose(instrument, pos, orn, physicsClientId=client)
                ray(*probe, physicsClientId=client)
                closest(instrument, layer, CLEARANCE_RANGE, physicsClientId=client)
                get_pose(instrument, physicsClientId=client)

        def queries() -> float:
            t0 = clock()
            for pose in sequence:
                calls(*pose)
            return steps / (clock() - t0)

        floor_env = make_floor_env(calls, sequence, info, u.observation_space, u.action_space)
        floor_env.reset(seed=SEED)
        actions = presample(floor_env.action_space, steps, SEED)

        def floor() -> float:
            return time_env(floor_env, actions)[0]
        def physics() -> float:
            step_sim = p.stepSimulation
            t0 = clock()
            for _ in range(steps):
                step_sim(physicsClientId=client)
            return steps / (clock() - t0)

        raw_q = Result(f"raw PyBullet: {fam} step queries", "raw", "-", steps, note=RAW_CALLS[fam])
        raw_f = Result(f"Gymnasium floor: {fam}", "floor", "-", steps,
                       note=f"an env whose step makes only the {fam} calls above and returns a zero "
                            f"observation, reward 0 and a copy of a recorded {len(info)}-key info "
                            "(gym.make wrappers)")
        queries(), floor()  # warm-up
        for _ in range(repeats):  # interleaved, so that load on the machine hits both alike
            raw_q.rates.append(queries())
            raw_f.rates.append(floor())
        raw_s = None
        if env_id == STEPSIM_ID:
            raw_s = Result("raw PyBullet: bare stepSimulation", "raw", "-", steps,
                           note=f"stepSimulation of the {fam} scene")
            physics()
            for _ in range(repeats):
                raw_s.rates.append(physics())
    finally:
        env.close()
    return raw_q, raw_f, raw_s, scene


def bench_peer(steps: int, repeats: int) -> tuple[Result | None, str]:
    try:
        import panda_gym  # registers the Panda ids
    except ImportError:
        return None, ("panda-gym is not installed: PandaReach-v3 skipped "
                      "(pip install panda-gym, or pip install -e '.[bench]')")
    version = getattr(panda_gym, "__version__", "?")

    def make() -> gym.Env:
        with quiet_stdout():
            return gym.make(PEER_ID)

    result = bench_single(PEER_ID, steps, repeats, make, "goal (Dict)", runner="peer")
    result.note = f"panda-gym {version}, default kwargs"
    return result, f"panda-gym {version}"


# --------------------------------------------------------------------------- report
def fmt_rate(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:,.0f}"


def fmt_ratio(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}x"


def table(headers: list[str], rows: list[list[str]], right: set[int]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells):
        out = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep, *(line(r) for r in rows)])


def machine() -> dict:
    from importlib.metadata import version

    try:
        commit = subprocess.run(["git", "-C", _ROOT, "describe", "--always", "--dirty"],
                                capture_output=True, text=True, timeout=10,
                                check=False).stdout.strip() or "?"
    except (OSError, subprocess.SubprocessError):  # no git
        commit = "?"
    return {
        "commit": commit,
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "pybullet": version("pybullet"),
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
        "surgsim": getattr(surgsim, "__version__", "?"),
        "loadavg_start": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
    }


def raw_ratio(result: Result, raws: dict[str, Result]) -> float | None:
    """steps/s of a rigid-tissue state-observation id over its own family's raw reference (which
    makes the PyBullet calls of a rigid step)."""
    raw = raws.get(family(result.name))
    if result.runner != "1 proc" or result.obs != "state" or result.tissue != "rigid" or raw is None:
        return None
    return result.best / raw.best


def peer_goal(result: Result) -> float | None:
    """How many times PandaReach-v3's steps/s a state-observation id must reach."""
    if result.obs != "state":
        return None
    return PEER_GOAL if result.tissue == "rigid" else ELASTIC_PEER_GOAL


def verdict(value: float | None, goal: float | None) -> str:
    """PASS or FAIL of ``value`` against ``goal`` (at least it); ``-`` when either is unknown."""
    return "-" if value is None or goal is None else ("PASS" if value >= goal else "FAIL")


def report(singles, images, vectors, raws, floors, raw_s, scenes, peer, peer_note, info, args) -> str:
    out = []
    out.append("surgsim environment throughput")
    out.append(
        f"{info['date']} | Python {info['python']} | pybullet {info['pybullet']} | gymnasium "
        f"{info['gymnasium']} | numpy {info['numpy']} | {info['cpu_count']} CPUs | {info['platform']}"
        f" | surgsim {info['surgsim']} at {info['commit']}")
    if info.get("loadavg_start") is not None:
        out.append(f"1-min load average: {info['loadavg_start']:.2f} at start, "
                   f"{info.get('loadavg_end', float('nan')):.2f} at end (other work on the machine "
                   "adds noise; the spread columns show it)")
    out.append(f"steps per case: {args.steps} (image and PandaReach: {args.image_steps}, vector: "
               f"{args.vector_steps} env steps); best of {args.repeats} repeat(s); random actions "
               "pre-sampled; resets included")
    out.append("")

    peer_rate = peer.best if peer else None
    rows = []
    for r in singles + images:
        goal = goal_for(r)
        to_raw = raw_ratio(r, raws)
        to_peer = r.best / peer_rate if peer_rate else None
        state = r.obs == "state"
        rows.append([
            r.label, r.obs, fmt_rate(r.best), f"{100 * r.spread:.0f}%", str(r.best_episodes),
            "-" if math.isnan(r.ms_per_reset) else f"{r.ms_per_reset:.2f}",
            fmt_rate(goal), verdict(r.best, goal),
            fmt_rate(raws[family(r.name)].best if state and family(r.name) in raws else None),
            "-" if to_raw is None else f"{100 * to_raw:.0f}%", verdict(to_raw, RAW_GOAL),
            fmt_ratio(to_peer), verdict(to_peer, peer_goal(r)),
        ])
    out.append("Single process (gym.make, one env)")
    out.append(table(
        ["env id", "obs", "steps/s", "spread", "episodes", "ms/reset", "goal", "verdict",
         "raw ref", "vs raw", f">= {100 * RAW_GOAL:.0f}%", "vs PandaReach",
         f">= {PEER_GOAL:g}x rigid, {ELASTIC_PEER_GOAL:g}x elastic"],
        rows, right={2, 3, 4, 5, 6, 8, 9, 11}))
    out.append("episodes: episode ends (each followed by a timed reset) in the best repeat; raw ref: "
               "the raw PyBullet loop of the calls one step of that id's task family makes "
               "(References below); vs raw: steps/s over it")
    out.append("")

    if vectors:
        by_id: dict[str, dict[str, Result]] = {}
        for v in vectors:
            by_id.setdefault(v.name, {})[v.runner] = v
        single_by_id = {r.name: r for r in singles if r.tissue == "elastic"}
        rows = []
        for env_id, runs in by_id.items():
            one = single_by_id.get(env_id)
            s, a = runs.get("Sync x2"), runs.get("Async x2")
            rows.append([
                env_id, fmt_rate(one.best if one else None),
                fmt_rate(s.best if s else None), f"{100 * s.spread:.0f}%" if s else "-",
                fmt_rate(a.best if a else None), f"{100 * a.spread:.0f}%" if a else "-",
                fmt_ratio(s.best / one.best if s and one else None),
                fmt_ratio(a.best / one.best if a and one else None),
            ])
        out.append("Vectorised, 2 envs, state obs (total env steps/s; autoreset steps included)")
        out.append(table(
            ["env id", "1 proc", "SyncVectorEnv x2", "spread", "AsyncVectorEnv x2", "spread",
             "Sync / 1 proc", "Async / 1 proc"],
            rows, right={1, 2, 3, 4, 5, 6, 7}))
        out.append("")

    out.append("References")
    rows = []
    for r in (*raws.values(), raw_s):
        if r:
            rows.append([r.name, fmt_rate(r.best), f"{100 * r.spread:.0f}%", r.note])
    for fam, r in floors.items():
        rows.append([r.name, fmt_rate(r.best), f"{100 * r.spread:.0f}%",
                     f"{100 * r.best / raws[fam].best:.0f}% of the raw {fam} queries: {r.note}"])
    if peer:
        rows.append([f"{PEER_ID} (1 proc, gym.make)", fmt_rate(peer.best), f"{100 * peer.spread:.0f}%",
                     f"{peer.note}; {peer.best_episodes} episodes, {peer.ms_per_reset:.2f} ms/reset"])
    else:
        rows.append([PEER_ID, "-", "-", peer_note])
    out.append(table(["reference", "steps/s", "spread", "what"], rows, right={1, 2}))
    for fam, scene in scenes.items():
        out.append(f"raw PyBullet scene, {fam}: {scene}")
    out.append("")

    out.append("Verdicts (goals: NeedleReach >= 20,000, SurgicalPath and Incision >= 8,000, "
               f"image obs >= {IMAGE_GOAL:,} steps/s; every state-obs id >= {100 * RAW_GOAL:.0f}% of "
               f"its family's raw reference and >= {PEER_GOAL:g}x {PEER_ID}; one process)")
    for r in singles + images:
        goal = goal_for(r)
        if goal:
            out.append(f"  {verdict(r.best, goal)}  {r.label} [{r.obs}]: "
                       f"{fmt_rate(r.best)} steps/s vs goal {goal:,} ({r.best / goal:.2f}x)")
    for r in singles:
        to_raw = raw_ratio(r, raws)
        if to_raw is not None:
            fam = family(r.name)
            ceiling = (f"; an env doing nothing else reaches {100 * floors[fam].best / raws[fam].best:.0f}%"
                       if fam in floors else "")
            out.append(f"  {verdict(to_raw, RAW_GOAL)}  {r.label}: {100 * to_raw:.0f}% of the raw "
                       f"{fam} queries (goal {100 * RAW_GOAL:.0f}%{ceiling})")
        if peer_rate:
            to_peer = r.best / peer_rate
            out.append(f"  {verdict(to_peer, peer_goal(r))}  {r.label}: {to_peer:.1f}x {PEER_ID} "
                       f"(goal {peer_goal(r):g}x)")
    return "\n".join(out)


# --------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Throughput (env steps/s, random actions, resets included) of every surgsim "
                    "env, in one process, in 2-env Sync/Async vector envs, with image observations, "
                    "against a raw PyBullet reference and panda-gym's PandaReach-v3.",
        epilog="Exit code is 0 whatever the verdicts: this is a measurement, not a test.")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps per state-obs single-process case and repeat (default "
                             "20000; 2000 with --quick). Image-obs and PandaReach cases take "
                             "steps/10, vector cases steps/2 env steps.")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed repeats per case, best reported (default 3; 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="short smoke run (under 30 s)")
    parser.add_argument("--no-vector", action="store_true", help="skip the vector-env cases")
    parser.add_argument("--no-image", action="store_true", help="skip the image-observation cases")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    if args.steps is None:
        args.steps = 2000 if args.quick else 20_000
    if args.repeats is None:
        args.repeats = 1 if args.quick else 3
    if args.steps < 10 or args.repeats < 1:
        parser.error("--steps must be >= 10 and --repeats >= 1")
    args.image_steps = max(50, args.steps // 10)
    args.vector_steps = max(20, args.steps // 2)

    started = clock()
    info = machine()
    env_ids = sorted(i for i in gym.registry if i.startswith("surgsim/"))

    singles = []
    for env_id in env_ids:
        for tissue in TISSUES:
            r = bench_single(env_id, args.steps, args.repeats,
                             functools.partial(gym.make, env_id, obs_type="state", tissue=tissue), "state")
            r.tissue = tissue
            singles.append(r)
            log(f"  {env_id:34s} state  {tissue:7s} 1 proc   {fmt_rate(r.best):>8} steps/s")

    images = []
    for env_id in () if args.no_image else IMAGE_IDS:
        r = bench_single(env_id, args.image_steps, args.repeats,
                         functools.partial(gym.make, env_id, obs_type="rgb"), "rgb")
        images.append(r)
        log(f"  {env_id:34s} rgb    1 proc   {fmt_rate(r.best):>8} steps/s")

    raws: dict[str, Result] = {}
    floors: dict[str, Result] = {}
    scenes: dict[str, str] = {}
    raw_s = None
    for fam in RAW_IDS:
        try:
            raw_q, floors[fam], stepsim, scenes[fam] = bench_raw(fam, args.steps, args.repeats)
        except Exception as exc:  # noqa: BLE001  (the package may change under us: report it)
            scenes[fam] = f"not measured: {type(exc).__name__}: {exc}"
            log(f"  raw PyBullet reference {fam} failed: {scenes[fam]}")
            continue
        raws[fam] = raw_q
        raw_s = raw_s or stepsim
        log(f"  raw PyBullet {fam} step queries {fmt_rate(raw_q.best)} steps/s, Gymnasium floor "
            f"{fmt_rate(floors[fam].best)} steps/s")
    if raw_s:
        log(f"  raw PyBullet stepSimulation {fmt_rate(raw_s.best)} steps/s")

    peer, peer_note = bench_peer(args.image_steps, args.repeats)
    log(f"  {PEER_ID}: {fmt_rate(peer.best) + ' steps/s' if peer else peer_note}")

    vectors = []
    if not args.no_vector:
        for env_id in env_ids:
            for cls, label in ((gym.vector.SyncVectorEnv, "Sync x2"),
                               (gym.vector.AsyncVectorEnv, "Async x2")):
                r = bench_vector(env_id, args.vector_steps, args.repeats, cls, label)
                vectors.append(r)
                log(f"  {env_id:34s} state  {label:8s} {fmt_rate(r.best):>8} env steps/s")

    if hasattr(os, "getloadavg"):
        info["loadavg_end"] = os.getloadavg()[0]
    text = report(singles, images, vectors, raws, floors, raw_s, scenes, peer, peer_note, info, args)
    print()
    print(text)
    print(f"\n(total run time {clock() - started:.0f} s)")

    if args.json:
        payload = {
            "machine": info,
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "results": [
                {**asdict(r), "best": r.best, "spread": r.spread, "goal": goal_for(r),
                 "vs_raw": raw_ratio(r, raws),
                 "vs_peer": r.best / peer.best if peer and r.runner == "1 proc" else None}
                for r in singles + images + vectors + [x for x in (*raws.values(), *floors.values(), raw_s, peer) if x]
            ],
            "raw_scenes": scenes,
            "peer_note": peer_note,
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
