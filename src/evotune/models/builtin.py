"""Small backbones defined in evotune: fast on a CPU, for the demo, examples and tests.

Each builder returns the backbone already cut into stages. They take any number of
input channels (used with `channels: keep`; the default adapter maps to 3).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from torch import nn
from torchvision.models.resnet import BasicBlock

from evotune.models.stages import Backbone, BackboneStage


def _conv_bn_relu(c_in: int, c_out: int, pool: bool) -> nn.Sequential:
    layers: OrderedDict[str, nn.Module] = OrderedDict(
        conv=nn.Conv2d(c_in, c_out, 3, padding=1, bias=False),
        bn=nn.BatchNorm2d(c_out),
        relu=nn.ReLU(inplace=True),
    )
    if pool:
        layers["pool"] = nn.MaxPool2d(2)
    return nn.Sequential(layers)


def small_cnn(in_channels: int, size: tuple[int, int]) -> Backbone:
    """Four conv-BN-ReLU blocks (16, 32, 64, 64 channels), pooling after the last three."""
    widths, c_in, stages = (16, 32, 64, 64), in_channels, []
    for i, width in enumerate(widths):
        group = "stage1" if i < 2 else "stage2"
        stages.append(
            BackboneStage(f"block{i + 1}", group, "block", _conv_bn_relu(c_in, width, i > 0))
        )
        c_in = width
    return Backbone(stages, in_channels=in_channels, min_size=8)


def _downsample(c_in: int, c_out: int, stride: int) -> nn.Module | None:
    if stride == 1 and c_in == c_out:
        return None
    return nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))


def small_resnet(in_channels: int, size: tuple[int, int]) -> Backbone:
    """A CIFAR-style ResNet: 3x3 stem, three stages of two basic blocks (16, 32, 64)."""
    stem = nn.Sequential(
        OrderedDict(
            conv1=nn.Conv2d(in_channels, 16, 3, padding=1, bias=False),
            bn1=nn.BatchNorm2d(16),
            relu=nn.ReLU(inplace=True),
        )
    )
    stages = [BackboneStage("stem", "stem", "stem", stem)]
    c_in = 16
    for s, width in enumerate((16, 32, 64), start=1):
        for b in range(2):
            stride = 2 if (s > 1 and b == 0) else 1
            block = BasicBlock(c_in, width, stride, _downsample(c_in, width, stride))
            stages.append(BackboneStage(f"layer{s}.{b}", f"layer{s}", "block", block))
            c_in = width
    return Backbone(stages, in_channels=in_channels, min_size=8)


def mlp(in_channels: int, size: tuple[int, int]) -> Backbone:
    """Flatten, then two ReLU layers (256, 128): the input size is fixed at build time."""
    n_in = in_channels * size[0] * size[1]
    first = nn.Sequential(
        OrderedDict(flatten=nn.Flatten(), fc=nn.Linear(n_in, 256), relu=nn.ReLU())
    )
    second = nn.Sequential(OrderedDict(fc=nn.Linear(256, 128), relu=nn.ReLU()))
    stages = [
        BackboneStage("fc1", "fc1", "block", first),
        BackboneStage("fc2", "fc2", "block", second),
    ]
    # A fixed size: inputs of another size (e.g. a transferred checkpoint) are resized.
    return Backbone(stages, in_channels=in_channels, min_size=1, fixed_size=size)


BUILTINS: dict[str, Callable[[int, tuple[int, int]], Backbone]] = {
    "small_cnn": small_cnn,
    "small_resnet": small_resnet,
    "mlp": mlp,
}
