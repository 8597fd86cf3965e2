"""The supervised path predictor: data reading, training, checkpoints, bad input, CLI.

Most tests use synthetic shards in the dataset format: a soft target blob in the volume and
waypoints that are a known function of the blob's position and the start pose, so that a small
network can learn them in seconds. One end-to-end test uses data made by the real generator.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from simhelpers import run_python
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.predictor import DatasetError, PathPredictor, PredictorError, load_split, read_meta
from surgsim.predictor.data import VolumeFrame
from surgsim.predictor.predictor import save_checkpoint
from surgsim.predictor.train import PredictorTrainingError, TrainOptions, _clearance_penalty, train

runner = CliRunner()
R, K = 16, 8
ORIGIN = np.array([-0.08, -0.08, -0.16])
VOXEL = 0.16 / R
START_FIELDS = ["yaw", "pitch", "insertion", "tip_x", "tip_y", "tip_z"]
TINY = dict(widths=[8, 16], keypoints=4, hidden=64, batch_size=32, lr=3e-3, progress=False)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny 3D convolutions run ~10x faster on one thread than on two busy cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_synthetic(root: Path, counts=(400, 100, 50), shard_size=200, seed=0) -> Path:
    """A dataset folder whose waypoints are a known function of the target blob and the start."""
    rng = np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    centres = ORIGIN + (np.arange(R) + 0.5)[:, None] * VOXEL  # (R, 3) voxel centres per axis
    splits, next_seed = {}, 0
    for split, n in zip(("train", "val", "test"), counts):
        (root / split).mkdir(exist_ok=True)
        splits[split] = []
        for first in range(0, n, shard_size):
            m = min(shard_size, n - first)
            target = ORIGIN + rng.uniform(0.3, 0.7, (m, 3)) * 0.16
            yaw, pitch = rng.uniform(-0.5, 0.5, (2, m))
            tip = np.stack([0.03 * np.sin(yaw), 0.03 * np.sin(pitch), np.full(m, -0.03)], 1)
            start = np.column_stack([yaw, pitch, np.full(m, 0.03), tip]).astype(np.float32)
            d2 = ((centres[None, :, 0, None, None] - target[:, 0, None, None, None]) ** 2
                  + (centres[None, None, :, 1, None] - target[:, 1, None, None, None]) ** 2
                  + (centres[None, None, None, :, 2] - target[:, 2, None, None, None]) ** 2)
            volume = np.stack([255 * (d2 < 0.05**2), 255 * np.exp(-d2 / (2 * 0.012**2))], 1)
            t = np.linspace(0.0, 1.0, K)[None, :, None]
            bulge = np.stack([np.zeros(m), 0.02 * yaw, np.full(m, 0.01)], 1)[:, None] * np.sin(np.pi * t)
            waypoints = tip[:, None] + (target - tip)[:, None] * t + bulge
            name = f"{split}/shard_{first // shard_size:05d}.npz"
            np.savez_compressed(
                root / name, volume=volume.astype(np.uint8), start=start,
                waypoints=waypoints.astype(np.float32), target=target.astype(np.float32),
                seed=np.arange(next_seed, next_seed + m, dtype=np.int64),
            )
            next_seed += m
            splits[split].append(name)
    meta = {
        "format": "surgsim-paths", "version": 1, "env_id": "surgsim/SurgicalPath-v0", "env_kwargs": {},
        "task": "surgical_path", "resolution": R, "channels": ["tissue", "target"],
        "origin": ORIGIN.tolist(), "voxel_size": VOXEL, "n_waypoints": K, "start_fields": START_FIELDS,
        "splits": splits, "counts": dict(zip(("train", "val", "test"), counts)), "infeasible": 0,
    }
    (root / "meta.json").write_text(json.dumps(meta))
    return root


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory) -> Path:
    return write_synthetic(tmp_path_factory.mktemp("paths"))


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("models") / "path.pt"
    return train(synthetic, out, TrainOptions(epochs=15, patience=20, **TINY))


def edit_meta(root: Path, **changes) -> None:
    meta = json.loads((root / "meta.json").read_text())
    meta.update(changes)
    (root / "meta.json").write_text(json.dumps(meta))


# ------------------------------------------------------------------ training
def test_small_training_run_beats_the_mean_path_baseline(trained):
    # the baseline predicts the training split's mean path for every patient
    assert trained.best_val_loss < 0.05 * trained.baseline_val_loss
    assert trained.best_val_error_mm < 4.0  # waypoints spread over ~50 mm
    assert [h["epoch"] for h in trained.history] == list(range(1, 16))
    best = min(trained.history, key=lambda h: h["val_loss"])
    assert best["epoch"] == trained.best_epoch and best["val_loss"] == trained.best_val_loss
    assert trained.device == "cpu" and trained.samples_per_s > 0
    assert (trained.n_train, trained.n_val) == (400, 100)


def test_training_writes_history_curve_and_no_partial_files(trained):
    folder = trained.checkpoint.parent
    assert sorted(p.name for p in folder.iterdir()) == ["path.history.json", "path.loss.png", "path.pt"]
    history = json.loads((folder / "path.history.json").read_text())
    assert history["best_epoch"] == trained.best_epoch
    assert history["baseline_val_loss"] == pytest.approx(trained.baseline_val_loss)
    assert history["config"]["resolution"] == R and history["options"]["epochs"] == 15


def test_early_stopping_ends_a_run_that_stops_improving(synthetic, tmp_path):
    # lr 0 after warm-up: nothing improves after the first epoch
    result = train(synthetic, tmp_path / "m.pt", TrainOptions(
        epochs=10, patience=2, **{**TINY, "lr": 0.0}, limit_train=64, limit_val=32))
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def test_baseline_is_the_mse_of_the_mean_training_path(synthetic, tmp_path):
    result = train(synthetic, tmp_path / "m.pt", TrainOptions(epochs=1, **TINY, limit_train=64, limit_val=32))
    meta = read_meta(synthetic)
    frame = meta.frame
    train_w = frame.to_unit(load_split(meta, "train", 64).waypoints.numpy())
    val_w = frame.to_unit(load_split(meta, "val", 32).waypoints.numpy())
    expected = np.mean((val_w - train_w.mean(axis=0)) ** 2)
    assert result.baseline_val_loss == pytest.approx(expected, rel=1e-4)


# ------------------------------------------------------------- checkpoints
def test_checkpoint_round_trip_gives_the_same_predictions(trained, synthetic, tmp_path):
    predictor = PathPredictor.load(trained.checkpoint, task="surgical_path")
    test = load_split(synthetic, "test")
    batch = predictor.predict(test.volume.numpy(), test.start.numpy())
    assert batch.shape == (50, K, 3) and batch.dtype == np.float64
    single = predictor.predict(test.volume[3].numpy(), test.start[3].numpy())
    assert single.shape == (K, 3)
    np.testing.assert_allclose(single, batch[3], atol=1e-6)
    # held-out patients are predicted about as well as validation ones
    error_mm = 1000 * np.linalg.norm(batch - test.waypoints.numpy(), axis=-1).mean()
    assert error_mm < 2 * trained.best_val_error_mm
    # save again and reload: bit-identical predictions
    again = PathPredictor.load(save_checkpoint(predictor.model, predictor.config, tmp_path / "copy.pt"))
    np.testing.assert_array_equal(again.predict(test.volume.numpy(), test.start.numpy()), batch)
    assert again.config == predictor.config


def test_predictions_are_in_metres_through_the_volume_frame(trained):
    predictor = PathPredictor.load(trained.checkpoint)
    model = predictor.model
    volume = torch.zeros(1, 2, R, R, R, dtype=torch.uint8)
    start = torch.zeros(1, 6)
    with torch.inference_mode():
        unit = model(volume, start)[0].numpy()
    frame = VolumeFrame.from_grid(ORIGIN, VOXEL, R)
    np.testing.assert_allclose(predictor.predict(volume[0].numpy(), start[0].numpy()),
                               frame.from_unit(unit), atol=1e-6)


def test_volume_frame_maps_the_grid_faces_to_plus_minus_one():
    frame = VolumeFrame.from_grid([0.0, 0.0, 0.0], 0.01, 10)
    np.testing.assert_allclose(frame.to_unit([[0.1, 0.0, 0.05]]), [[1.0, -1.0, 0.0]])
    points = np.random.default_rng(0).normal(size=(5, 3))
    np.testing.assert_allclose(frame.from_unit(frame.to_unit(points)), points)


def test_clearance_term_samples_the_critical_channel_at_the_right_voxel():
    frame = VolumeFrame.from_grid([0.0, 0.0, 0.0], 1.0, 8)
    volume = torch.zeros(1, 2, 8, 8, 8, dtype=torch.uint8)
    volume[0, 1, 1, 2, 5] = 255  # one occupied critical voxel at x=1, y=2, z=5

    at = torch.tensor(frame.to_unit([[1.5, 2.5, 5.5]]), dtype=torch.float32).view(1, 1, 3)
    mirrored = torch.tensor(frame.to_unit([[5.5, 2.5, 1.5]]), dtype=torch.float32).view(1, 1, 3)
    assert _clearance_penalty(volume, 1 / 255, at, 1).item() == pytest.approx(1.0)
    assert _clearance_penalty(volume, 1 / 255, mirrored, 1).item() == pytest.approx(0.0)


def test_clearance_weight_needs_a_critical_channel(synthetic, tmp_path):
    with pytest.raises(PredictorTrainingError, match=r"'critical' volume channel.*\['tissue', 'target'\]"):
        train(synthetic, tmp_path / "m.pt", TrainOptions(epochs=1, clearance_weight=1.0, **TINY))


# --------------------------------------------------------------- bad input
def test_wrong_volume_and_start_shapes_are_refused(trained):
    predictor = PathPredictor.load(trained.checkpoint)
    with pytest.raises(PredictorError, match=r"volume has shape \(2, 32, 32, 32\).*expects \(2, 16, 16, 16\)"):
        predictor.predict(np.zeros((2, 32, 32, 32), np.uint8), np.zeros(6))
    with pytest.raises(PredictorError, match=r"start has shape \(5,\), expected \(6,\)"):
        predictor.predict(np.zeros((2, R, R, R), np.uint8), np.zeros(5))
    with pytest.raises(PredictorError, match=r"start has shape \(3, 6\), expected \(2, 6\)"):
        predictor.predict(np.zeros((2, 2, R, R, R), np.uint8), np.zeros((3, 6)))
    with pytest.raises(PredictorError, match="NaN"):
        predictor.predict(np.zeros((2, R, R, R), np.uint8), np.full(6, np.nan))


def test_missing_and_corrupt_checkpoints_name_the_file(trained, tmp_path):
    with pytest.raises(PredictorError, match=re.escape(f"{tmp_path / 'nope.pt'}: predictor checkpoint not found")):
        PathPredictor.load(tmp_path / "nope.pt")
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(trained.checkpoint.read_bytes()[:5000])
    with pytest.raises(PredictorError, match=re.escape(f"{truncated}: not a readable predictor checkpoint")):
        PathPredictor.load(truncated)
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(PredictorError, match="not a readable predictor checkpoint"):
        PathPredictor.load(garbage)


def test_a_checkpoint_holding_arbitrary_objects_is_never_unpickled(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "surgsim-path-predictor", "config": Path("x")}, evil)  # a non-tensor object
    with pytest.raises(PredictorError, match="not a readable predictor checkpoint"):
        PathPredictor.load(evil)


def test_checkpoint_for_another_task_or_with_mismatched_weights(trained, tmp_path):
    with pytest.raises(PredictorError, match="trained for task 'surgical_path'.*not 'incision'"):
        PathPredictor.load(trained.checkpoint, task="incision")
    payload = torch.load(trained.checkpoint, weights_only=True)
    config = json.loads(payload["config"])
    config["hidden"] = 32
    payload["config"] = json.dumps(config)
    bad = tmp_path / "mismatch.pt"
    torch.save(payload, bad)
    with pytest.raises(PredictorError, match="weights do not match the config"):
        PathPredictor.load(bad)
    tagless = tmp_path / "tagless.pt"
    torch.save({"state_dict": payload["state_dict"]}, tagless)
    with pytest.raises(PredictorError, match="not a surgsim path predictor checkpoint"):
        PathPredictor.load(tagless)


def test_checkpoint_that_does_not_fit_a_dataset(trained, tmp_path):
    other = write_synthetic(tmp_path / "d", counts=(4, 2, 2))
    edit_meta(other, resolution=32, task="incision")
    with pytest.raises(PredictorError, match=r"task: checkpoint 'surgical_path', dataset 'incision'; resolution: checkpoint 16, dataset 32"):
        PathPredictor.load(trained.checkpoint).check_dataset(read_meta(other))


def test_dataset_errors_name_the_file_and_the_problem(tmp_path):
    with pytest.raises(DatasetError, match="dataset folder not found"):
        read_meta(tmp_path / "none")
    root = write_synthetic(tmp_path / "d", counts=(4, 2, 2))
    (root / "meta.json").rename(root / "moved.json")
    with pytest.raises(DatasetError, match=re.escape(f"{root / 'meta.json'}: not found")):
        read_meta(root)
    (root / "moved.json").rename(root / "meta.json")
    edit_meta(root, format="something-else")
    with pytest.raises(DatasetError, match="format 'something-else' is not 'surgsim-paths'"):
        read_meta(root)
    edit_meta(root, format="surgsim-paths", resolution=12)
    with pytest.raises(DatasetError, match=r"shard_00000.npz: volume has shape \(4, 2, 16, 16, 16\), expected \(4, 2, 12, 12, 12\)"):
        load_split(root, "train")
    edit_meta(root, resolution=R)
    (root / "val" / "shard_00000.npz").unlink()
    with pytest.raises(DatasetError, match=r"val/shard_00000.npz: shard listed in .*meta.json not found"):
        load_split(root, "val")
    with pytest.raises(DatasetError, match=r"no split 'dev'"):
        load_split(root, "dev")


def test_shards_are_read_without_pickle(tmp_path):
    root = write_synthetic(tmp_path / "d", counts=(4, 2, 2))
    shard = root / "train" / "shard_00000.npz"
    with np.load(shard) as npz:
        arrays = dict(npz)
    arrays["seed"] = np.array([object()] * 4, dtype=object)
    np.savez_compressed(shard, **arrays)
    with pytest.raises(DatasetError, match=r"shard_00000.npz: .*pickle"):
        load_split(root, "train")
    shard.write_bytes(b"truncated")
    with pytest.raises(DatasetError, match="not a readable .npz shard"):
        load_split(root, "train")


def test_resolution_must_suit_the_encoder_depth(synthetic, tmp_path):
    with pytest.raises(PredictorTrainingError, match=r"resolution 16 .* not divisible by 2\*\*len\(widths\) = 32"):
        train(synthetic, tmp_path / "m.pt", TrainOptions(epochs=1, **{**TINY, "widths": [4, 4, 4, 4, 4]}))


# ---------------------------------------------------------------------- CLI
def test_cli_train_and_eval_on_synthetic_data(synthetic, tmp_path):
    out = tmp_path / "cli.pt"
    result = runner.invoke(app, ["predictor", "train", str(synthetic), "--out", str(out), "--epochs", "2",
                                 "--widths", "8,16", "--no-progress", "--device", "cpu", "--limit-train", "64"])
    assert result.exit_code == 0, result.output
    assert re.search(r"x the mean-path baseline", result.output)
    assert "64 train / 100 val scenarios" in result.output
    assert out.is_file() and (tmp_path / "cli.history.json").is_file()
    # the synthetic seeds are no real patients: no PyBullet check (--n-check 0)
    result = runner.invoke(app, ["predictor", "eval", str(out), str(synthetic), "--n-check", "0", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert re.search(r"test: 50 scenarios", result.output)
    report = json.loads((tmp_path / "cli.eval-test.json").read_text())
    assert report["scenarios"] == 50 and report["waypoint_error_mm"]["mean"] > 0
    assert (tmp_path / "cli.eval-test.png").is_file()


@pytest.mark.parametrize(("args", "message"), [
    (["predictor", "train", "{tmp}/missing"], "dataset folder not found"),
    (["predictor", "train", "{data}", "--device", "cuda:7"], "device 'cuda:7' asked for, but no CUDA GPU")
    if not torch.cuda.is_available() else
    (["predictor", "train", "{data}", "--device", "nonsense"], "device 'nonsense' is not valid"),
    (["predictor", "eval", "{tmp}/none.pt", "{data}"], "predictor checkpoint not found"),
])
def test_cli_errors_exit_2_with_a_message(args, message, synthetic, tmp_path):
    args = [a.format(tmp=tmp_path, data=synthetic) for a in args]
    result = runner.invoke(app, args + ["--no-progress"])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output and message in result.output


def test_cli_rejects_bad_widths(synthetic):
    result = runner.invoke(app, ["predictor", "train", str(synthetic), "--widths", "8,x"])
    assert result.exit_code == 2 and "comma-separated list of integers" in result.output


@pytest.mark.slow
def test_training_from_the_cli_needs_no_pybullet(synthetic, tmp_path):
    # a GPU machine may have torch but no PyBullet: `surgsim predictor train` must still run
    out = tmp_path / "m.pt"
    code = (
        "from surgsim.cli import app\n"
        f"app(['predictor', 'train', {str(synthetic)!r}, '--out', {str(out)!r}, '--epochs', '1', "
        "'--widths', '8,16', '--limit-train', '32', '--device', 'cpu', '--no-progress'])\n"
    )
    stdout = run_python(code, blocked=("pybullet",))
    assert out.is_file() and "x the mean-path baseline" in stdout
