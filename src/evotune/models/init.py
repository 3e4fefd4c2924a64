"""Kaiming (He et al. 2015) initialisation of the layers evotune adds to a backbone."""

from __future__ import annotations

from torch import nn

LAYERS = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d)


def kaiming_init(module: nn.Module) -> None:
    """Every Linear/Conv weight in `module` drawn from N(0, 2 / fan_in) (He normal for
    ReLU), biases zero; other layers (norms) keep their own init. Draws from torch's
    global generator, so seed it first."""
    for layer in module.modules():
        if isinstance(layer, LAYERS):
            nn.init.kaiming_normal_(layer.weight, mode="fan_in", nonlinearity="relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
