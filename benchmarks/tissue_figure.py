"""The README's elastic-tissue figure: the scripted expert's insertion on SurgicalPath (seed 0,
medium), the force on the tool (puncture marked) and the lesion's displacement.

    python benchmarks/tissue_figure.py                       # writes assets/figures/elastic_tissue.png
    python benchmarks/tissue_figure.py --out /tmp/tissue.png --seed 3 --env surgsim/Incision-v0
"""

from __future__ import annotations

import argparse
from pathlib import Path

import gymnasium as gym

import surgsim  # noqa: F401  (registers the ids)
from surgsim.outcome import episode_outcome
from surgsim.rl.evaluate import run_episodes
from surgsim.rl.tissue_plot import EpisodeTrace

FIGURE = Path(__file__).resolve().parent.parent / "assets" / "figures" / "elastic_tissue.png"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="surgsim/SurgicalPath-v0")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--difficulty", default="medium")
    parser.add_argument("--out", type=Path, default=FIGURE)
    args = parser.parse_args()

    env = EpisodeTrace(gym.make(args.env, difficulty=args.difficulty, tissue="elastic"))
    outcome = []
    run_episodes(env, lambda obs: env.unwrapped.expert_action(), 1, args.seed,
                 on_episode=lambda i, info: outcome.append(episode_outcome(info)))
    env.close()
    name = args.env.split("/")[-1]
    title = f"{name}, scripted expert, seed {args.seed} ({args.difficulty}): elastic tissue"
    path = env.plot(args.out, title)
    peak = max(info["tool_force"] for info in env.infos)
    print(f"{args.env} seed {args.seed}: {len(env.infos) - 1} steps, {outcome[0]}, "
          f"peak force {peak:.2f} N")
    print(f"written: {path} ({path.stat().st_size / 1000:.0f} kB)")


if __name__ == "__main__":
    main()
