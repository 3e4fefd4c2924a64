"""timm backbones (optional extra): a clear message without it, genes from its groups."""

from __future__ import annotations

import sys

import pytest
import torch

from evotune.errors import UserError
from evotune.models import list_models


def test_missing_timm_names_the_install(build, monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm now raises ImportError
    with pytest.raises(UserError, match=r"pip install 'evotune\[timm\]'"):
        build("timm:resnet18")
    assert not [n for n in list_models() if n.startswith("timm:")]


def test_timm_backbone_builds_with_group_genes(build):
    pytest.importorskip("timm")
    net = build("timm:resnet18", classes=4)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 4)
    assert net.feature_dim == 512
    blocks = [g.name for g in net.genes_for("block")]
    assert blocks[:3] == ["conv1+bn1", "layer1.0", "layer1.1"] and len(blocks) == 9
    assert [g.name for g in net.genes_for("leaf")][:2] == ["conv1", "bn1"]
    assert len(net.genes_for("stage")) == 5
    assert "timm:resnet18" in list_models("timm:resnet1*")
    with pytest.raises(UserError, match="does not support truncate"):
        build("timm:resnet18", truncate=2)
