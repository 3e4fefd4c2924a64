"""Cut torchvision classifiers into ordered stages: the backbone's safe cut points.

Each family's split keeps the pretrained modules (the same objects, so weights loaded
into the original model carry over) and drops the classifier. A stage's output is one
tensor, and running the stages in order reproduces the original feature extractor
(DenseNet's final ReLU and ViT's class-token pick included), which tests check.

Stage kinds: `stem` (always kept), `block` (the unit that `truncate` counts),
`transition` (between blocks; dropped after the last kept block), `final` (after the
last block; dropped or refitted when truncating) and, added by surgery, `new` (fresh
modules such as SE blocks, always trainable and never a gene).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn


@dataclass
class BackboneStage:
    """One cut of a backbone (not a stage of a staged run: that is `staged.RunStage`)."""

    name: str  # unique, human readable ("layer1.0"); leaf genes are named under it
    group: str  # the top-level stage it belongs to ("layer1"): `granularity: stage`
    kind: str  # stem | block | transition | final | new
    module: nn.Module
    refit: Callable[[int], nn.Module] | None = None  # final stage for a truncated width


@dataclass
class Backbone:
    """A backbone cut into stages, with what its input must look like."""

    stages: list[BackboneStage]
    in_channels: int = 3
    min_size: int = 32  # smaller sides are upsampled by the adapter
    fixed_size: tuple[int, int] | None = None  # the net only takes this size (ViT)
    # (module path inside the stage list -> (block label, stage label)); None: from stages
    labels: dict[str, tuple[str, str]] | None = None
    surgery: bool = True  # truncate and SE blocks are possible
    notes: list[str] = field(default_factory=list)


def _param_free(module: nn.Module) -> bool:
    return next(module.parameters(), None) is None


class DenseStep(nn.Module):
    """A DenseNet layer that returns its input with the new features appended.

    torchvision's _DenseBlock keeps a list of feature maps and each layer concatenates
    them; appending at each step gives the same tensors but makes every dense layer a
    cut point with a single tensor output (and a block truncated anywhere still works).
    The layer's children are adopted so gene names stay `denselayerN.conv1` etc.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        for name, child in layer.named_children():
            self.add_module(name, child)
        self.drop_rate = float(getattr(layer, "drop_rate", 0.0))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(self.relu1(self.norm1(x)))
        out = self.conv2(self.relu2(self.norm2(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return torch.cat([x, out], 1)


def _norm_relu(channels: int) -> nn.Module:
    return nn.Sequential(OrderedDict(norm=nn.BatchNorm2d(channels), relu=nn.ReLU()))


def split_resnet(net: nn.Module) -> Backbone:
    stem = nn.Sequential(
        OrderedDict(conv1=net.conv1, bn1=net.bn1, relu=net.relu, maxpool=net.maxpool)
    )
    stages = [BackboneStage("stem", "stem", "stem", stem)]
    for layer in ("layer1", "layer2", "layer3", "layer4"):
        for i, block in enumerate(getattr(net, layer)):
            stages.append(BackboneStage(f"{layer}.{i}", layer, "block", block))
    return Backbone(stages)


def split_vgg(net: nn.Module) -> Backbone:
    """One block per conv layer with its BN/ReLU/pool, named like Keras (block1_conv1)."""
    stages: list[BackboneStage] = []
    units: list[tuple[str, list[nn.Module]]] = []
    group, conv = 1, 0
    for module in net.features:
        if isinstance(module, nn.Conv2d):
            conv += 1
            units.append((f"block{group}_conv{conv}", [module]))
        else:
            units[-1][1].append(module)
        if isinstance(module, nn.MaxPool2d):
            group, conv = group + 1, 0
    for name, modules in units:
        named = OrderedDict((VGG_KEYS[type(m)], m) for m in modules)
        stages.append(BackboneStage(name, name.split("_")[0], "block", nn.Sequential(named)))
    return Backbone(stages)


VGG_KEYS = {nn.Conv2d: "conv", nn.BatchNorm2d: "bn", nn.ReLU: "relu", nn.MaxPool2d: "pool"}


def split_densenet(net: nn.Module) -> Backbone:
    """Stem, every dense layer (the 58 of DenseNet-121), transitions, final norm+ReLU."""
    feats = net.features
    stem = nn.Sequential(
        OrderedDict(conv0=feats.conv0, norm0=feats.norm0, relu0=feats.relu0, pool0=feats.pool0)
    )
    stages = [BackboneStage("stem", "stem", "stem", stem)]
    for name, child in feats.named_children():
        if name.startswith("denseblock"):
            for lname, layer in child.named_children():
                stages.append(BackboneStage(f"{name}.{lname}", name, "block", DenseStep(layer)))
        elif name.startswith("transition"):
            stages.append(BackboneStage(name, name, "transition", child))
    # torchvision applies F.relu after features.norm5 in forward(); keep it in the stage.
    final = nn.Sequential(OrderedDict(norm5=feats.norm5, relu=nn.ReLU()))
    stages.append(BackboneStage("norm5", "norm5", "final", final, refit=_norm_relu))
    return Backbone(stages)


def split_mobilenet(net: nn.Module) -> Backbone:
    """Stem conv, inverted-residual blocks grouped into stages, final 1x1 conv."""
    feats = list(net.features)
    stages = [BackboneStage("features.0", "stem", "stem", feats[0])]
    group = 0
    for i, block in enumerate(feats[1:-1], start=1):
        # A block without a residual connection changes width or stride: a new stage.
        if not getattr(block, "use_res_connect", True):
            group += 1
        stages.append(BackboneStage(f"features.{i}", f"stage{group}", "block", block))
    last = len(feats) - 1
    stages.append(BackboneStage(f"features.{last}", "final", "final", feats[-1]))
    return Backbone(stages)


def split_efficientnet(net: nn.Module) -> Backbone:
    """Stem conv, MBConv blocks (features[1..-2] are stages of blocks), final 1x1 conv."""
    feats = list(net.features)
    stages = [BackboneStage("features.0", "stem", "stem", feats[0])]
    for i, stage in enumerate(feats[1:-1], start=1):
        for j, block in enumerate(stage):
            stages.append(BackboneStage(f"features.{i}.{j}", f"stage{i}", "block", block))
    last = len(feats) - 1
    stages.append(BackboneStage(f"features.{last}", "final", "final", feats[-1]))
    return Backbone(stages)


def split_convnext(net: nn.Module) -> Backbone:
    """Stem, CNBlocks (odd features[i]) and downsampling layers (even features[i]).

    The classifier's LayerNorm2d goes with the classifier: it normalises the pooled
    vector, and the new head starts from the pooled features instead.
    """
    feats = list(net.features)
    stages = [BackboneStage("features.0", "stem", "stem", feats[0])]
    for i, part in enumerate(feats[1:], start=1):
        if i % 2:
            for j, block in enumerate(part):
                stages.append(
                    BackboneStage(f"features.{i}.{j}", f"stage{(i + 1) // 2}", "block", block)
                )
        else:
            stages.append(BackboneStage(f"features.{i}", f"downsample{i // 2}", "transition", part))
    return Backbone(stages)


def split_regnet(net: nn.Module) -> Backbone:
    """Stem, then every residual bottleneck block of the four trunk stages."""
    stages = [BackboneStage("stem", "stem", "stem", net.stem)]
    for sname, stage in net.trunk_output.named_children():
        for bname, block in stage.named_children():
            stages.append(BackboneStage(f"trunk_output.{sname}.{bname}", sname, "block", block))
    return Backbone(stages)


class ViTEmbed(nn.Module):
    """Patchify, prepend the class token, add position embeddings (ViT's input side)."""

    def __init__(self, vit: nn.Module) -> None:
        super().__init__()
        self.conv_proj = vit.conv_proj
        self.class_token = vit.class_token
        self.pos_embedding = vit.encoder.pos_embedding
        self.dropout = vit.encoder.dropout
        self.hidden_dim = vit.hidden_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_proj(x)
        x = x.reshape(x.shape[0], self.hidden_dim, -1).permute(0, 2, 1)
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)
        return self.dropout(x + self.pos_embedding)


class ClassToken(nn.Module):
    """ViT's final layer norm, then the class token's features: (N, D)."""

    def __init__(self, ln: nn.Module) -> None:
        super().__init__()
        self.ln = ln

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.ln(x)[:, 0]


def split_vit(net: nn.Module) -> Backbone:
    stages = [BackboneStage("embed", "embed", "stem", ViTEmbed(net))]
    for i, layer in enumerate(net.encoder.layers):
        stages.append(BackboneStage(f"encoder.layer{i}", "encoder", "block", layer))
    stages.append(BackboneStage("encoder.ln", "final", "final", ClassToken(net.encoder.ln)))
    size = int(net.image_size)
    note = f"ViT takes only {size}x{size} inputs: the adapter resizes to it"
    return Backbone(stages, fixed_size=(size, size), surgery=False, notes=[note])


# Top-level children that belong to the classifier (or to training-only side heads).
HEAD_CHILDREN = {"fc", "classifier", "head", "heads", "AuxLogits", "aux1", "aux2"}
POOLS = (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.Flatten, nn.Dropout)
# Smallest input side the generic splits take (measured: smaller ones collapse to 0).
MIN_SIZE = {"alexnet": 64, "inception_v3": 75}
FIXED_SIZE = {"maxvit_t": (224, 224)}  # attention windows are fixed at construction


class TransformInput(nn.Module):
    """GoogLeNet/Inception-v3 weights (ported from TensorFlow) expect ImageNet-normalised
    inputs re-scaled per channel; torchvision does it in forward() when transform_input
    is set (it is, with pretrained weights), so the split keeps it as a layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.new_tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
        std = x.new_tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
        return x * (std / 0.5) + (mean - 0.5) / 0.5


def split_generic(net: nn.Module, name: str) -> Backbone:
    """One stage per top-level child, containers expanded one level.

    Parameter-free elements (activations, pools) join the stage before them, so every
    stage but the first starts with a layer that owns weights and no stage modifies
    its input in place (torchvision uses inplace ReLUs). Meant for models that are a
    plain chain of their children; the classifier and global pools are dropped.
    """
    stages: list[BackboneStage] = []
    for cname, child in net.named_children():
        if cname in HEAD_CHILDREN or isinstance(child, POOLS):
            continue
        parts = child if isinstance(child, (nn.Sequential, nn.ModuleList)) else [child]
        expanded = isinstance(child, (nn.Sequential, nn.ModuleList))
        for i, part in enumerate(parts):
            label = f"{cname}.{i}" if expanded else cname
            if stages and _param_free(part):
                seq = stages[-1].module
                seq.add_module(str(len(seq)), part)
            else:
                stages.append(BackboneStage(label, cname, "block", nn.Sequential(part)))
    if getattr(net, "transform_input", False):
        first = stages[0].module
        stages[0].module = nn.Sequential(TransformInput(), *first)
    size = MIN_SIZE.get(name, 32)
    return Backbone(stages, min_size=size, fixed_size=FIXED_SIZE.get(name))


FAMILIES: dict[str, Callable[[nn.Module], Backbone]] = {
    "ResNet": split_resnet,
    "VGG": split_vgg,
    "DenseNet": split_densenet,
    "MobileNetV2": split_mobilenet,
    "MobileNetV3": split_mobilenet,
    "EfficientNet": split_efficientnet,
    "ConvNeXt": split_convnext,
    "RegNet": split_regnet,
    "VisionTransformer": split_vit,
}


def split_torchvision(net: nn.Module, name: str) -> Backbone:
    """The family split for this model's class, or the generic chain of children."""
    family = FAMILIES.get(type(net).__name__)
    return family(net) if family else split_generic(net, name)
