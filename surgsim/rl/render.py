"""Watch a policy: frames from ``rgb_array`` renders written as a GIF (or MP4 with the video extra)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import gymnasium as gym
import numpy as np


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


def write_video(frames: list[np.ndarray], out: str | Path, fps: int = 20) -> Path:
    """GIF through Pillow; MP4 through imageio-ffmpeg (``pip install surgsim[video]``)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.stem + ".partial" + out.suffix)
    if out.suffix.lower() == ".gif":
        from PIL import Image

        images = [Image.fromarray(f) for f in frames]
        images[0].save(tmp, save_all=True, append_images=images[1:], duration=int(1000 / fps), loop=0)
    elif out.suffix.lower() == ".mp4":
        try:
            import imageio.v2 as imageio
        except ImportError:
            raise RuntimeError("MP4 output needs the video extra: pip install 'surgsim[video]'") from None
        imageio.mimwrite(tmp, frames, fps=fps, format="FFMPEG")
    else:
        raise ValueError(f"--out {out}: unsupported video format {out.suffix!r}; use .gif or .mp4")
    os.replace(tmp, out)
    return out
