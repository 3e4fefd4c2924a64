"""Surgery on a backbone's stage list: truncation and squeeze-and-excitation blocks."""

from __future__ import annotations

import torch
from torch import nn

from evotune.errors import UserError
from evotune.models.stages import BackboneStage


class SEBlock(nn.Module):
    """Squeeze-and-excitation (Hu et al. 2018): global average pool -> FC (C/r) -> ReLU
    -> FC (C) -> sigmoid -> scale each channel."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden)
        self.fc2 = nn.Linear(hidden, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.sigmoid(self.fc2(torch.relu(self.fc1(x.mean(dim=(2, 3))))))
        return x * scale[:, :, None, None]


def count_blocks(stages: list[BackboneStage]) -> int:
    return sum(s.kind == "block" for s in stages)


def truncate(
    stages: list[BackboneStage], keep: int
) -> tuple[list[BackboneStage], list[BackboneStage]]:
    """The stem and the first `keep` blocks (with the transitions between them), and the
    final stages to refit at the new width (DenseNet's norm + ReLU); other final stages
    (MobileNet's last 1x1 conv, sized for the full width) are dropped."""
    n_blocks = count_blocks(stages)
    if keep > n_blocks:
        raise UserError(f"model.truncate: the backbone has {n_blocks} blocks; got {keep}")
    if keep == n_blocks:
        return stages, []
    last = [i for i, s in enumerate(stages) if s.kind == "block"][keep - 1]
    kept = [s for s in stages[: last + 1] if s.kind != "final"]
    refits = [s for s in stages[last + 1 :] if s.kind == "final" and s.refit is not None]
    return kept, refits


def refit_stage(spec: BackboneStage, channels: int) -> BackboneStage:
    """A fresh (untrained, so always trainable) copy of a final stage at `channels`."""
    assert spec.refit is not None
    return BackboneStage(f"{spec.name}_refit", spec.group, "new", spec.refit(channels))


@torch.no_grad()
def trace_shapes(
    modules: list[nn.Module], x: torch.Tensor
) -> tuple[list[tuple[int, ...]], list[nn.Module]]:
    """Run the modules in order on a dry batch: the output shape after each, and every
    submodule in the order it was first called (the order of leaf genes)."""
    called: dict[int, nn.Module] = {}

    def record(module: nn.Module, args: object) -> None:
        called.setdefault(id(module), module)

    hooks = [sub.register_forward_pre_hook(record) for m in modules for sub in m.modules()]
    shapes = []
    try:
        for module in modules:
            x = module(x)
            shapes.append(tuple(x.shape))
    finally:
        for hook in hooks:
            hook.remove()
    return shapes, list(called.values())


def insert_se(stages: list[BackboneStage], shapes: list[tuple[int, ...]]) -> list[BackboneStage]:
    """An SE block after the last stage of each group of blocks (each DenseNet dense
    block, each ResNet layer, ...), its width read from the traced output shapes."""
    out: list[BackboneStage] = []
    for i, spec in enumerate(stages):
        out.append(spec)
        nxt = stages[i + 1] if i + 1 < len(stages) else None
        if spec.kind == "block" and (nxt is None or nxt.group != spec.group):
            if len(shapes[i]) != 4:
                raise UserError(
                    f"model.se_blocks: stage {spec.name!r} outputs shape {shapes[i]}; SE blocks "
                    "need convolutional feature maps (N, C, H, W)"
                )
            out.append(BackboneStage(f"se_{spec.group}", spec.group, "new", SEBlock(shapes[i][1])))
    return out
