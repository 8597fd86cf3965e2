"""``surgsim demo``: watch the scripted expert (or a random policy) do the task, no training needed."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from surgsim._extras import MissingExtra
from surgsim.cli._common import app, check_difficulty, check_seed, check_video_out, fail
from surgsim.errors import SurgsimError


@app.command("demo")
def demo(
    env: str = typer.Option("surgsim/SurgicalPath-v0", "--env", help="Registered env id (`surgsim envs`)."),
    episodes: int = typer.Option(5, "--episodes", "-n", min=1, help="Episodes to run."),
    policy: str = typer.Option("expert", help="'expert' (scripted, good technique) or 'random'."),
    seed: int = typer.Option(0, "--seed", callback=check_seed, help="Seed of the first episode; episode i uses seed + i."),
    difficulty: str = typer.Option("medium", "--difficulty", callback=check_difficulty, help="easy, medium or hard."),
    patient: Optional[str] = typer.Option(None, help="A named fixed patient from the env's spec."),
    tissue: str = typer.Option("elastic", "--tissue", help="'elastic' (forces, moving anatomy; fast), 'fem' (PyBullet finite elements; tens of steps/s) or 'rigid' (geometry only)."),
    out: Optional[Path] = typer.Option(
        None, "--out", help="Also film the episodes: demo.gif, or demo.mp4 with surgsim[video]."
    ),
    film: int = typer.Option(3, "--film", min=1, help="With --out: how many episodes to film (whole episodes)."),
    fps: int = typer.Option(10, "--fps", min=1, max=60, help="With --out: frames per second (the env runs at 20 Hz)."),
) -> None:
    """Run a policy for a few seeded episodes; report success, failures and return, and film them.

    With --out every filmed frame carries the step, the reward, the distance to the target, the
    clearance from the nearest critical structure and, at the end of each episode, its outcome.
    """
    import gymnasium as gym
    from tqdm import tqdm

    import surgsim
    from surgsim.rl.evaluate import run_episodes
    from surgsim.rl.overlay import AnnotatedFrames
    from surgsim.rl.render import write_video

    if env not in surgsim.REGISTERED:
        fail(f"--env {env!r} is not a surgsim env id; run `surgsim envs` to list them")
    if policy not in ("expert", "random"):
        fail(f"--policy {policy!r} is not valid; expected 'expert' or 'random'")
    if out is not None:
        check_video_out(out)
    try:
        environment = gym.make(env, difficulty=difficulty, tissue=tissue, render_mode="rgb_array" if out else None)
    except SurgsimError as exc:
        fail(str(exc))
    if out is not None:
        from surgsim.rl.tissue_plot import EpisodeTrace

        environment = trace = EpisodeTrace(environment)  # episode 1 infos: the tissue figure
        environment = AnnotatedFrames(environment, episodes=film, hold_frames=fps * 3 // 2)
    environment.action_space.seed(seed)
    if policy == "expert":
        act = lambda obs: environment.unwrapped.expert_action()  # noqa: E731
    else:
        act = lambda obs: environment.action_space.sample()  # noqa: E731
    with tqdm(total=episodes, desc=f"{policy} on {env}", unit="ep") as bar:
        try:
            result = run_episodes(environment, act, episodes, seed, patient,
                                  on_episode=lambda i, info: bar.update())
        except SurgsimError as exc:
            fail(str(exc))
        finally:
            environment.close()
    typer.echo(f"{env}  policy={policy}  episodes={episodes}  difficulty={difficulty}")
    typer.echo(result.summary())
    if out is not None:
        frames = environment.frames
        try:
            path = write_video(frames, out, fps)
        except (OSError, SurgsimError, MissingExtra) as exc:
            fail(f"--out {out}: {exc}")
        typer.echo(f"written: {path} ({min(film, episodes)} episodes, {len(frames)} frames, "
                   f"{len(frames) / fps:.0f} s at {fps} fps)")
        figure = out.with_name(f"{out.stem}_tissue.png")
        try:
            figure = trace.plot(figure, f"{env}, seed {seed}: {tissue} tissue, episode 1")
        except OSError as exc:
            fail(f"--out {figure}: {exc}")
        if figure is not None:  # None: rigid tissue, no forces to draw
            typer.echo(f"written: {figure} (force on the tool and tissue displacement, episode 1)")
