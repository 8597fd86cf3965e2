"""A pinhole endoscope camera rendered with PyBullet's TinyRenderer (CPU, no GPU needed)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import pybullet as p

from surgsim.sim.world import World


@dataclass
class Camera:
    eye: Sequence[float]
    target: Sequence[float]
    up: Sequence[float] = (0.0, 0.0, 1.0)
    fov_deg: float = 60.0
    near: float = 0.005
    far: float = 0.5
    _view: list = field(init=False, repr=False)
    _projection: dict = field(init=False, repr=False, default_factory=dict)

    def __post_init__(self) -> None:
        self._view = p.computeViewMatrix(list(self.eye), list(self.target), list(self.up))

    def _projection_for(self, width: int, height: int) -> list:
        key = (width, height)
        if key not in self._projection:
            self._projection[key] = p.computeProjectionMatrixFOV(
                self.fov_deg, width / height, self.near, self.far
            )
        return self._projection[key]

    def rgb(self, world: World, width: int, height: int) -> np.ndarray:
        """H x W x 3 uint8 colour image."""
        rgb, _ = world.camera_image(width, height, self._view, self._projection_for(width, height))
        return rgb

    def rgbd(self, world: World, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """Colour image and metric depth (H x W float32, metres from the camera plane)."""
        rgb, buffer = world.camera_image(width, height, self._view, self._projection_for(width, height))
        depth = self.far * self.near / (self.far - (self.far - self.near) * buffer)
        return rgb, np.clip(depth, self.near, self.far).astype(np.float32)
