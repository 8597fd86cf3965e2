"""Train the path predictor on a dataset folder: MSE on the waypoints in the volume frame.

AdamW with a linear warm-up then cosine decay per step, early stopping on the validation loss,
autocast (bf16, else fp16 with a gradient scaler) on CUDA. The best checkpoint by validation
loss is written atomically each time it improves; at the end ``<out stem>.history.json`` and
``<out stem>.loss.png`` are written beside it. ``init_from`` starts the encoder from a pretrained
one (``surgsim predictor pretrain``), optionally frozen for the first epochs; the heads always
start fresh.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from pydantic import ValidationError
from tqdm import tqdm

from surgsim._files import atomic_write_json
from surgsim.errors import SurgsimError
from surgsim.predictor.data import DatasetMeta, PathDataset, load_split, read_meta
from surgsim.predictor.encoder import PretrainedEncoder, check_encoder_fits, load_encoder
from surgsim.predictor.model import (
    MAX_HIDDEN, MAX_KEYPOINTS, MAX_LEVELS, MAX_WIDTH, PathNet, PredictorConfig, valid_widths,
)
from surgsim.predictor.plots import loss_curve
from surgsim.predictor.predictor import config_problem, resolve_device, save_checkpoint

#: volume channel whose occupancy the optional clearance term penalises at predicted waypoints
CRITICAL_CHANNEL = "critical"


class PredictorTrainingError(SurgsimError):
    """Training options that cannot work with the dataset."""


@dataclass
class TrainOptions:
    epochs: int = 30
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 1e-4
    #: warm-up length in epochs (linear from 0), then cosine decay to ``lr * final_lr_fraction``
    warmup_epochs: float = 1.0
    final_lr_fraction: float = 0.02
    #: stop after this many epochs without a relative validation improvement of ``min_delta``
    patience: int = 6
    min_delta: float = 1e-3
    #: weight of the mean critical-structure occupancy at the predicted waypoints (0: off)
    clearance_weight: float = 0.0
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    keypoints: int = 16
    hidden: int = 256
    device: str = "auto"
    #: autocast on CUDA (ignored on CPU, where it would be slower)
    amp: bool = True
    seed: int = 0
    #: use only the first N train / val scenarios (None: all)
    limit_train: int | None = None
    limit_val: int | None = None
    #: an encoder checkpoint (``surgsim predictor pretrain``) to start the encoder from
    init_from: str | Path | None = None
    #: train only the heads for this many first epochs (needs ``init_from``)
    freeze_encoder_epochs: int = 0
    progress: bool = True

    def check(self) -> None:
        """Raise :class:`PredictorTrainingError` naming the first option out of range (before any data is read)."""
        finite = math.isfinite
        for name, ok, expected in (
            ("epochs", self.epochs >= 1, "an integer >= 1"),
            ("batch_size", self.batch_size >= 1, "an integer >= 1"),
            ("patience", self.patience >= 1, "an integer >= 1"),
            ("lr", finite(self.lr) and self.lr >= 0, "a finite number >= 0"),
            ("weight_decay", finite(self.weight_decay) and self.weight_decay >= 0, "a finite number >= 0"),
            ("warmup_epochs", finite(self.warmup_epochs) and self.warmup_epochs >= 0, "a finite number >= 0"),
            ("final_lr_fraction", 0 <= self.final_lr_fraction <= 1, "a number from 0 to 1"),
            ("min_delta", 0 <= self.min_delta < 1, "a number from 0 to below 1"),
            ("clearance_weight", finite(self.clearance_weight) and self.clearance_weight >= 0, "a finite number >= 0"),
            ("widths", valid_widths(self.widths),
             f"1 to {MAX_LEVELS} integers, each 1 to {MAX_WIDTH}"),
            ("keypoints", 1 <= self.keypoints <= MAX_KEYPOINTS, f"an integer from 1 to {MAX_KEYPOINTS}"),
            ("hidden", 8 <= self.hidden <= MAX_HIDDEN, f"an integer from 8 to {MAX_HIDDEN}"),
            ("limit_train", self.limit_train is None or self.limit_train >= 1, "an integer >= 1"),
            ("limit_val", self.limit_val is None or self.limit_val >= 1, "an integer >= 1"),
            ("freeze_encoder_epochs", self.freeze_encoder_epochs >= 0, "an integer >= 0"),
        ):
            if not ok:
                raise PredictorTrainingError(f"--{name.replace('_', '-')} {getattr(self, name)!r}: expected {expected}")
        if self.freeze_encoder_epochs and self.init_from is None:
            raise PredictorTrainingError(
                f"--freeze-encoder-epochs {self.freeze_encoder_epochs}: needs --init-from (a pretrained encoder)")


@dataclass
class TrainResult:
    checkpoint: Path
    history: list[dict[str, float]]
    best_epoch: int
    best_val_loss: float
    #: validation MSE of the baseline that always predicts the training split's mean path
    baseline_val_loss: float
    best_val_error_mm: float
    device: str
    device_name: str
    amp_dtype: str | None
    #: training samples per second (forward + backward + step; validation excluded)
    samples_per_s: float
    stopped_early: bool
    n_train: int
    n_val: int
    n_parameters: int
    seconds: float


def make_config(meta: DatasetMeta, train: PathDataset, options: TrainOptions,
                volume_scale: float | None = None) -> PredictorConfig:
    """The model config: architecture from ``options``, normalisation from the training split
    (the voxel scale from a pretrained encoder when one is given: its features assume it)."""
    largest = int(train.volume.max())
    start = train.start.double()
    std = start.std(dim=0, unbiased=False)
    std = torch.where(std > 1e-8, std, torch.ones_like(std))
    frame = meta.frame
    try:
        return PredictorConfig(
            task=meta.task, env_id=meta.env_id, env_kwargs=meta.env_kwargs, resolution=meta.resolution,
            channels=list(meta.channels), n_waypoints=meta.n_waypoints, start_fields=list(meta.start_fields),
            widths=list(options.widths), keypoints=options.keypoints, hidden=options.hidden,
            frame_centre=frame.centre.tolist(), frame_half_extent=frame.half_extent.tolist(),
            volume_scale=1.0 / max(largest, 1) if volume_scale is None else volume_scale,
            start_mean=start.mean(dim=0).tolist(), start_std=std.tolist(),
        )
    except ValidationError as exc:
        raise PredictorTrainingError(f"{meta.root}: the dataset does not make a valid model config: {config_problem(exc)}") from None


def lr_factor(step: int, warmup: int, total: int, final: float) -> float:
    """The learning-rate multiplier at ``step``: linear warm-up, then cosine decay to ``final``."""
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return final + (1.0 - final) * 0.5 * (1.0 + math.cos(math.pi * progress))


def _clearance_penalty(volume: torch.Tensor, volume_scale: float, unit: torch.Tensor,
                       channel: int) -> torch.Tensor:
    """Mean occupancy of the critical channel, trilinearly sampled at the predicted waypoints."""
    occupancy = volume[:, channel:channel + 1].float() * volume_scale  # (B, 1, X, Y, Z)
    # grid_sample reads the last grid coordinate along the first spatial axis: pass (z, y, x)
    grid = unit.flip(-1).view(unit.shape[0], -1, 1, 1, 3).float()
    return F.grid_sample(occupancy, grid, align_corners=False, padding_mode="zeros").mean()


def _evaluate(model: PathNet, data: PathDataset, batch_size: int, autocast) -> tuple[float, float]:
    """Validation MSE (volume frame) and mean waypoint error (mm)."""
    model.eval()
    total_sq, total_err, n = 0.0, 0.0, 0
    with torch.inference_mode():
        for volume, start, waypoints in data.batches(batch_size):
            with autocast():
                unit = model(volume, start)
            unit = unit.float()
            total_sq += F.mse_loss(unit, model.to_unit(waypoints), reduction="sum").item()
            total_err += (model.from_unit(unit) - waypoints).norm(dim=-1).mean(dim=-1).sum().item()
            n += len(volume)
    model.train()
    k = data.meta.n_waypoints
    return total_sq / (n * k * 3), 1000.0 * total_err / n


def train(data_dir: str | Path, out: str | Path, options: TrainOptions | None = None) -> TrainResult:
    """Train on ``data_dir`` (made by ``surgsim predictor generate``); write the best model to ``out``."""
    options = options or TrainOptions()
    options.check()
    out = Path(out)
    began = time.perf_counter()
    meta = read_meta(data_dir)
    encoder = None
    if options.init_from is not None:
        encoder = load_encoder(options.init_from)
        check_encoder_fits(encoder, meta, options.widths)
    train_set = load_split(meta, "train", options.limit_train, progress=options.progress)
    val_set = load_split(meta, "val", options.limit_val, progress=options.progress)
    config = make_config(meta, train_set, options, encoder.config.volume_scale if encoder else None)
    if config.resolution % config.downsampling:
        raise PredictorTrainingError(
            f"resolution {config.resolution} of {meta.root} is not divisible by 2**len(widths) "
            f"= {config.downsampling}; use fewer widths"
        )
    critical = None
    if options.clearance_weight > 0:
        if CRITICAL_CHANNEL not in meta.channels:
            raise PredictorTrainingError(
                f"clearance_weight > 0 needs a {CRITICAL_CHANNEL!r} volume channel; {meta.root} has "
                f"{list(meta.channels)}"
            )
        critical = meta.channels.index(CRITICAL_CHANNEL)

    device = resolve_device(options.device)
    generator = torch.Generator().manual_seed(options.seed)
    model = initial_model(config, options.seed, encoder).to(device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        train_set.to(device)
        val_set.to(device)
    amp_dtype = None
    if device.type == "cuda" and options.amp:
        amp_dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16

    def autocast():
        return torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype is not None)

    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)
    mean_path = model.to_unit(train_set.waypoints.float()).mean(dim=0)
    baseline = F.mse_loss(mean_path.expand(len(val_set), -1, -1), model.to_unit(val_set.waypoints.float())).item()

    optimiser = torch.optim.AdamW(model.parameters(), lr=options.lr, weight_decay=options.weight_decay)
    steps_per_epoch = math.ceil(len(train_set) / options.batch_size)
    total = steps_per_epoch * options.epochs
    warmup = max(1, int(options.warmup_epochs * steps_per_epoch))
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimiser, lambda s: lr_factor(s, warmup, total, options.final_lr_fraction)
    )
    history: list[dict[str, float]] = []
    best, best_epoch, best_error, wait, stopped_early = math.inf, 0, math.inf, 0, False
    train_seconds, train_samples = 0.0, 0
    bar = tqdm(total=total, unit="batch", desc="training", disable=not options.progress)
    model.train()
    for epoch in range(1, options.epochs + 1):
        bar.set_description(f"epoch {epoch}/{options.epochs}")
        # a frozen encoder gets no gradients, so AdamW leaves it alone (decay included)
        model.levels.requires_grad_(epoch > options.freeze_encoder_epochs)
        tic = time.perf_counter()
        loss_sum = 0.0
        for volume, start, waypoints in train_set.batches(options.batch_size, True, generator):
            with autocast():
                unit = model(volume, start)
                loss = F.mse_loss(unit.float(), model.to_unit(waypoints))
                if critical is not None:
                    loss = loss + options.clearance_weight * _clearance_penalty(
                        volume, config.volume_scale, unit, critical)
            optimiser.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimiser)
            scaler.update()
            scheduler.step()
            loss_sum += loss.detach() * len(volume)
            bar.update()
        epoch_loss = float(loss_sum) / len(train_set)  # one sync per epoch, not per step
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        seconds = time.perf_counter() - tic
        train_seconds += seconds
        train_samples += len(train_set)
        val_loss, val_error = _evaluate(model, val_set, 4 * options.batch_size, autocast)
        history.append({
            "epoch": epoch, "lr": optimiser.param_groups[0]["lr"], "train_loss": epoch_loss,
            "val_loss": val_loss, "val_error_mm": val_error, "train_seconds": seconds,
            "samples_per_s": len(train_set) / seconds,
        })
        bar.set_postfix(train=f"{epoch_loss:.2e}", val=f"{val_loss:.2e}", mm=f"{val_error:.2f}")
        if val_loss < best * (1.0 - options.min_delta):
            best, best_epoch, best_error, wait = val_loss, epoch, val_error, 0
            save_checkpoint(model, config, out)
        else:
            wait += 1
            if wait >= options.patience:
                stopped_early = epoch < options.epochs
                break
    bar.close()

    result = TrainResult(
        checkpoint=out, history=history, best_epoch=best_epoch, best_val_loss=best,
        baseline_val_loss=baseline, best_val_error_mm=best_error, device=str(device),
        device_name=torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        amp_dtype=str(amp_dtype).replace("torch.", "") if amp_dtype else None,
        samples_per_s=train_samples / train_seconds, stopped_early=stopped_early,
        n_train=len(train_set), n_val=len(val_set),
        n_parameters=sum(p.numel() for p in model.parameters()),
        seconds=time.perf_counter() - began,
    )
    atomic_write_json(history_path(out), {
        **{k: v for k, v in asdict(result).items() if k != "checkpoint"},
        "checkpoint": str(out), "data": str(meta.root), "options": asdict(options),
        "config": config.model_dump(),
    })
    loss_curve(history, baseline, out.with_name(out.stem + ".loss.png"), title=f"{meta.env_id}: {out.name}")
    return result


def initial_model(config: PredictorConfig, seed: int, encoder: PretrainedEncoder | None = None) -> PathNet:
    """A new network, initialised from ``seed``; its encoder weights copied from ``encoder`` if given
    (the heads stay freshly initialised either way)."""
    torch.manual_seed(seed)
    model = PathNet(config)
    if encoder is not None:
        model.levels.load_state_dict(encoder.levels.state_dict())
    return model


def history_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.stem + ".history.json")


