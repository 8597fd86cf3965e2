"""Self-supervised pretraining of the path predictor's encoder and ``train --init-from``.

Synthetic datasets in the real format (tests/test_predictor.py's ``write_synthetic``), a tiny
encoder, a few epochs: seconds on one CPU thread.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from test_predictor import R, one_thread, write_synthetic  # noqa: F401  (one_thread: an autouse fixture)
from typer.testing import CliRunner

from surgsim.cli import app
from surgsim.predictor import DatasetError, PathPredictor, load_split, read_meta
from surgsim.predictor.encoder import EncoderConfig, load_encoder, save_encoder
from surgsim.predictor.model import encoder_levels
from surgsim.predictor.pretrain import MASK_VALUE, PretrainOptions, block_mask, pretext_loss, pretrain
from surgsim.predictor.train import PredictorTrainingError, TrainOptions, initial_model, make_config, train

runner = CliRunner()
WIDTHS = [8, 16]
TINY = dict(widths=WIDTHS, batch_size=32, lr=3e-3, progress=False)


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    return write_synthetic(tmp_path_factory.mktemp("paths"), counts=(200, 60, 20))


@pytest.fixture(scope="module")
def pretrained(synthetic, tmp_path_factory):
    out = tmp_path_factory.mktemp("encoder") / "enc.pt"
    return pretrain(synthetic, out, PretrainOptions(epochs=3, limit_train=128, **{**TINY, "batch_size": 16}))


@pytest.fixture(scope="module")
def path_model(synthetic, tmp_path_factory):
    """A path predictor checkpoint (not an encoder)."""
    out = tmp_path_factory.mktemp("model") / "path.pt"
    return train(synthetic, out, TrainOptions(epochs=1, limit_train=32, limit_val=20, **TINY)).checkpoint


def volumes_only_copy(source, dest):
    """The dataset with every shard reduced to its volumes: no paths, starts or targets at all."""
    meta = read_meta(source)
    dest.mkdir()
    (dest / "meta.json").write_text((source / "meta.json").read_text())
    for split in meta.splits:
        for path in meta.shard_paths(split):
            (dest / split).mkdir(exist_ok=True)
            with np.load(path) as npz:
                np.savez_compressed(dest / split / path.name, volume=npz["volume"])
    return dest


# ------------------------------------------------------------------ pretext
def test_mask_is_whole_blocks_at_about_the_asked_share():
    mask = block_mask(64, 16, 4, 0.3, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert mask.shape == (64, 1, 16, 16, 16) and mask.dtype == torch.bool
    blocks = mask.reshape(64, 4, 4, 4, 4, 4, 4).permute(0, 1, 3, 5, 2, 4, 6).reshape(64, 64, 64)
    assert (blocks.all(dim=-1) | ~blocks.any(dim=-1)).all()  # each 4x4x4 block all masked or all visible
    assert abs(mask.float().mean().item() - 0.3) < 0.02  # 4,096 blocks drawn


def test_pretext_loss_counts_only_the_masked_voxels():
    scaled = torch.rand(2, 2, 8, 8, 8)
    mask = block_mask(2, 8, 2, 0.5, torch.Generator().manual_seed(1), torch.device("cpu"))
    seen = []

    def exact_where_masked(masked):
        seen.append(masked)
        return torch.where(mask, scaled, torch.full_like(scaled, 9.0))

    assert pretext_loss(exact_where_masked, scaled, mask).item() == 0.0
    assert torch.equal(seen[0], torch.where(mask, torch.full_like(scaled, MASK_VALUE), scaled))
    assert pretext_loss(lambda masked: scaled + 0.1, scaled, mask).item() == pytest.approx(0.01, rel=1e-4)


def test_pretext_loss_falls_over_a_few_epochs(pretrained):
    losses = [h["train_loss"] for h in pretrained.history]
    assert len(losses) == 3 and pretrained.n_train == 128 and pretrained.n_val == 60
    assert losses[-1] < 0.5 * losses[0]
    val = [h["val_loss"] for h in pretrained.history]
    assert min(val) == pretrained.best_val_loss < val[0]
    assert pretrained.best_val_loss < pretrained.baseline_val_loss  # beats the channel means


def test_encoder_checkpoint_is_one_file_with_its_history(pretrained):
    folder = pretrained.checkpoint.parent
    assert sorted(p.name for p in folder.iterdir()) == ["enc.history.json", "enc.pt"]
    encoder = load_encoder(pretrained.checkpoint)
    assert encoder.config.widths == WIDTHS and encoder.config.resolution == R
    assert encoder.config.channels == ["tissue", "target"] and encoder.config.volume_scale == 1 / 255


def test_pretraining_reads_no_path_labels(synthetic, tmp_path):
    bare = volumes_only_copy(synthetic, tmp_path / "volumes-only")
    with pytest.raises(DatasetError, match="missing array"):
        load_split(bare, "train")  # supervised training cannot use it...
    out = tmp_path / "enc.pt"
    result = runner.invoke(app, ["predictor", "pretrain", str(bare), "--out", str(out), "--epochs", "1",
                                 "--widths", "8,16", "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output  # ...pretraining can
    assert "200 train / 60 val volumes" in result.output and "x the channel-mean baseline" in result.output
    assert load_encoder(out).config.resolution == R


# ------------------------------------------------------------ --init-from
def test_init_from_copies_the_encoder_exactly_and_leaves_the_heads_fresh(synthetic, pretrained):
    encoder = load_encoder(pretrained.checkpoint)
    meta = read_meta(synthetic)
    config = make_config(meta, load_split(meta, "train", 32), TrainOptions(**TINY), encoder.config.volume_scale)
    started = initial_model(config, seed=3, encoder=encoder)
    scratch = initial_model(config, seed=3)
    for (name, mine), theirs in zip(started.levels.state_dict().items(), encoder.levels.state_dict().values()):
        assert torch.equal(mine, theirs), name
    assert not torch.equal(started.levels[0][0].weight, scratch.levels[0][0].weight)
    heads = [(k, v) for k, v in started.state_dict().items() if not k.startswith("levels.")]
    assert {k.split(".")[0] for k, _ in heads} == {"heatmaps", "head"}
    for name, value in heads:  # the same as a model from scratch with the same seed
        assert torch.equal(value, scratch.state_dict()[name]), name


def test_cli_train_from_a_frozen_pretrained_encoder_keeps_it(synthetic, pretrained, tmp_path):
    out = tmp_path / "ft.pt"
    result = runner.invoke(app, [
        "predictor", "train", str(synthetic), "--out", str(out), "--epochs", "2", "--widths", "8,16",
        "--init-from", str(pretrained.checkpoint), "--freeze-encoder-epochs", "2", "--limit-train", "64",
        "--device", "cpu", "--no-progress"])
    assert result.exit_code == 0, result.output
    model = PathPredictor.load(out).model
    encoder = load_encoder(pretrained.checkpoint)
    for mine, theirs in zip(model.levels.state_dict().values(), encoder.levels.state_dict().values()):
        assert torch.equal(mine, theirs)
    fresh = initial_model(PathPredictor.load(out).config, seed=0)
    assert not torch.equal(model.head[0].weight, fresh.head[0].weight)  # the head did train


def test_fine_tuning_without_freezing_trains_the_encoder(synthetic, pretrained, tmp_path):
    result = train(synthetic, tmp_path / "ft.pt", TrainOptions(
        epochs=1, init_from=pretrained.checkpoint, limit_train=64, limit_val=20, **TINY))
    model = PathPredictor.load(result.checkpoint).model
    encoder = load_encoder(pretrained.checkpoint)
    assert not torch.equal(model.levels[0][0].weight, encoder.levels[0][0].weight)


def _encoder_with(path, **changes):
    config = EncoderConfig(**{**dict(task="surgical_path", env_id="surgsim/SurgicalPath-v0", resolution=R,
                                     channels=["tissue", "target"], widths=WIDTHS, volume_scale=1 / 255,
                                     block=4, mask_frac=0.5), **changes})
    return save_encoder(encoder_levels(len(config.channels), config.widths), config, path)


@pytest.mark.parametrize(("make", "extra", "field"), [
    (None, ["--widths", "8,32"], "widths: encoder [8, 16], --widths [8, 32]"),
    (dict(resolution=32), [], "resolution: encoder 32, dataset 16"),
    (dict(channels=["tissue", "critical", "target"]), [],
     "channels: encoder ['tissue', 'critical', 'target'], dataset ['tissue', 'target']"),
])
def test_an_incompatible_encoder_is_refused_in_one_line(make, extra, field, synthetic, pretrained, tmp_path):
    checkpoint = pretrained.checkpoint if make is None else _encoder_with(tmp_path / "other.pt", **make)
    args = ["predictor", "train", str(synthetic), "--out", str(tmp_path / "m.pt"), "--init-from", str(checkpoint),
            "--no-progress"]
    result = runner.invoke(app, args + (extra or ["--widths", "8,16"]))
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {checkpoint} does not fit {synthetic}: {field}"
    assert not (tmp_path / "m.pt").exists()


@pytest.mark.parametrize(("args", "message"), [
    (["train", "{data}", "--init-from", "{model}"], "{model}: not a surgsim volume encoder checkpoint"),
    (["train", "{data}", "--init-from", "{tmp}/none.pt"], "{tmp}/none.pt: encoder checkpoint not found"),
    (["train", "{data}", "--freeze-encoder-epochs", "2"], "--freeze-encoder-epochs 2: needs --init-from"),
    (["pretrain", "{data}", "--mask-frac", "1.5"], "--mask-frac 1.5: expected a number between 0 and 1"),
    (["pretrain", "{data}", "--widths", "8,16", "--block", "3"], "--block 3: the resolution 16 of {data} is not divisible by it"),
    (["pretrain", "{data}", "--widths", "4,4,4,4,4"], "not divisible by 2**len(widths) = 32; use fewer widths"),
    (["pretrain", "{tmp}/missing"], "dataset folder not found"),
])
def test_cli_errors_exit_2_in_one_line(args, message, synthetic, path_model, tmp_path):
    fill = dict(data=synthetic, tmp=tmp_path, model=path_model)
    result = runner.invoke(app, ["predictor"] + [a.format(**fill) for a in args]
                           + ["--out", str(tmp_path / "out.pt"), "--no-progress"])
    assert result.exit_code == 2, result.output
    assert result.output.startswith("error: ") and result.output.count("\n") == 1
    assert message.format(**fill) in result.output


def test_pretrain_options_fail_before_any_data_is_read(tmp_path):
    with pytest.raises(PredictorTrainingError, match="--epochs 0: expected an integer >= 1"):
        pretrain(tmp_path / "missing", tmp_path / "e.pt", PretrainOptions(epochs=0))
