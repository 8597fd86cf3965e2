"""PyBullet layer: the World, bodies built from a scene value, instruments and camera. No Gymnasium here."""

from surgsim.sim.camera import Camera
from surgsim.sim.world import ClosestPoint, RayHit, World

__all__ = ["Camera", "ClosestPoint", "RayHit", "World"]
