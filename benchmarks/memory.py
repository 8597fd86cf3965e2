#!/usr/bin/env python
"""Memory benchmark for surgsim: resident memory growth over many resets.

For every registered id at every difficulty, with state and image (``rgb``) observations, one
env is made, reset once, then reset ``--resets`` more times (image observations:
``--image-resets``, as each reset also renders; ``rendered``: a rendered world in which each of
``--episodes`` "resets" is a whole scripted-expert episode, so the deforming anatomy is redrawn,
and ``ms/reset`` is per episode);
the growth of the process's resident memory
(VmRSS) from the first reset to the last is compared with the goal: at most ``--limit-mb``
(20 MB). No warm-up is left out, so the growth includes the first resets' one-off allocations
(caches, allocator pools); the growth over the second half of the resets shows whether memory
still climbs (a leak) or has levelled off. Each case runs in a fresh Python process, so memory
one case freed cannot hide another's growth. Linux only (reads /proc/self/status).

    python benchmarks/memory.py                       # the full run: 20,000 resets per state case
    python benchmarks/memory.py --resets 2000 --image-resets 200 --ids surgsim/SurgicalPath-v0
    python benchmarks/memory.py --obs rendered --difficulties medium   # expert episodes, rendered world

The exit code is 0 whatever the verdicts: this is a measurement, not a test.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

# Run from a checkout without installing: put the repository root on the path.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)

DIFFICULTIES = ("easy", "medium", "hard")
#: ``rendered``: state observations in a rendered world (``render_mode="rgb_array"``), and each
#: "reset" a whole scripted-expert episode: the tissue deforms and the drawn anatomy is redrawn
OBS_TYPES = ("state", "rgb", "rendered")


def rss_mb() -> float:
    """Resident memory of this process (MB), from /proc/self/status."""
    with open("/proc/self/status") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:")) / 1024


def measure(env_id: str, difficulty: str, obs_type: str, resets: int) -> dict:
    """RSS after the first reset, halfway and after ``resets`` more, and the time per reset."""
    import gymnasium as gym

    import surgsim  # noqa: F401  (registers the ids)

    rendered = obs_type == "rendered"
    env = (gym.make(env_id, difficulty=difficulty, render_mode="rgb_array") if rendered
           else gym.make(env_id, difficulty=difficulty, obs_type=obs_type))
    env.reset(seed=0)
    before = rss_mb()
    started = time.perf_counter()
    for i in range(resets):
        if i == resets // 2:
            halfway = rss_mb()
        while rendered:  # the expert's episode, then the reset
            _, _, terminated, truncated, _ = env.step(env.unwrapped.expert_action())
            if terminated or truncated:
                break
        env.reset()
    seconds = time.perf_counter() - started
    after = rss_mb()
    env.close()
    return {"id": env_id, "difficulty": difficulty, "obs": obs_type, "resets": resets,
            "rss_before_mb": before, "rss_after_mb": after, "growth_mb": after - before,
            "growth_second_half_mb": after - halfway, "ms_per_reset": 1e3 * seconds / resets}


def run_case(env_id: str, difficulty: str, obs_type: str, resets: int) -> dict:
    """:func:`measure` in a fresh interpreter."""
    command = [sys.executable, os.path.abspath(__file__), "--one", env_id, difficulty, obs_type, str(resets)]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        tail = (done.stderr.strip().splitlines() or ["?"])[-1]
        return {"id": env_id, "difficulty": difficulty, "obs": obs_type, "resets": resets, "error": tail}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Resident memory growth over many resets of every surgsim id, difficulty and "
                    "observation type (state, rgb), against a 20 MB goal.",
        epilog="Exit code is 0 whatever the verdicts: this is a measurement, not a test.")
    parser.add_argument("--resets", type=int, default=20_000, help="resets per state case (default 20000)")
    parser.add_argument("--image-resets", type=int, default=2_000,
                        help="resets per rgb case (default 2000: each reset also renders an image)")
    parser.add_argument("--episodes", type=int, default=300,
                        help="expert episodes per rendered case (default 300)")
    parser.add_argument("--ids", nargs="+", help="env ids (default: every registered surgsim id)")
    parser.add_argument("--difficulties", nargs="+", choices=DIFFICULTIES, default=list(DIFFICULTIES))
    parser.add_argument("--obs", nargs="+", choices=OBS_TYPES, default=list(OBS_TYPES))
    parser.add_argument("--limit-mb", type=float, default=20.0, help="goal: largest growth (default 20 MB)")
    parser.add_argument("--json", metavar="PATH", help="also write every figure to this JSON file")
    parser.add_argument("--one", nargs=4, metavar=("ID", "DIFFICULTY", "OBS", "RESETS"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        env_id, difficulty, obs_type, resets = args.one
        print(json.dumps(measure(env_id, difficulty, obs_type, int(resets))))
        return 0
    if min(args.resets, args.image_resets, args.episodes) < 1:
        parser.error("--resets, --image-resets and --episodes must be >= 1")

    from surgsim import REGISTERED

    ids = args.ids or sorted(REGISTERED)
    started = time.perf_counter()
    print(f"surgsim memory: {os.cpu_count()} CPUs, Python {sys.version.split()[0]}; resets per case: "
          f"state {args.resets}, rgb {args.image_resets}; goal: growth <= {args.limit_mb:g} MB", flush=True)
    print(f"{'env id':34s} {'difficulty':10s} {'obs':5s} {'resets':>7s} {'RSS before':>10s} "
          f"{'after':>8s} {'growth':>8s} {'2nd half':>8s} {'ms/reset':>8s}  verdict", flush=True)
    results = []
    for obs_type in args.obs:
        resets = {"state": args.resets, "rgb": args.image_resets, "rendered": args.episodes}[obs_type]
        for env_id in ids:
            for difficulty in args.difficulties:
                r = run_case(env_id, difficulty, obs_type, resets)
                results.append(r)
                head = f"{env_id:34s} {difficulty:10s} {obs_type:5s} {resets:7d}"
                if "error" in r:
                    print(f"{head}  ERROR {r['error']}", flush=True)
                    continue
                r["verdict"] = "PASS" if r["growth_mb"] <= args.limit_mb else "FAIL"
                print(f"{head} {r['rss_before_mb']:8.1f}MB {r['rss_after_mb']:6.1f}MB "
                      f"{r['growth_mb']:+6.1f}MB {r['growth_second_half_mb']:+6.1f}MB {r['ms_per_reset']:8.2f}  "
                      f"{r['verdict']}", flush=True)
    failed = [r for r in results if r.get("verdict") != "PASS"]
    print(f"{len(results) - len(failed)} of {len(results)} cases within {args.limit_mb:g} MB "
          f"(total run time {time.perf_counter() - started:.0f} s)")
    if args.json:
        from surgsim._files import atomic_write_json  # here: the measuring children need not import it

        atomic_write_json(args.json, {"args": {k: v for k, v in vars(args).items() if k not in ("json", "one")},
                                      "cpu_count": os.cpu_count(), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
