"""The predictor refuses bad options and untrusted configurations with one line, before it reads
data or allocates a network."""

from __future__ import annotations

import json

import pytest
import torch
from simhelpers import one_line_error
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.predictor import PathPredictor, PredictorError, read_meta
from surgsim.predictor.data import DatasetError
from surgsim.predictor.model import CONFIG_FORMAT, MAX_HIDDEN, MAX_RESOLUTION, PathNet, PredictorConfig
from surgsim.predictor.train import PredictorTrainingError, TrainOptions, train

runner = CliRunner()


@pytest.mark.parametrize(
    "argv, message",
    [(["--lr", "-1"], "--lr -1.0: expected a finite number >= 0"),
     (["--lr", "nan"], "--lr nan:"),
     (["--lr", "inf"], "--lr inf:"),
     (["--clearance-weight", "nan"], "--clearance-weight nan: expected a finite number >= 0"),
     (["--widths", "8,0"], "--widths [8, 0]: expected 1 to 6 integers, each 1 to 256"),
     (["--widths", "8,1000000"], "--widths [8, 1000000]:"),
     (["--widths", ",".join(["8"] * 7)], ": expected 1 to 6 integers"),
     (["--widths", "8,x"], "--widths '8,x' is not a comma-separated list of integers"),
     (["--epochs", "0"], "--epochs 0: expected an integer >= 1"),
     (["--batch-size", "-5"], "--batch-size -5:"),
     (["--patience", "0"], "--patience 0:"),
     (["--limit-train", "0"], "--limit-train 0:")],
    ids=["negative-lr", "nan-lr", "inf-lr", "nan-clearance", "zero-width", "huge-width",
         "too-deep", "not-a-number", "epochs", "batch-size", "patience", "limit-train"],
)
def test_cli_train_refuses_bad_numbers_in_one_line_before_reading_data(tmp_path, argv, message):
    out = tmp_path / "m.pt"
    # the dataset does not even exist: the options are checked first
    result = runner.invoke(app, ["predictor", "train", str(tmp_path / "none"), "--out", str(out), *argv])
    assert result.exit_code == 2
    assert message in one_line_error(result)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv, message",
    [(["--threads", "0"], "--threads 0: expected an integer >= 1"),
     (["--limit", "0"], "--limit 0:"), (["--n-check", "-1"], "--n-check -1:")],
)
def test_cli_eval_refuses_bad_numbers_in_one_line(tmp_path, argv, message):
    result = runner.invoke(app, ["predictor", "eval", str(tmp_path / "none.pt"), str(tmp_path / "none"), *argv])
    assert result.exit_code == 2
    assert message in one_line_error(result)


@pytest.mark.parametrize(
    "change, message",
    [({"lr": -1.0}, "--lr -1.0:"), ({"hidden": MAX_HIDDEN + 1}, f"--hidden {MAX_HIDDEN + 1}:"),
     ({"keypoints": 0}, "--keypoints 0:"), ({"weight_decay": float("inf")}, "--weight-decay inf:"),
     ({"limit_train": 0}, "--limit-train 0:"), ({"final_lr_fraction": 2.0}, "--final-lr-fraction 2.0:")],
)
def test_train_options_are_checked_before_the_dataset(tmp_path, change, message):
    with pytest.raises(PredictorTrainingError, match=message.replace("[", r"\[")):
        train(tmp_path / "none", tmp_path / "m.pt", TrainOptions(progress=False, **change))


def valid_config(**changes) -> dict:
    config = PredictorConfig(
        task="surgical_path", env_id="surgsim/SurgicalPath-v0", resolution=16, channels=["tissue", "target"],
        n_waypoints=8, start_fields=["yaw", "pitch"], widths=[8, 16], keypoints=4, hidden=32,
        frame_centre=[0.0, 0.0, -0.08], frame_half_extent=[0.08, 0.08, 0.08], volume_scale=1 / 255,
        start_mean=[0.0, 0.0], start_std=[1.0, 1.0],
    )
    return {**json.loads(config.model_dump_json()), **changes}


def write_checkpoint(path, config: dict | str) -> None:
    text = config if isinstance(config, str) else json.dumps(config)
    torch.save({"format": CONFIG_FORMAT, "config": text, "state_dict": {}}, path)


@pytest.mark.parametrize(
    "changes, field",
    [({"resolution": 4096}, "resolution"), ({"hidden": 10**9}, "hidden"), ({"widths": [8, 10**6]}, "widths"),
     ({"widths": [8] * 40}, "widths"), ({"keypoints": 10**8}, "keypoints"), ({"n_waypoints": 10**9}, "n_waypoints"),
     ({"channels": ["c"] * 10_000}, "channels"),
     ({"start_fields": ["s"] * 10_000, "start_mean": [0.0] * 10_000, "start_std": [1.0] * 10_000}, "start_fields")],
    ids=["resolution", "hidden", "width", "depth", "keypoints", "waypoints", "channels", "start-fields"],
)
def test_a_checkpoint_asking_for_a_huge_network_is_refused_before_building_it(tmp_path, changes, field):
    path = tmp_path / "evil.pt"
    write_checkpoint(path, valid_config(**changes))
    with pytest.raises(PredictorError, match=rf"evil\.pt: bad predictor config: {field}") as refused:
        PathPredictor.load(path)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize(
    "config, message",
    [('"start_mean": [NaN, 0.0]', "start_mean.0"), ('"volume_scale": Infinity', "volume_scale"),
     ('"resolution": 18', "resolution 18 must be divisible by 2\\*\\*len\\(widths\\) = 4")],
    ids=["nan", "infinity", "indivisible"],
)
def test_a_checkpoint_with_a_bad_config_is_one_line_naming_the_field(tmp_path, config, message):
    key = config.split(":")[0]
    text = json.dumps(valid_config())
    start = text.index(key)
    end = text.index("]" if "[" in config else ",", start) + ("]" in config)
    path = tmp_path / "bad.pt"
    write_checkpoint(path, text[:start] + config + text[end:])
    with pytest.raises(PredictorError, match=rf"bad\.pt: bad predictor config: {message}") as refused:
        PathPredictor.load(path)
    assert "\n" not in str(refused.value)


def test_weights_that_do_not_fit_their_config_are_one_line(tmp_path):
    path = tmp_path / "empty.pt"
    write_checkpoint(path, valid_config())  # a valid config, but no weights
    with pytest.raises(PredictorError, match=r"empty\.pt: weights do not match the config") as refused:
        PathPredictor.load(path)
    assert "\n" not in str(refused.value) and "\t" not in str(refused.value)


def test_the_config_bounds_admit_the_default_network_and_keep_the_largest_bounded():
    """The bounds refuse nothing real, and the largest allowed network stays a few hundred MB."""
    largest = PredictorConfig(**valid_config(
        resolution=MAX_RESOLUTION, channels=["c"] * 16, n_waypoints=1024, start_fields=["s"] * 64,
        start_mean=[0.0] * 64, start_std=[1.0] * 64, widths=[256] * 6, keypoints=256, hidden=MAX_HIDDEN,
    ))
    with torch.device("meta"):  # counts parameters without allocating them
        n = sum(p.numel() for p in PathNet(largest).parameters())
    assert n * 4 < 300e6
    PredictorConfig(**valid_config(resolution=32, widths=[16, 32, 64], keypoints=16, hidden=256))


def test_a_dataset_meta_with_an_absurd_resolution_is_refused(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({
        "format": "surgsim-paths", "version": 1, "env_id": "e", "task": "t", "resolution": 4096,
        "channels": ["c"], "origin": [0, 0, 0], "voxel_size": 0.001, "n_waypoints": 8,
        "start_fields": ["s"], "splits": {},
    }))
    with pytest.raises(DatasetError, match=rf"meta\.json: resolution 4096 must be an integer from 4 to {MAX_RESOLUTION}"):
        read_meta(tmp_path)
