"""`evotune pretrain` writes a file: checkpoint that loads back exactly."""

from __future__ import annotations

import json

import torch

from evotune.cli import main
from evotune.data import DataConfig, load_data
from evotune.models import ModelConfig, build_model, load_checkpoint
from evotune.train.finetune import evaluate

CONFIG = {
    "data": {"source": "digits", "classes": [0, 1, 2], "split": {"val_fraction": 0.25}},
    "model": {"backbone": "builtin:small_cnn", "channels": "keep", "normalize": "none"},
    "pretrain": {"epochs": 1, "batch_size": 64, "lr": 0.003, "device": "cpu"},
}


def test_pretrain_then_file_backbone_round_trips_weights(tmp_path, capsys):
    config = tmp_path / "pretrain.yaml"
    config.write_text(json.dumps(CONFIG))
    out = tmp_path / "backbone.safetensors"
    assert main(["pretrain", str(config), "--out", str(out)]) == 0
    assert "val accuracy" in capsys.readouterr().out

    net, meta = load_checkpoint(out)
    data = load_data(DataConfig(**CONFIG["data"]))
    _, accuracy = evaluate(net, data.val)
    assert accuracy == meta["pretrain"]["val_accuracy"]  # the saved weights are the best epoch's

    # As a file: backbone for a new 3-class task, every stage weight is the pretrained one.
    reused = build_model(
        ModelConfig(backbone=f"file:{out}", channels="keep", normalize="none"), (1, 8, 8), 3, seed=0
    )
    pretrained = dict(net.stages.named_parameters())
    for name, param in reused.stages.named_parameters():
        assert torch.equal(param, pretrained[name]), name


def test_pretrain_bad_config_is_exit_2(tmp_path, capsys):
    config = tmp_path / "bad.yaml"
    config.write_text(json.dumps({**CONFIG, "pretrain": {"epoch": 2}}))
    assert main(["pretrain", str(config)]) == 2
    assert "pretrain.epoch: unknown key (did you mean 'epochs'?)" in capsys.readouterr().err
