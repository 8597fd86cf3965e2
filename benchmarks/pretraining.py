"""Pretraining benchmark: does starting from demonstrations save environment steps?

For each case (PPO on SurgicalPath-v0 hard, DQN on SurgicalPathDiscrete-v0 hard, PPO on
Incision-v0) and seed, in one run:

1. collects demonstrations of the scripted expert and of the degraded expert (``--impairment``)
   with ``surgsim dataset collect``'s code (``--demos`` episodes each, seeds apart from the
   evaluation seeds);
2. trains from scratch with ``surgsim train``'s code and the committed preset;
3. pretrains with ``surgsim pretrain``'s code on each dataset (behaviour cloning + value warm-up for
   PPO, DQfD for DQN), records the cloned policy's success, then fine-tunes it with
   ``surgsim train --init-from`` for the same budget.

Every run is evaluated every ``--eval-freq`` steps on 20 seeded episodes (a fine-tuned run also at
step 0) and ends with 100 held-out seeded episodes. Reported: steps and wall time until the
evaluation success first reaches the goal (wall time of a fine-tuned run includes its collection
and pretraining), final success and critical-structure failures; the goal is pretrained +
fine-tuned reaching the success goal in at most 1/3 of the steps scratch needs.

    python benchmarks/pretraining.py --seeds 0 1 2                    # every case (about an hour on 2 cores)
    python benchmarks/pretraining.py --cases ppo-surgicalpath --seeds 0 --budget 20000
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import gymnasium as gym
import numpy as np

import surgsim  # noqa: F401
from surgsim.datasets import collect
from surgsim.rl.evaluate import model_policy, run_episodes
from surgsim.rl.pretrain import PretrainArgs, pretrain
from surgsim.rl.train import TrainArgs, load_run, train

#: case -> (algo, env id, env kwargs, success goal, step budget)
CASES = {
    "ppo-surgicalpath": ("ppo", "surgsim/SurgicalPath-v0", {"difficulty": "hard"}, 0.90, 150_000),
    "dqn-surgicalpath": ("dqn", "surgsim/SurgicalPathDiscrete-v0", {"difficulty": "hard"}, 0.85, 150_000),
    "ppo-incision": ("ppo", "surgsim/Incision-v0", {}, 0.90, 150_000),
}
FINAL_EPISODES = 100
FINAL_SEED = 100_000
#: demonstration seeds start here: apart from training (0...) and evaluation (10,000 / 100,000) seeds
DEMO_SEED = 200_000
STEP_RATIO_GOAL = 1 / 3


def run_row(case: str, variant: str, seed: int, run: Path, start: float, budget: int, extra: dict) -> dict:
    algo, env_id, env_kwargs, goal, _ = CASES[case]
    history = [json.loads(line) for line in (run / "evaluations.jsonl").read_text().splitlines()]
    reached = next((h for h in history if h["success_rate"] >= goal), None)
    model, normalizer, _ = load_run(run, device="cpu")
    final = run_episodes(gym.make(env_id, **env_kwargs), model_policy(model, True, normalizer), FINAL_EPISODES,
                         seed=FINAL_SEED)
    return {
        "case": case, "variant": variant, "seed": seed, "goal": goal, "budget": budget,
        "steps_to_goal": reached["timesteps"] if reached else None,
        "wall_s_to_goal": round(reached["wall_time"] - start, 1) if reached else None,
        "final_success": final.success_rate, "final_critical_failure": final.critical_failure_rate,
        **extra,
    }


def bench_case(case: str, seeds: list[int], opts, folder: Path) -> list[dict]:
    algo, env_id, env_kwargs, goal, budget = CASES[case]
    budget = opts.budget or budget
    rows = []
    datasets = {}
    for variant, impairment in (("expert", 0.0), (f"impaired {opts.impairment}", opts.impairment)):
        t0 = time.time()
        path = collect(env_id, "expert", opts.demos, folder / "datasets", impairment=impairment,
                       name=f"{case}-{'expert' if impairment == 0 else 'impaired'}", seed=DEMO_SEED,
                       env_kwargs=env_kwargs, progress=False)
        datasets[variant] = (str(path.relative_to(folder / "datasets")), time.time() - t0)
    for seed in seeds:
        train_args = dict(algo=algo, env_id=env_id, n_timesteps=budget, seed=seed, env_kwargs=env_kwargs,
                          eval_freq=opts.eval_freq, eval_episodes=20, device="cpu", progress_bar=False)
        start = time.time()
        run = train(TrainArgs(**train_args, log_folder=str(folder / "scratch")))
        rows.append(run_row(case, "scratch", seed, run, start, budget, {"wall_s": round(time.time() - start, 1)}))
        print(json.dumps(rows[-1]), flush=True)
        for variant, (dataset, collect_s) in datasets.items():
            start = time.time() - collect_s  # the demonstrations' collection counts
            pre = pretrain(PretrainArgs(algo=algo, env_id=env_id, dataset=dataset, root=str(folder / "datasets"),
                                        epochs=opts.epochs, seed=seed, log_folder=str(folder / "pretrained"),
                                        device="cpu", progress_bar=False))
            cloned = json.loads((pre / "summary.json").read_text())["final_eval"]["success_rate"]
            run = train(TrainArgs(**train_args, log_folder=str(folder / "finetuned"), init_from=str(pre)))
            rows.append(run_row(case, f"pretrained ({variant})", seed, run, start, budget,
                                {"cloned_success": cloned, "wall_s": round(time.time() - start, 1)}))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _steps(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def report(rows: list[dict], opts) -> str:
    lines = ["| case | variant | seed | cloned success | steps to goal | wall s to goal | wall s | final success "
             "(100 ep) | critical failures |", "|---|---|--:|--:|--:|--:|--:|--:|--:|"]
    for r in rows:
        cloned = f"{r['cloned_success']:.0%}" if "cloned_success" in r else "-"
        lines.append(f"| {r['case']} | {r['variant']} | {r['seed']} | {cloned} | {_steps(r['steps_to_goal'])} | "
                     f"{r['wall_s_to_goal'] if r['wall_s_to_goal'] is not None else '-'} | {r['wall_s']} | "
                     f"{r['final_success']:.0%} | {r['final_critical_failure']:.0%} |")
    lines.append("")
    for case in dict.fromkeys(r["case"] for r in rows):
        mine = [r for r in rows if r["case"] == case]
        budget = mine[0]["budget"]
        scratch = [r["steps_to_goal"] if r["steps_to_goal"] is not None else budget
                   for r in mine if r["variant"] == "scratch"]
        for variant in dict.fromkeys(r["variant"] for r in mine if r["variant"] != "scratch"):
            tuned = [r["steps_to_goal"] if r["steps_to_goal"] is not None else budget
                     for r in mine if r["variant"] == variant]
            ratio = np.mean(tuned) / max(np.mean(scratch), 1)
            censored = " (runs that never reached the goal counted at the budget)"
            verdict = "PASS" if ratio <= STEP_RATIO_GOAL else "FAIL"
            lines.append(f"{verdict}  {case}, {variant}: mean steps to goal {np.mean(tuned):,.0f} vs scratch "
                         f"{np.mean(scratch):,.0f} = {ratio:.2f} (goal <= {STEP_RATIO_GOAL:.2f}){censored}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(CASES), choices=list(CASES))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=None, help="override every case's step budget")
    parser.add_argument("--eval-freq", type=int, default=5_000)
    parser.add_argument("--demos", type=int, default=100, help="demonstration episodes per dataset")
    parser.add_argument("--impairment", type=float, default=0.8, help="of the degraded expert's demonstrations")
    parser.add_argument("--epochs", type=int, default=None, help="pretraining epochs (default: surgsim pretrain's)")
    parser.add_argument("--json", type=Path, default=None, help="write every row to this file")
    parser.add_argument("--keep", type=Path, default=None, help="keep datasets and runs here (default: a temp dir)")
    opts = parser.parse_args()

    started = time.time()
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as temp:
        folder = opts.keep or Path(temp)
        for case in opts.cases:
            rows += bench_case(case, opts.seeds, opts, folder)
            if opts.json:
                opts.json.write_text(json.dumps(rows, indent=2))
    print()
    print(f"pretraining benchmark: {opts.demos} demonstration episodes per dataset, degraded expert at "
          f"impairment {opts.impairment}, pretraining epochs {opts.epochs or 'as surgsim pretrain'}, evaluation every {opts.eval_freq:,} "
          f"steps; {os.cpu_count()} CPUs; total {time.time() - started:.0f} s")
    print(report(rows, opts))


if __name__ == "__main__":
    main()
