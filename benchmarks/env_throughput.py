#!/usr/bin/env python
"""Environment throughput benchmark for surgsim: steps per second with random actions.

Measures, in one run:

* every registered ``surgsim/*-v0`` id made with ``gym.make`` (state observations, one process);
* image observations (``obs_type="rgb"``) on SurgicalPath and NeedleReach;
* the same ids in a 2-env ``SyncVectorEnv`` and a 2-worker ``AsyncVectorEnv`` (total env steps/s);
* a raw PyBullet reference: the SurgicalPath scene of one env with only the PyBullet calls the env
  makes per step (one resetBasePositionAndOrientation of the instrument, one getClosestPoints per
  critical structure, one rayTest), and a bare ``stepSimulation`` loop of that scene;
* panda-gym's ``PandaReach-v3`` as the peer, when panda-gym is installed (``pip install panda-gym``
  or the ``bench`` extra); skipped, with a note, when it is not.

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
RAW_SCENE_ID = "surgsim/SurgicalPath-v0"
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


def bench_raw(steps: int, repeats: int) -> tuple[Result, Result, str]:
    """The PyBullet calls one SurgicalPath step makes, on that env's own scene, with no env around.

    Instrument poses are recorded first by stepping the env with random actions (same scene, no
    reset), then replayed in the timed loop.
    """
    import pybullet as p

    from surgsim.tasks import surgical_path

    clearance_range = getattr(surgical_path, "CLEARANCE_RANGE", 0.03)
    env = gym.make(RAW_SCENE_ID, obs_type="state")
    try:
        env.reset(seed=SEED)
        u = env.unwrapped
        world, task = u.world, u.task
        client = world.client
        instrument = world.body(task.instrument_body)
        critical = [world.body(name) for name in task.critical]
        port = tuple(float(v) for v in task.port)
        scene = (f"{len(critical)} critical structures ({', '.join(task.critical)}), "
                 f"{p.getNumBodies(physicsClientId=client)} bodies")

        n_record = min(steps, 5000)
        poses = []
        for a in presample(u.action_space, n_record, SEED):
            _, _, _, _, info = u.step(a)
            pos, orn = p.getBasePositionAndOrientation(instrument, physicsClientId=client)
            tip = tuple(float(v) for v in info.get("tip_position", pos))
            poses.append((pos, orn, tip))
        sequence = (poses * math.ceil(steps / n_record))[:steps]

        def queries() -> float:
            reset_pose, closest, ray = (
                p.resetBasePositionAndOrientation, p.getClosestPoints, p.rayTest)
            t0 = clock()
            for pos, orn, tip in sequence:
                reset_pose(instrument, pos, orn, physicsClientId=client)
                for body in critical:
                    closest(instrument, body, clearance_range, physicsClientId=client)
                ray(port, tip, physicsClientId=client)
            return steps / (clock() - t0)

        def physics() -> float:
            step_sim = p.stepSimulation
            t0 = clock()
            for _ in range(steps):
                step_sim(physicsClientId=client)
            return steps / (clock() - t0)

        raw_q = Result("raw PyBullet: per-step queries", "raw", "-", steps,
                       note="1 resetBasePositionAndOrientation + 1 getClosestPoints per critical "
                            "structure + 1 rayTest")
        raw_s = Result("raw PyBullet: bare stepSimulation", "raw", "-", steps,
                       note="stepSimulation of the same scene")
        queries()  # warm-up
        for _ in range(repeats):
            raw_q.rates.append(queries())
        physics()
        for _ in range(repeats):
            raw_s.rates.append(physics())
    finally:
        env.close()
    return raw_q, raw_s, scene


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


def report(singles, images, vectors, raw_q, raw_s, scene, peer, peer_note, info, args) -> str:
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
    raw_rate = raw_q.best if raw_q else None
    rows = []
    for r in singles + images:
        goal = goal_for(r)
        ratio = r.best / goal if goal else None
        verdict = "-" if goal is None else ("PASS" if r.best >= goal else "FAIL")
        rows.append([
            r.name, r.obs, fmt_rate(r.best), f"{100 * r.spread:.0f}%", str(r.best_episodes),
            "-" if math.isnan(r.ms_per_reset) else f"{r.ms_per_reset:.2f}",
            fmt_rate(goal), fmt_ratio(ratio), verdict,
            fmt_ratio(r.best / peer_rate if peer_rate else None),
            fmt_ratio(r.best / raw_rate if raw_rate else None),
        ])
    out.append("Single process (gym.make, one env)")
    out.append(table(
        ["env id", "obs", "steps/s", "spread", "episodes", "ms/reset", "goal", "vs goal", "verdict",
         "vs PandaReach", "vs raw queries"],
        rows, right={2, 3, 4, 5, 6, 7, 9, 10}))
    out.append("episodes: episode ends (each followed by a timed reset) in the best repeat; vs raw "
               "queries: against the raw PyBullet loop of the calls one SurgicalPath step makes")
    out.append("")

    if vectors:
        by_id: dict[str, dict[str, Result]] = {}
        for v in vectors:
            by_id.setdefault(v.name, {})[v.runner] = v
        single_by_id = {r.name: r for r in singles}
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
    for r in (raw_q, raw_s):
        if r:
            rows.append([r.name, fmt_rate(r.best), f"{100 * r.spread:.0f}%", r.note])
    if peer:
        rows.append([f"{PEER_ID} (1 proc, gym.make)", fmt_rate(peer.best), f"{100 * peer.spread:.0f}%",
                     f"{peer.note}; {peer.best_episodes} episodes, {peer.ms_per_reset:.2f} ms/reset"])
    else:
        rows.append([PEER_ID, "-", "-", peer_note])
    out.append(table(["reference", "steps/s", "spread", "what"], rows, right={1, 2}))
    if raw_q is None:
        out.append(f"raw PyBullet reference not measured: {scene}")
    else:
        out.append(f"raw PyBullet scene: {RAW_SCENE_ID} after reset(seed={SEED}): {scene}")
    out.append("")

    out.append("Verdicts (goals: NeedleReach >= 20,000, SurgicalPath and Incision >= 8,000, "
               f"image obs >= {IMAGE_GOAL:,} steps/s; one process)")
    for r in singles + images:
        goal = goal_for(r)
        if goal:
            verdict = "PASS" if r.best >= goal else "FAIL"
            out.append(f"  {verdict}  {r.name} [{r.obs}]: {fmt_rate(r.best)} steps/s vs goal "
                       f"{goal:,} ({r.best / goal:.2f}x)")
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
        r = bench_single(env_id, args.steps, args.repeats,
                         functools.partial(gym.make, env_id, obs_type="state"), "state")
        singles.append(r)
        log(f"  {env_id:34s} state  1 proc   {fmt_rate(r.best):>8} steps/s")

    images = []
    for env_id in IMAGE_IDS:
        r = bench_single(env_id, args.image_steps, args.repeats,
                         functools.partial(gym.make, env_id, obs_type="rgb"), "rgb")
        images.append(r)
        log(f"  {env_id:34s} rgb    1 proc   {fmt_rate(r.best):>8} steps/s")

    raw_q = raw_s = None
    try:
        raw_q, raw_s, scene = bench_raw(args.steps, args.repeats)
        log(f"  raw PyBullet queries {fmt_rate(raw_q.best)} steps/s, stepSimulation "
            f"{fmt_rate(raw_s.best)} steps/s ({scene})")
    except Exception as exc:  # noqa: BLE001  (the package may change under us: report it)
        scene = f"{type(exc).__name__}: {exc}"
        log(f"  raw PyBullet reference failed: {scene}")

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
    text = report(singles, images, vectors, raw_q, raw_s, scene, peer, peer_note, info, args)
    print()
    print(text)
    print(f"\n(total run time {clock() - started:.0f} s)")

    if args.json:
        payload = {
            "machine": info,
            "args": {k: v for k, v in vars(args).items() if k != "json"},
            "results": [
                {**asdict(r), "best": r.best, "spread": r.spread, "goal": goal_for(r)}
                for r in singles + images + vectors + [x for x in (raw_q, raw_s, peer) if x]
            ],
            "raw_scene": scene,
            "peer_note": peer_note,
        }
        with open(args.json, "w") as fh:
            json.dump(payload, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
