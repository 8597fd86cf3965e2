"""Watch a policy: frames from ``rgb_array`` renders written as a GIF (or MP4 with the video extra)."""

from __future__ import annotations

from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np

from surgsim._extras import require
from surgsim._files import atomic_save
from surgsim.errors import SurgsimError


def record_frames(env: gym.Env, policy: Callable, episodes: int = 1, seed: int = 0) -> list[np.ndarray]:
    frames = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        frames.append(env.render())
        done = False
        while not done:
            obs, _, terminated, truncated, _ = env.step(policy(obs))
            frames.append(env.render())
            done = terminated or truncated
    return frames


VIDEO_FORMATS = (".gif", ".mp4")


def check_video_target(out: Path) -> None:
    """Refuse, before any frame is made, a format we do not write or MP4 without its extra."""
    kind = out.suffix.lower()
    if kind not in VIDEO_FORMATS:
        raise SurgsimError(f"--out {out}: unsupported video format {out.suffix!r}; use .gif or .mp4")
    if kind == ".mp4":
        require("video", f"--out {out}: MP4 output")


def write_video(frames: list[np.ndarray], out: str | Path, fps: int = 20) -> Path:
    """GIF through Pillow; MP4 through imageio-ffmpeg (``pip install surgsim[video]``)."""
    out = Path(out)
    check_video_target(out)
    if out.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        return atomic_save(out, lambda tmp: images[0].save(
            tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0))
    import imageio.v2 as imageio

    return atomic_save(out, lambda tmp: imageio.mimwrite(tmp, frames, fps=fps, format="FFMPEG"))
