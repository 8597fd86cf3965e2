"""The pretrained volume encoder's checkpoint: one file with the encoder's weights and the
:class:`EncoderConfig` that says what it fits (written by ``surgsim predictor pretrain``, read by
``surgsim predictor train --init-from``). Read only with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import nn

from surgsim._files import atomic_save
from surgsim.predictor.data import DatasetMeta
from surgsim.predictor.model import MAX_CHANNELS, MAX_LEVELS, MAX_RESOLUTION, MAX_WIDTH, encoder_levels, valid_widths
from surgsim.predictor.predictor import PredictorError, checkpoint_config, load_weights, read_checkpoint

ENCODER_FORMAT = "surgsim-volume-encoder"


class EncoderConfig(BaseModel):
    """What an encoder checkpoint must agree on with the predictor that loads it."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    format: Literal["surgsim-volume-encoder"] = ENCODER_FORMAT
    version: Literal[1] = 1
    #: the dataset the volumes came from (for the record; not checked on loading)
    task: str
    env_id: str
    resolution: int = Field(ge=4, le=MAX_RESOLUTION)
    channels: list[str] = Field(min_length=1, max_length=MAX_CHANNELS)
    widths: list[int] = Field(min_length=1, max_length=MAX_LEVELS)
    #: voxel value -> network input; the fine-tuned predictor takes this one over
    volume_scale: float = Field(gt=0)
    #: pretext: masked blocks of ``block`` voxels a side, each masked with probability ``mask_frac``
    block: int = Field(ge=1, le=MAX_RESOLUTION)
    mask_frac: float = Field(gt=0, lt=1)

    @field_validator("widths")
    @classmethod
    def _valid_widths(cls, widths: list[int]) -> list[int]:
        if not valid_widths(widths):
            raise ValueError(f"widths must be between 1 and {MAX_WIDTH}, got {widths}")
        return widths

    @model_validator(mode="after")
    def _grid(self) -> "EncoderConfig":
        if self.resolution % 2 ** len(self.widths):
            raise ValueError(f"resolution {self.resolution} must be divisible by 2**len(widths) "
                             f"= {2 ** len(self.widths)}")
        if self.resolution % self.block:
            raise ValueError(f"resolution {self.resolution} must be divisible by block {self.block}")
        return self


def save_encoder(levels: nn.ModuleList, config: EncoderConfig, path: str | Path) -> Path:
    """Write the encoder's weights + config to ``path`` atomically."""
    payload = {
        "format": ENCODER_FORMAT,
        "config": config.model_dump_json(),
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in levels.state_dict().items()},
    }
    return atomic_save(path, lambda tmp: torch.save(payload, tmp))


@dataclass(frozen=True)
class PretrainedEncoder:
    """A loaded encoder checkpoint: its file (for messages), config and weights."""

    path: Path
    config: EncoderConfig
    levels: nn.ModuleList


def load_encoder(path: str | Path) -> PretrainedEncoder:
    """Read an encoder checkpoint (``weights_only``; on the CPU); every problem names the file."""
    path = Path(path)
    payload = read_checkpoint(path, torch.device("cpu"), ENCODER_FORMAT, "encoder")
    config = checkpoint_config(payload, path, EncoderConfig, "encoder")
    levels = encoder_levels(len(config.channels), config.widths)
    load_weights(levels, payload, path)
    return PretrainedEncoder(path, config, levels)


def check_encoder_fits(encoder: PretrainedEncoder, meta: DatasetMeta, widths: Sequence[int]) -> None:
    """Raise :class:`PredictorError` (one line naming the file and each mismatching field) unless
    the encoder was pretrained on volumes like ``meta``'s with the encoder ``widths``."""
    c = encoder.config
    pairs = {
        "resolution": (c.resolution, meta.resolution, "dataset"),
        "channels": (list(c.channels), list(meta.channels), "dataset"),
        "widths": (list(c.widths), list(widths), "--widths"),
    }
    bad = [f"{name}: encoder {mine!r}, {where} {theirs!r}" for name, (mine, theirs, where) in pairs.items()
           if mine != theirs]
    if bad:
        raise PredictorError(f"{encoder.path} does not fit {meta.root}: " + "; ".join(bad))
