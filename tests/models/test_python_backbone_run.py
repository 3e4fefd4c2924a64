"""python: backbones end to end: a `layers` search on a user's model file and wrapped
checkpoint, its export, and the export reloaded through `file:` from elsewhere."""

from __future__ import annotations

import json

import torch

from evotune.cli import main
from evotune.models import ModelConfig, build_model, load_checkpoint, read_spec


def layers_config(backbone: str, weights: str) -> dict:
    return {
        "task": {"name": "layers", "baselines": ["head"]},
        "data": {
            "source": "digits",
            "classes": [0, 1, 2],
            "max_per_class": 10,
            "split": {"val_fraction": 0.3, "test_fraction": 0.3},
        },
        "model": {"backbone": backbone, "weights": weights, "normalize": "none"},
        "search": {"population": 4, "generations": 1, "seed": 2},
        "fitness": {"epochs": 1, "batch_size": 16, "lr": 0.003, "device": "cpu"},
        "output": {"report": False},
    }


def test_layers_search_export_and_reload_through_file(byo, tmp_path, monkeypatch, capsys):
    path, _, weights, _ = byo
    monkeypatch.chdir(tmp_path)  # the config names the model file relative to here
    config = tmp_path / "layers.yaml"
    config.write_text(json.dumps(layers_config(f"python:{path.name}:tiny", weights.name)))
    assert main(["run", str(config), "--out", "run", "-q"]) == 0
    assert "note: python:user_models.py:tiny: weights trained.pth" in capsys.readouterr().err
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["genes"] == ["conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    assert any("classifier 'fc'" in note for note in summary["model_notes"])

    assert main(["export", "run", "--out", "best.safetensors"]) == 0
    spec = read_spec(tmp_path / "best.safetensors")
    assert spec["model"]["backbone"] == f"python:{path.resolve()}:tiny"  # absolute
    exported, meta = load_checkpoint(tmp_path / "best.safetensors")
    assert meta["mask"] == summary["best"]["genome"]

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)  # the export rebuilds the factory from any directory
    reloaded, _ = load_checkpoint(tmp_path / "best.safetensors")
    x = torch.rand(5, 1, 8, 8)
    with torch.no_grad():
        assert torch.equal(exported.eval()(x), reloaded.eval()(x))
    backbone = f"file:{tmp_path / 'best.safetensors'}"
    again = build_model(ModelConfig(backbone=backbone, truncate=3), (1, 8, 8), 4, seed=0)
    assert again.stage_names == ["stem", "layer1.0", "layer1.1", "layer2.0"]
    conv = "model.layer1.0.conv.weight"  # inside stage 1, at its path in the user's model
    assert torch.equal(again.stages[1].get_parameter(conv), reloaded.stages[1].get_parameter(conv))


def test_hparams_truncates_a_python_backbone(byo, tmp_path):
    path, prefix, weights, _ = byo
    raw = layers_config(prefix + "tiny", str(weights))
    raw["task"] = {"name": "hparams", "genes": {"kept": [1, 4], "frozen": [0, 2]}}
    raw["search"] = {"population": 4, "generations": 1, "seed": 1}
    config = tmp_path / "hparams.yaml"
    config.write_text(json.dumps(raw))
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 0
    journal = [json.loads(x) for x in (tmp_path / "run" / "journal.jsonl").read_text().splitlines()]
    assert len(journal) == 4 and all("error" not in row for row in journal)
    assert any(row["genome"]["kept"] < 4 for row in journal)  # truncated nets trained


def test_bad_input_exits_2_with_one_message_and_no_traceback(byo, tmp_path, capsys):
    path, prefix, weights, state = byo
    config = tmp_path / "bad.yaml"
    config.write_text(json.dumps(layers_config(prefix + "tinny", str(weights))))
    assert main(["run", str(config), "--out", str(tmp_path / "run"), "-q"]) == 2
    err = capsys.readouterr().err
    assert f"model.backbone: {path} has no factory 'tinny' (did you mean 'tiny'?)" in err
    assert "Traceback" not in err and not (tmp_path / "run" / "journal.jsonl").exists()

    torch.save({"state_dict": {k: v for k, v in state.items() if "layer2" not in k}}, weights)
    config.write_text(json.dumps(layers_config(prefix + "tiny", str(weights))))
    assert main(["run", str(config), "--out", str(tmp_path / "run2"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "missing keys (layer2.0.conv.weight" in err and "Traceback" not in err

    assert main(["models", prefix + "broken", "--genes"]) == 2
    assert "raised RuntimeError: cannot build width 8" in capsys.readouterr().err
    assert main(["models", prefix + "tiny", "--genes"]) == 0
    assert "layer2.1" in capsys.readouterr().out
