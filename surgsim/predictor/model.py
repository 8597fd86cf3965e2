"""The path predictor network and the configuration stored with its weights.

Architecture: a small strided 3D convolutional encoder of the pre-operative volume (with three
coordinate channels added, so filters know where they are; ``PathNet.levels``, which
``surgsim predictor pretrain`` can pretrain without path labels). Two heads read it:

* keypoints: a 1x1x1 convolution of the first level makes heat maps whose spatial soft-argmax
  gives expected positions in the volume frame, sub-voxel precise (the target, structures);
* context: the deepest level averaged over space (what lies between start and target).

Both, with the normalised start pose, feed an MLP that outputs K waypoints in the volume frame.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

CONFIG_FORMAT = "surgsim-path-predictor"

#: Bounds on a configuration, checked before the network is built, so that a checkpoint from
#: elsewhere cannot make loading it allocate without limit: at these bounds the network has about
#: 54 M parameters (about 250 MB with its buffers); the defaults need well under 1 MB.
MAX_RESOLUTION = 128
MAX_CHANNELS = 16
MAX_START_FIELDS = 64
MAX_WAYPOINTS = 1024
MAX_LEVELS = 6
MAX_WIDTH = 256
MAX_KEYPOINTS = 256
MAX_HIDDEN = 4096


def valid_widths(widths: Sequence[int]) -> bool:
    """The rule on the encoder widths: 1 to :data:`MAX_LEVELS` of them, each 1 to :data:`MAX_WIDTH`
    (what :class:`PredictorConfig` accepts; the training options check it before any data is read)."""
    return 1 <= len(widths) <= MAX_LEVELS and all(1 <= w <= MAX_WIDTH for w in widths)


class PredictorConfig(BaseModel):
    """Everything needed to rebuild the network and map its numbers to metres."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format: Literal["surgsim-path-predictor"] = CONFIG_FORMAT
    version: Literal[1] = 1
    task: str
    env_id: str
    env_kwargs: dict = Field(default_factory=dict)
    resolution: int = Field(ge=4, le=MAX_RESOLUTION)
    channels: list[str] = Field(min_length=1, max_length=MAX_CHANNELS)
    n_waypoints: int = Field(ge=2, le=MAX_WAYPOINTS)
    start_fields: list[str] = Field(min_length=1, max_length=MAX_START_FIELDS)
    widths: list[int] = Field(default_factory=lambda: [16, 32, 64], min_length=1, max_length=MAX_LEVELS)
    keypoints: int = Field(16, ge=1, le=MAX_KEYPOINTS)
    hidden: int = Field(256, ge=8, le=MAX_HIDDEN)
    #: volume frame: centre and half extents of the grid (m)
    frame_centre: list[float] = Field(min_length=3, max_length=3)
    frame_half_extent: list[float] = Field(min_length=3, max_length=3)
    #: voxel value -> network input (1 / the largest value in the training volumes)
    volume_scale: float = Field(gt=0)
    #: start pose normalisation (per field, from the training split)
    start_mean: list[float]
    start_std: list[float]

    @field_validator("widths")
    @classmethod
    def _positive_widths(cls, widths: list[int]) -> list[int]:
        if not valid_widths(widths):  # the length is checked by the field (pydantic's message)
            raise ValueError(f"widths must be between 1 and {MAX_WIDTH}, got {widths}")
        return widths

    @model_validator(mode="after")
    def _start_normalisation(self) -> "PredictorConfig":
        n = len(self.start_fields)
        if len(self.start_mean) != n or len(self.start_std) != n:
            raise ValueError(f"start_mean and start_std need one value per start field ({n})")
        if any(not s > 0 for s in self.start_std):
            raise ValueError(f"start_std must be positive, got {self.start_std}")
        return self

    @property
    def downsampling(self) -> int:
        return 2 ** len(self.widths)


def _grid(n: int, device: torch.device | None = None) -> torch.Tensor:
    """Cell-centre coordinates of ``n`` cells spanning [-1, 1]."""
    return (torch.arange(n, device=device, dtype=torch.float32) * 2 + 1) / n - 1


def coordinate_channels(resolution: int, device: torch.device | None = None) -> torch.Tensor:
    """(3, R, R, R): the volume-frame x, y and z of each voxel centre (axes in that order)."""
    g = _grid(resolution, device)
    return torch.stack(torch.meshgrid(g, g, g, indexing="ij"))


def encoder_levels(n_channels: int, widths: Sequence[int]) -> nn.ModuleList:
    """The volume encoder: one strided 3D convolution block per width, each halving the grid.

    Its input is the scaled volume with the three coordinate channels appended. :class:`PathNet`
    and the pretext model of :mod:`surgsim.predictor.pretrain` both build it here, so the
    pretrained weights load into the path predictor key for key.
    """
    levels = []
    width_in = n_channels + 3
    for width in widths:
        levels.append(nn.Sequential(
            nn.Conv3d(width_in, width, 3, stride=2, padding=1),
            nn.GroupNorm(min(8, width), width),
            nn.SiLU(),
            nn.Conv3d(width, width, 3, padding=1),
            nn.GroupNorm(min(8, width), width),
            nn.SiLU(),
        ))
        width_in = width
    return nn.ModuleList(levels)


class PathNet(nn.Module):
    """Raw volume (B, C, R, R, R) + raw start (B, S) -> waypoints (B, K, 3) in the volume frame.

    The input normalisation (voxel scale, start mean and std) and the frame are buffers built
    from the config, so training and prediction cannot normalise differently.
    """

    def __init__(self, config: PredictorConfig) -> None:
        super().__init__()
        if config.resolution % config.downsampling:
            raise ValueError(
                f"resolution {config.resolution} must be divisible by 2**len(widths) = {config.downsampling}"
            )
        self.n_waypoints = config.n_waypoints
        self.volume_scale = config.volume_scale
        for name in ("start_mean", "start_std", "frame_centre", "frame_half_extent"):
            self.register_buffer(name, torch.tensor(getattr(config, name)), persistent=False)
        self.register_buffer("coords", coordinate_channels(config.resolution), persistent=False)
        self.levels = encoder_levels(len(config.channels), config.widths)
        self.heatmaps = nn.Conv3d(config.widths[0], config.keypoints, 1)
        n_cells = config.resolution // 2
        g = _grid(n_cells)
        cells = torch.stack(torch.meshgrid(g, g, g, indexing="ij")).reshape(3, -1).T
        self.register_buffer("cell_coords", cells, persistent=False)  # (cells, 3)
        features = 3 * config.keypoints + config.widths[-1] + len(config.start_fields)
        self.head = nn.Sequential(
            nn.Linear(features, config.hidden),
            nn.SiLU(),
            nn.Linear(config.hidden, config.hidden),
            nn.SiLU(),
            nn.Linear(config.hidden, 3 * config.n_waypoints),
        )

    def to_unit(self, points: torch.Tensor) -> torch.Tensor:
        """World metres -> volume frame."""
        return (points - self.frame_centre) / self.frame_half_extent

    def from_unit(self, unit: torch.Tensor) -> torch.Tensor:
        """Volume frame -> world metres."""
        return unit * self.frame_half_extent + self.frame_centre

    def forward(self, volume: torch.Tensor, start: torch.Tensor) -> torch.Tensor:
        b = volume.shape[0]
        volume = volume.float() * self.volume_scale
        start = (start.float() - self.start_mean) / self.start_std
        x = torch.cat([volume, self.coords.expand(b, -1, -1, -1, -1)], dim=1)
        x = self.levels[0](x)
        weights = torch.softmax(self.heatmaps(x).flatten(2).float(), dim=-1)  # (B, keypoints, cells)
        keypoints = weights @ self.cell_coords  # (B, keypoints, 3)
        for level in self.levels[1:]:
            x = level(x)
        context = x.mean(dim=(2, 3, 4)).float()
        features = torch.cat([keypoints.flatten(1), context, start], dim=1)
        return self.head(features).view(b, self.n_waypoints, 3)
