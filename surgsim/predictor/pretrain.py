"""Self-supervised pretraining of the path predictor's volume encoder on unlabelled volumes.

Pretext task: masked-volume reconstruction. Random cubic blocks of the scaled volume (every
channel at once) are replaced by -1, a value no real voxel has, and the network reconstructs
them; the loss is the mean squared error over the masked voxels only, so copying the input
cannot lower it. The encoder is the predictor's own (:func:`surgsim.predictor.model.encoder_levels`,
coordinate channels included); the decoder is light on purpose (a 1x1x1 projection of every level,
upsampled trilinearly to the full grid and summed), so that the encoder must carry what the
volume holds where. Only the volumes are read (:func:`surgsim.predictor.data.load_volumes`):
the paths are never touched.

The best encoder by validation loss is written as one checkpoint (:mod:`surgsim.predictor.encoder`);
``surgsim predictor train --init-from`` loads it into a new predictor. Runs on CPU or CUDA, in
fp32 (no autocast).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import ValidationError
from torch import nn
from tqdm import tqdm

from surgsim._files import atomic_write_json
from surgsim.predictor.data import DatasetMeta, load_volumes, read_meta
from surgsim.predictor.encoder import EncoderConfig, save_encoder
from surgsim.predictor.model import (
    MAX_LEVELS, MAX_RESOLUTION, MAX_WIDTH, coordinate_channels, encoder_levels, valid_widths,
)
from surgsim.predictor.predictor import config_problem, resolve_device
from surgsim.predictor.train import PredictorTrainingError, lr_factor

#: the value masked voxels get (scaled voxels lie in [0, 1])
MASK_VALUE = -1.0


class MaskedVolumeNet(nn.Module):
    """Masked scaled volume (B, C, R, R, R) -> reconstruction of every voxel (B, C, R, R, R)."""

    def __init__(self, config: EncoderConfig) -> None:
        super().__init__()
        self.resolution = config.resolution
        self.register_buffer("coords", coordinate_channels(config.resolution), persistent=False)
        self.levels = encoder_levels(len(config.channels), config.widths)
        self.decoder = nn.ModuleList(nn.Conv3d(width, len(config.channels), 1) for width in config.widths)

    def forward(self, masked: torch.Tensor) -> torch.Tensor:
        x = torch.cat([masked, self.coords.expand(masked.shape[0], -1, -1, -1, -1)], dim=1)
        out = 0
        for level, project in zip(self.levels, self.decoder):
            x = level(x)
            out = out + F.interpolate(project(x), size=self.resolution, mode="trilinear", align_corners=False)
        return out


def block_mask(n: int, resolution: int, block: int, frac: float, generator: torch.Generator,
               device: torch.device) -> torch.Tensor:
    """(n, 1, R, R, R) bool: cubic blocks of ``block`` voxels, each True with probability ``frac``."""
    cells = resolution // block
    coarse = torch.rand((n, 1, cells, cells, cells), generator=generator) < frac
    for axis in (2, 3, 4):
        coarse = coarse.repeat_interleave(block, dim=axis)
    return coarse.to(device)


def pretext_loss(model: MaskedVolumeNet, scaled: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared reconstruction error over the masked voxels (all channels)."""
    masked = torch.where(mask, torch.full_like(scaled, MASK_VALUE), scaled)
    error = (model(masked) - scaled).square() * mask
    return error.sum() / (mask.sum().clamp(min=1) * scaled.shape[1])


@dataclass
class PretrainOptions:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 2e-3
    weight_decay: float = 1e-4
    warmup_epochs: float = 1.0
    final_lr_fraction: float = 0.02
    mask_frac: float = 0.5
    block: int = 4
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    device: str = "auto"
    seed: int = 0
    #: use only the first N train / val volumes (None: all)
    limit_train: int | None = None
    limit_val: int | None = None
    progress: bool = True

    def check(self) -> None:
        """Raise :class:`PredictorTrainingError` naming the first option out of range (before any data is read)."""
        for name, ok, expected in (
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("lr", math.isfinite(self.lr) and self.lr >= 0, "a finite number >= 0"),
            ("weight_decay", math.isfinite(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            ("warmup_epochs", math.isfinite(self.warmup_epochs) and self.warmup_epochs >= 0, "a finite number >= 0"),
            ("final_lr_fraction", 0 <= self.final_lr_fraction <= 1, "a number from 0 to 1"),
            ("mask_frac", 0 < self.mask_frac < 1, "a number between 0 and 1 (exclusive)"),
            ("block", 1 <= self.block <= MAX_RESOLUTION, f"an integer from 1 to {MAX_RESOLUTION}"),
            ("widths", valid_widths(self.widths), f"1 to {MAX_LEVELS} integers, each 1 to {MAX_WIDTH}"),
            ("limit_train", self.limit_train is None or self.limit_train >= 1, "an integer >= 1"),
            ("limit_val", self.limit_val is None or self.limit_val >= 1, "an integer >= 1"),
        ):
            if not ok:
                raise PredictorTrainingError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: expected {expected}")


@dataclass
class PretrainResult:
    checkpoint: Path
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    #: validation loss of predicting every masked voxel as its channel's training mean
    baseline_val_loss: float
    device: str
    samples_per_s: float
    n_train: int
    n_val: int
    seconds: float


def make_encoder_config(meta: DatasetMeta, volumes: torch.Tensor, options: PretrainOptions) -> EncoderConfig:
    """The encoder config: dataset geometry, ``options``' architecture and mask, scale from ``volumes``."""
    try:
        return EncoderConfig(
            task=meta.task, env_id=meta.env_id, resolution=meta.resolution, channels=list(meta.channels),
            widths=list(options.widths), volume_scale=1.0 / max(int(volumes.max()), 1),
            block=options.block, mask_frac=options.mask_frac,
        )
    except ValidationError as exc:
        raise PredictorTrainingError(
            f"{meta.root}: the dataset does not make a valid encoder config: {config_problem(exc)}") from None


def _val_loss(model: MaskedVolumeNet, volumes: torch.Tensor, config: EncoderConfig, options: PretrainOptions,
              device: torch.device) -> float:
    """Pretext loss on ``volumes`` with masks from a fixed seed (the same masks every epoch)."""
    generator = torch.Generator().manual_seed(options.seed + 1)
    model.eval()
    total, n = 0.0, 0
    with torch.inference_mode():
        for i in range(0, len(volumes), 4 * options.batch_size):
            scaled = volumes[i:i + 4 * options.batch_size].to(device).float() * config.volume_scale
            mask = block_mask(len(scaled), config.resolution, config.block, config.mask_frac, generator, device)
            total += pretext_loss(model, scaled, mask).item() * len(scaled)
            n += len(scaled)
    model.train()
    return total / n


def _mean_baseline(train: torch.Tensor, val: torch.Tensor, scale: float) -> float:
    """MSE of predicting each channel's mean training voxel: what a reconstruction must beat."""
    means = torch.stack([train[:, c].double().mean() for c in range(train.shape[1])]) * scale
    return float(torch.stack([(val[:, c].double() * scale - means[c]).square().mean()
                              for c in range(val.shape[1])]).mean())


def pretrain(data_dir: str | Path, out: str | Path, options: PretrainOptions | None = None) -> PretrainResult:
    """Pretrain an encoder on the volumes of ``data_dir``'s train split (val split for the best
    epoch); write the best encoder to ``out`` and ``<out stem>.history.json`` beside it."""
    options = options or PretrainOptions()
    options.check()
    out = Path(out)
    began = time.perf_counter()
    meta = read_meta(data_dir)
    if meta.resolution % options.block:
        raise PredictorTrainingError(
            f"--block {options.block}: the resolution {meta.resolution} of {meta.root} is not divisible by it")
    if meta.resolution % 2 ** len(options.widths):
        raise PredictorTrainingError(
            f"resolution {meta.resolution} of {meta.root} is not divisible by 2**len(widths) "
            f"= {2 ** len(options.widths)}; use fewer widths")
    train_volumes = load_volumes(meta, "train", options.limit_train, progress=options.progress)
    val_volumes = load_volumes(meta, "val", options.limit_val, progress=options.progress)
    config = make_encoder_config(meta, train_volumes, options)
    baseline = _mean_baseline(train_volumes, val_volumes, config.volume_scale)

    device = resolve_device(options.device)
    torch.manual_seed(options.seed)
    generator = torch.Generator().manual_seed(options.seed)
    model = MaskedVolumeNet(config).to(device)
    optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(train_volumes) / options.batch_size)
    total = steps_per_epoch * options.epochs
    warmup = max(1, int(options.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: lr_factor(s, warmup, total, options.final_lr_fraction))
    history: list[dict[str, float]] = []
    best, best_epoch, train_seconds = math.inf, 0, 0.0
    bar = tqdm(total=total, unit="batch", desc="pretraining", disable=not options.progress)
    model.train()
    for epoch in range(1, options.epochs + 1):
        bar.set_description(f"epoch {epoch}/{options.epochs}")
        tic = time.perf_counter()
        loss_sum = 0.0
        for index in torch.randperm(len(train_volumes), generator=generator).split(options.batch_size):
            scaled = train_volumes[index].to(device).float() * config.volume_scale
            mask = block_mask(len(index), config.resolution, config.block, config.mask_frac, generator, device)
            loss = pretext_loss(model, scaled, mask)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            optimiser.step()
            scheduler.step()
            loss_sum += loss.detach() * len(index)
            bar.update()
        epoch_loss = float(loss_sum) / len(train_volumes)
        seconds = time.perf_counter() - tic
        train_seconds += seconds
        val_loss = _val_loss(model, val_volumes, config, options, device)
        history.append({"epoch": epoch, "lr": optimiser.param_groups[0]["lr"], "train_loss": epoch_loss,
                        "val_loss": val_loss, "train_seconds": seconds})
        bar.set_postfix(train=f"{epoch_loss:.2e}", val=f"{val_loss:.2e}")
        if val_loss < best:
            best, best_epoch = val_loss, epoch
            save_encoder(model.levels, config, out)
    bar.close()
    result = PretrainResult(
        checkpoint=out, history=history, best_epoch=best_epoch, best_val_loss=best, baseline_val_loss=baseline,
        device=str(device), samples_per_s=len(train_volumes) * len(history) / train_seconds,
        n_train=len(train_volumes), n_val=len(val_volumes), seconds=time.perf_counter() - began,
    )
    atomic_write_json(out.with_name(out.stem + ".history.json"), {
        **asdict(result), "data": str(meta.root), "options": asdict(options), "config": config.model_dump(),
    })
    return result
