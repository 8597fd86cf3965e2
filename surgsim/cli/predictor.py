"""``surgsim predictor generate | pretrain | train | eval``: the supervised surgical path predictor."""

from __future__ import annotations

from pathlib import Path
from typing import List, Optional

import typer

from surgsim.cli._common import app, check_seed, check_writable, fail, require_extra
from surgsim.errors import SurgsimError

predictor_app = typer.Typer(
    help=(
        "Supervised path predictor: learn the planner's safe tool-tip path from the pre-operative "
        "volume and the start pose. generate a dataset, train a model, eval it against the planner."
    ),
    no_args_is_help=True,
)
app.add_typer(predictor_app, name="predictor")

_CHECKPOINT_NOTE = (
    "The checkpoint is ONE file (weights and model config, read back with "
    "torch.load(weights_only=True), never unpickled as code); its training history "
    "(<stem>.history.json) and loss curve (<stem>.loss.png) are written beside it."
)


def _widths(text: str) -> list[int]:
    """``16,32,64`` -> [16, 32, 64]; their range is checked by TrainOptions."""
    try:
        return [int(w) for w in text.split(",")]
    except ValueError:
        fail(f"--widths {text!r} is not a comma-separated list of integers, e.g. 16,32,64")


@predictor_app.command("generate")
def generate_cmd(
    env: str = typer.Option("surgsim/SurgicalPath-v0", "--env", help="Registered env id."),
    n: int = typer.Option(20_000, "-n", "--n-scenarios", min=1, help="Scenarios (patients) to plan."),
    out: Path = typer.Option(Path("data/paths"), "--out", help="Dataset folder to write."),
    workers: int = typer.Option(2, "--workers", min=1, help="Worker processes."),
    seed: int = typer.Option(0, "--seed", callback=check_seed, help="First scenario seed; splits are drawn by seed."),
    waypoints: int = typer.Option(16, "--waypoints", min=2, help="Waypoints K per path."),
    env_kwargs: Optional[List[str]] = typer.Option(None, "--env-kwargs", help="key:value (repeatable), e.g. difficulty:hard."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Plan a reference path for n seeded scenarios in worker processes; write compressed shards
    (no pickles) split train / val / test by seed, with meta.json."""
    check_writable(out, "--out", folder=True)
    from surgsim.planning.dataset import generate
    from surgsim.rl.presets import parse_overrides

    try:
        root = generate(env, n, out, workers=workers, seed=seed, n_waypoints=waypoints,
                        env_kwargs=parse_overrides(env_kwargs, "--env-kwargs"), progress=progress)
    except (SurgsimError, FileExistsError) as exc:
        fail(str(exc))
    import json

    meta = json.loads((Path(root) / "meta.json").read_text())
    typer.echo(f"dataset: {root}")
    typer.echo(f"scenarios per split: {meta.get('counts')}  infeasible (skipped): {meta.get('infeasible')}")


@predictor_app.command("train", help=f"Train a predictor on a dataset folder. {_CHECKPOINT_NOTE}")
def train_cmd(
    data: Path = typer.Argument(..., help="Dataset folder made by `surgsim predictor generate`."),
    out: Path = typer.Option(Path("models/path.pt"), "--out", help="Checkpoint file to write (best by validation loss)."),
    epochs: int = typer.Option(30, "--epochs", help="Most epochs (early stopping may end sooner)."),
    batch_size: int = typer.Option(64, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (AdamW; warm-up then cosine decay)."),
    patience: int = typer.Option(6, "--patience", help="Stop after this many epochs without improvement."),
    clearance_weight: float = typer.Option(
        0.0, "--clearance-weight",
        help="Add this times the critical-structure occupancy at the predicted waypoints to the loss."),
    widths: str = typer.Option("16,32,64", "--widths", help="Channels of each encoder level (each halves the grid)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda."),
    amp: bool = typer.Option(True, "--amp/--no-amp", help="bf16/fp16 autocast on CUDA."),
    seed: int = typer.Option(0, "--seed", callback=check_seed),
    limit_train: Optional[int] = typer.Option(None, "--limit-train", help="Use only the first N training scenarios."),
    init_from: Optional[Path] = typer.Option(
        None, "--init-from", help="Encoder checkpoint from `surgsim predictor pretrain`: start the encoder there."),
    freeze_encoder_epochs: int = typer.Option(
        0, "--freeze-encoder-epochs", help="With --init-from: train only the heads for the first N epochs."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    check_writable(out, "--out", folder=False)
    require_extra("predictor", "predictor train")
    from surgsim.predictor.data import DatasetError
    from surgsim.predictor.predictor import PredictorError
    from surgsim.predictor.train import PredictorTrainingError, TrainOptions, history_path, train

    options = TrainOptions(
        epochs=epochs, batch_size=batch_size, lr=lr, patience=patience, clearance_weight=clearance_weight,
        widths=_widths(widths), device=device, amp=amp, seed=seed, limit_train=limit_train, init_from=init_from,
        freeze_encoder_epochs=freeze_encoder_epochs, progress=progress,
    )
    try:
        result = train(data, out, options)
    except (DatasetError, PredictorError, PredictorTrainingError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130)
    typer.echo(f"checkpoint: {result.checkpoint}  (history: {history_path(result.checkpoint)})")
    typer.echo(
        f"best epoch {result.best_epoch}/{len(result.history)}: validation MSE {result.best_val_loss:.3e} "
        f"= {result.best_val_loss / result.baseline_val_loss:.4f} x the mean-path baseline "
        f"({result.baseline_val_loss:.3e}); mean waypoint error {result.best_val_error_mm:.2f} mm"
    )
    typer.echo(
        f"trained on {result.device} ({result.device_name}, autocast {result.amp_dtype or 'off'}): "
        f"{result.samples_per_s:,.0f} samples/s, {result.n_train} train / {result.n_val} val scenarios, "
        f"{result.seconds:.0f} s"
    )


@predictor_app.command("pretrain")
def pretrain_cmd(
    data: Path = typer.Argument(..., help="Dataset folder; only its volumes are read (never the paths)."),
    out: Path = typer.Option(Path("models/encoder.pt"), "--out", help="Encoder checkpoint to write (best by validation loss)."),
    epochs: int = typer.Option(10, "--epochs"),
    batch_size: int = typer.Option(32, "--batch-size"),
    lr: float = typer.Option(2e-3, "--lr", help="Peak learning rate (AdamW; warm-up then cosine decay)."),
    mask_frac: float = typer.Option(0.5, "--mask-frac", help="Share of the volume's blocks masked out."),
    block: int = typer.Option(4, "--block", help="Side of a masked block (voxels)."),
    widths: str = typer.Option("16,32,64", "--widths", help="Channels of each encoder level (as `train` will use)."),
    device: str = typer.Option("auto", "--device", help="auto (CUDA when present), cpu or cuda."),
    seed: int = typer.Option(0, "--seed", callback=check_seed),
    limit_train: Optional[int] = typer.Option(None, "--limit-train", help="Use only the first N training volumes."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Self-supervised pretraining of the predictor's volume encoder: reconstruct masked blocks of
    the unlabelled train volumes. Writes one checkpoint (encoder weights and config) and
    <stem>.history.json beside it; `predictor train --init-from` starts from it."""
    check_writable(out, "--out", folder=False)
    require_extra("predictor", "predictor pretrain")
    from surgsim.predictor.data import DatasetError
    from surgsim.predictor.predictor import PredictorError
    from surgsim.predictor.pretrain import PretrainOptions, pretrain
    from surgsim.predictor.train import PredictorTrainingError

    options = PretrainOptions(epochs=epochs, batch_size=batch_size, lr=lr, mask_frac=mask_frac, block=block,
                              widths=_widths(widths), device=device, seed=seed, limit_train=limit_train,
                              progress=progress)
    try:
        result = pretrain(data, out, options)
    except (DatasetError, PredictorError, PredictorTrainingError) as exc:
        fail(str(exc))
    except KeyboardInterrupt:
        raise typer.Exit(130)
    first = result.history[0]["val_loss"]
    typer.echo(f"encoder: {result.checkpoint}")
    typer.echo(
        f"best epoch {result.best_epoch}/{len(result.history)}: masked-voxel validation MSE {result.best_val_loss:.3e} "
        f"(epoch 1: {first:.3e}) = {result.best_val_loss / result.baseline_val_loss:.4f} x the channel-mean "
        f"baseline ({result.baseline_val_loss:.3e})"
    )
    typer.echo(f"pretrained on {result.device}: {result.samples_per_s:,.0f} volumes/s, {result.n_train} train / "
               f"{result.n_val} val volumes, {result.seconds:.0f} s")


@predictor_app.command("eval")
def eval_cmd(
    checkpoint: Path = typer.Argument(..., help="Checkpoint written by `surgsim predictor train`."),
    data: Path = typer.Argument(..., help="Dataset folder."),
    split: str = typer.Option("test", "--split", help="train, val or test."),
    limit: Optional[int] = typer.Option(None, "--limit", help="Evaluate only the first N scenarios."),
    n_check: int = typer.Option(200, "--n-check",
                                help="Scenarios rebuilt in PyBullet for the collision check and planner timing."),
    device: str = typer.Option("cpu", "--device", help="Device for the predictor: cpu, cuda or auto."),
    threads: int = typer.Option(1, "--threads", help="torch CPU threads (1 matches the single-threaded planner)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results JSON (default: <checkpoint stem>.eval-<split>.json)."),
    progress: bool = typer.Option(True, "--progress/--no-progress"),
) -> None:
    """Waypoint and endpoint errors (mm), collision-free share and clearance in PyBullet, and
    latency against the planner (single and batched); writes JSON and a path figure (PNG)."""
    if out is not None:
        check_writable(out, "--out", folder=False)
    require_extra("predictor", "predictor eval")
    from surgsim.predictor.data import DatasetError
    from surgsim.predictor.evaluate import EvalOptions, evaluate
    from surgsim.predictor.predictor import PredictorError

    out = out or checkpoint.with_name(f"{checkpoint.stem}.eval-{split}.json")
    options = EvalOptions(split=split, limit=limit, n_check=n_check, device=device, threads=threads,
                          progress=progress)
    try:
        r = evaluate(checkpoint, data, out, options)
    except (DatasetError, PredictorError) as exc:
        fail(str(exc))
    typer.echo(format_results(r))
    typer.echo(f"results: {out}" + (f"  figure: {r['figure']}" if "figure" in r else ""))


def format_results(r: dict) -> str:
    """The evaluation as a few human-readable lines (mm, ms, ratios)."""
    w, e = r["waypoint_error_mm"], r["endpoint_error_mm"]
    lines = [
        f"{r['env_id']} {r['split']}: {r['scenarios']} scenarios, predictor on {r['device']}",
        f"waypoint error: mean {w['mean']:.2f} mm, p95 {w['p95']:.2f} mm, largest {w['max_single']:.2f} mm",
        f"endpoint error: mean {e['mean']:.2f} mm, max {e['max']:.2f} mm",
    ]
    if r.get("checked"):
        c = r["min_clearance_mm"]
        planner = (f"planner mean {c['planner_mean']:.2f} mm, min {c['planner_min']:.2f} mm"
                   if c["planner_mean"] is not None else "planner: no plans")
        lines += [
            f"collision-free predicted paths: {r['collision_free_rate']:.1%} of {r['checked']} "
            f"(reach the target: {r['reaches_target_rate']:.1%})",
            f"min clearance: predictor mean {c['predictor_mean']:.2f} mm, min {c['predictor_min']:.2f} mm; {planner}",
        ]
        lat, s = r["latency_ms"], r["speedup"]
        lines.append(
            f"latency per scenario: planner {lat['planner']:.2f} ms; predictor single {lat['predictor_single']:.3f} ms "
            f"(speed-up {s['single']:.3g}x), batched {lat['predictor_batched']:.4f} ms (speed-up {s['batched']:.3g}x); "
            f"volume export {r['volume_export_ms']:.2f} ms"
        )
    return "\n".join(lines)
