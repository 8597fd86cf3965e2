"""Frames a person can follow: each rendered frame annotated with step, reward, clearance, tool force and outcome.

``AnnotatedFrames`` is a wrapper, so any loop that drives an env (``run_episodes``, a trainee at
the keyboard) can be filmed without changing it. Frames are enlarged and given a caption band
below the picture; the last frame of an episode is held so that its outcome can be read.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from surgsim.outcome import episode_outcome

_WHITE = (235, 235, 235)
_GREEN = (90, 220, 110)
_RED = (240, 90, 80)
_AMBER = (240, 190, 70)
_BAND = (24, 24, 28)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)  # scalable when Pillow has FreeType
    except (TypeError, OSError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


class AnnotatedFrames(gym.Wrapper):
    """Keep an annotated ``rgb_array`` frame after every reset and step of the first episodes.

    Args:
        env: an env made with ``render_mode="rgb_array"``.
        episodes: how many episodes to film (later ones run unfilmed, at full speed).
        width: frame width in pixels after enlarging (the caption band is added below).
        hold_frames: copies of an episode's last frame, so its outcome stays on screen.
    """

    def __init__(self, env: gym.Env, episodes: int = 3, width: int = 480, hold_frames: int = 15):
        if env.render_mode != "rgb_array":
            raise ValueError("AnnotatedFrames needs an env made with render_mode='rgb_array'")
        super().__init__(env)
        self.episodes_to_film = episodes
        self.width = width
        self.hold_frames = hold_frames
        self.frames: list[np.ndarray] = []
        self._episode = 0
        self._step = 0
        self._return = 0.0
        self._font = _font(max(12, width // 30))

    @property
    def filming(self) -> bool:
        return self._episode <= self.episodes_to_film

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self._episode += 1
        self._step, self._return = 0, 0.0
        if self.filming:
            self._capture(info, reward=0.0, outcome=None)
        return obs, info

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self._step += 1
        self._return += float(reward)
        if self.filming:
            outcome = episode_outcome(info) if (terminated or truncated) else None
            self._capture(info, float(reward), outcome)
            if outcome is not None:
                self.frames.extend([self.frames[-1]] * self.hold_frames)
        return obs, reward, terminated, truncated, info

    def _capture(self, info: dict[str, Any], reward: float, outcome: str | None) -> None:
        picture = Image.fromarray(np.asarray(self.env.render())[:, :, :3])
        height = round(picture.height * self.width / picture.width)
        picture = picture.resize((self.width, height), Image.BILINEAR)
        line = self._font.size + 6 if hasattr(self._font, "size") else 18
        frame = Image.new("RGB", (self.width, height + 3 * line + 8), _BAND)
        frame.paste(picture, (0, 0))
        draw = ImageDraw.Draw(frame)
        env_id = self.env.spec.id if self.env.spec is not None else type(self.env.unwrapped).__name__
        draw.text((8, height + 4), f"{env_id}   episode {self._episode}   step {self._step}",
                  fill=_WHITE, font=self._font)
        draw.text((8, height + 4 + line), self._measures(info, reward), fill=_WHITE, font=self._font)
        status, colour = self._status(outcome)
        draw.text((8, height + 4 + 2 * line), status, fill=colour, font=self._font)
        self.frames.append(np.asarray(frame))

    def _measures(self, info: dict[str, Any], reward: float) -> str:
        parts = [f"reward {reward:+.2f} (total {self._return:+.2f})"]
        if info.get("distance_to_target") is not None:
            parts.append(f"to target {1000 * info['distance_to_target']:.1f} mm")
        clearance = info.get("clearance")
        if clearance is not None and np.isfinite(clearance):
            parts.append(f"clearance {1000 * clearance:.1f} mm")
        if info.get("tool_force") is not None:  # elastic tissue
            parts.append(f"force {info['tool_force']:.2f} N")
        return "   ".join(parts)

    @staticmethod
    def _status(outcome: str | None) -> tuple[str, tuple[int, int, int]]:
        if outcome is None:
            return "in progress", _WHITE
        if outcome == "success":
            return "SUCCESS: target reached", _GREEN
        if outcome == "time_limit":
            return "ended: time limit", _AMBER
        return f"FAILURE: {outcome.replace('_', ' ')}", _RED
