"""The CIFAR-10 ResNet of He et al. (2015, section 4.2), as a user would bring it.

Written from the description in ../shared/data/cifar10-resnet56/README.md: a 3x3 stem
(16 channels), three stages of n basic blocks (16, 32, 64 channels; the first block of
stages 2 and 3 halves the map), global average pooling and one linear classifier;
depth 6n + 2 (n = 9: ResNet-56). Shortcuts are "option A": where a block changes the
shape, the shortcut has no weights (every second pixel, zero channels padded on both
sides). Parameter names match the checkpoint's (`layer2.0.conv1.weight`, ...), so

    net = resnet56()
    state = torch.load("resnet56-4bfd9763.th", weights_only=True)["state_dict"]
    net.load_state_dict({k.removeprefix("module."): v for k, v in state.items()})

loads it (the BatchNorm counters it lacks are filled in by torch). With evotune:

    model:
      backbone: python:examples/byo/cifar_resnet.py:resnet56
      weights: ../shared/data/cifar10-resnet56/resnet56-4bfd9763.th

This file is the user's code: evotune only imports it and calls the factory.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class PadShortcut(nn.Module):
    """Option A: halve the map by taking every second pixel, then pad `extra` zero
    channels, half before the input's channels and half after. No weights."""

    def __init__(self, extra: int) -> None:
        super().__init__()
        self.extra = extra

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        half = self.extra // 2
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, half, self.extra - half))


class BasicBlock(nn.Module):
    """conv3x3 -> BN -> ReLU -> conv3x3 -> BN, plus the shortcut, then ReLU."""

    def __init__(self, in_planes: int, planes: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        changes = stride != 1 or in_planes != planes
        self.shortcut = PadShortcut(planes - in_planes) if changes else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(nn.Module):
    """Stem, layer1..3 of `blocks` basic blocks each, global average pool, linear."""

    def __init__(self, blocks: int, num_classes: int = 10) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._stage(16, 16, blocks, stride=1)
        self.layer2 = self._stage(16, 32, blocks, stride=2)
        self.layer3 = self._stage(32, 64, blocks, stride=2)
        self.linear = nn.Linear(64, num_classes)
        for module in self.modules():
            if isinstance(module, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(module.weight)

    @staticmethod
    def _stage(in_planes: int, planes: int, blocks: int, stride: int) -> nn.Sequential:
        first = BasicBlock(in_planes, planes, stride)
        return nn.Sequential(first, *(BasicBlock(planes, planes) for _ in range(blocks - 1)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer3(self.layer2(self.layer1(out)))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # global average pool, any map size
        return self.linear(out)


def resnet20(num_classes: int = 10) -> CifarResNet:
    """ResNet-20: 3 blocks per stage, 0.27 M parameters."""
    return CifarResNet(3, num_classes)


def resnet56(num_classes: int = 10) -> CifarResNet:
    """ResNet-56: 9 blocks per stage, 0.85 M parameters (the shared checkpoint's)."""
    return CifarResNet(9, num_classes)
