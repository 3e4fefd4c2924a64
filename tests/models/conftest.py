"""Shared fixtures: big torchvision nets are built once per session (read-only use)."""

from __future__ import annotations

import importlib.util

import pytest
import torch

from evotune.models import ModelConfig, TransferNet, build_model


@pytest.fixture(scope="session")
def shared_nets():
    """name -> TransferNet built for (1, 28, 28) and 10 classes; do not modify them."""
    cache: dict[str, TransferNet] = {}

    def get(name: str) -> TransferNet:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = build_model(
                ModelConfig(backbone=f"torchvision:{name}"), (1, 28, 28), 10, seed=0
            )
        return cache[name]

    return get


@pytest.fixture
def build():
    """build(backbone, shape, classes, **config) with a fixed seed: a fresh net to modify."""

    def make(backbone="builtin:small_resnet", shape=(1, 28, 28), classes=3, **options):
        torch.manual_seed(0)
        return build_model(ModelConfig(backbone=backbone, **options), shape, classes, seed=0)

    return make


# A user's own model file (python: backbones): a small residual net whose forward is
# not a chain of its children (functional ReLU, skip connections, pool + flatten), and
# factories that go wrong in the ways users' do.
BYO_SOURCE = '''
import torch
import torch.nn.functional as F
from torch import nn


class Block(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.conv = nn.Conv2d(width, width, 3, padding=1, bias=False)
        self.bn = nn.BatchNorm2d(width)

    def forward(self, x):
        return F.relu(x + self.bn(self.conv(x)))


class TinyNet(nn.Module):
    def __init__(self, width=8, num_classes=5):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.layer1 = nn.Sequential(Block(width), Block(width))
        self.layer2 = nn.Sequential(Block(width), Block(width))
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer2(self.layer1(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


def tiny(width=8, num_classes=5):
    return TinyNet(width, num_classes)


class InPlaceTail(TinyNet):
    """An in-place ReLU right after the last block: it may not start a stage of its own."""

    def forward(self, x):
        x = self.layer2(self.layer1(F.relu(self.bn1(self.conv1(x)))))
        return self.fc(F.relu(x, inplace=True).mean((2, 3)))


def inplace_tail():
    return InPlaceTail()


class Branchy(nn.Module):
    """Python control flow on a tensor's value: torch.fx cannot trace it."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        if x.sum() > 0:
            x = x * 0.5
        return self.fc(self.conv(x).mean((2, 3)))


def branchy():
    return Branchy()


def headless():
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU())


def not_a_model():
    return {"weights": 1}


def broken(width=8):
    raise RuntimeError(f"cannot build width {width}")
'''


@pytest.fixture
def byo(tmp_path):
    """(model file, its `python:FILE:` prefix, a wrapped, `module.`-prefixed checkpoint
    of tiny() and the state dict it holds)."""
    path = tmp_path / "user_models.py"
    path.write_text(BYO_SOURCE)
    torch.manual_seed(1)
    spec = importlib.util.spec_from_file_location("byo_fixture_models", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    state = module.tiny().state_dict()
    weights = tmp_path / "trained.pth"
    wrapped = {f"module.{k}": v for k, v in state.items()}
    torch.save({"state_dict": wrapped, "epoch": 30, "best_acc": 0.9}, weights)
    return path, f"python:{path}:", weights, state
