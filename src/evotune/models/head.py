"""Global pooling and the new classifier head."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn


class GlobalPool(nn.Module):
    """(N, C, H, W) -> mean over space; (N, L, D) -> mean over tokens; (N, D) unchanged."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4:
            return x.mean(dim=(2, 3))
        if x.dim() == 3:
            return x.mean(dim=1)
        return x.flatten(1)


def make_head(
    feature_dim: int, num_classes: int, hidden: int | None, dropout: float
) -> nn.Sequential:
    """[dropout] -> linear, or [dropout] -> linear -> ReLU -> [dropout] -> linear."""
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    width = feature_dim
    if hidden is not None:
        if dropout > 0:
            layers["drop0"] = nn.Dropout(dropout)
        layers["hidden"] = nn.Linear(width, hidden)
        layers["relu"] = nn.ReLU()
        width = hidden
    if dropout > 0:
        layers["drop"] = nn.Dropout(dropout)
    layers["out"] = nn.Linear(width, num_classes)
    return nn.Sequential(layers)
