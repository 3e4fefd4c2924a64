"""Every example config in examples/ validates (paths need not exist to validate)."""

from __future__ import annotations

from pathlib import Path

import pytest

from evotune.config import load_config
from evotune.pretrain import load_pretrain_config

ROOT = Path(__file__).parents[1]
# run configs: examples/*.yaml and "your own model" (examples/byo/); examples/predict/
# holds data sections for `evotune predict`, not run configs
EXAMPLES = sorted([*(ROOT / "examples").glob("*.yaml"), *(ROOT / "examples/byo").glob("*.yaml")])
RESNET56 = ROOT.parent / "shared/data/cifar10-resnet56/resnet56-4bfd9763.th"


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_config_validates(path):
    if path.stem.startswith("pretrain"):
        assert load_pretrain_config(path).pretrain.epochs >= 1
    else:
        assert load_config(path).task_name


@pytest.mark.skipif(not RESNET56.exists(), reason="needs ../shared/data (not in a fresh clone)")
def test_the_byo_resnet56_loads_its_real_checkpoint_strictly(monkeypatch):
    import torch

    from evotune.models import ModelConfig, build_model

    monkeypatch.chdir(ROOT)  # the examples' paths are relative to the repository root
    config = ModelConfig(
        backbone="python:examples/byo/cifar_resnet.py:resnet56",
        weights=str(RESNET56),
        normalize="none",
    )
    net = build_model(config, (3, 32, 32), 10, seed=0).eval()
    assert "277 tensors under 'state_dict', prefix 'module.' stripped" in net.notes[0]
    assert net.n_blocks == 27 and len(net.genes) == 29
    state = torch.load(RESNET56, map_location="cpu", weights_only=True)["state_dict"]
    conv = net.stages[-2].get_parameter("model.layer3.8.conv2.weight")
    assert torch.equal(conv, state["module.layer3.8.conv2.weight"])
    assert net(torch.rand(2, 3, 32, 32)).shape == (2, 10)
