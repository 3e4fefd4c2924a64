"""The input adapter: data-shaped batches in, what the backbone expects out.

Order: resize (on the data's channels, the cheapest place), channel mapping, then
normalisation. Without `resize`, sides below the backbone's minimum (32 for the
torchvision CNNs: five stride-2 steps) are upsampled bilinearly to it, so 28x28 MNIST
becomes 32x32 (as in the first seed) and a 1x128x44 spectrogram passes unchanged.
The adapter depends on the number of channels only, not on the input's height and
width, so a pretrained adapter transfers to data of another size.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from evotune.errors import UserError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class InputAdapter(nn.Module):
    def __init__(
        self,
        in_channels: int,
        channels: str,
        out_channels: int,
        resize: tuple[int, int] | None,
        min_size: int,
        normalize: bool,
    ) -> None:
        super().__init__()
        self.in_channels, self.mode = in_channels, channels
        self.out_channels = in_channels if channels == "keep" else out_channels
        self.size, self.min_size = resize, min_size
        self.conv = _adapt_conv(in_channels, out_channels) if channels == "adapt" else None
        if channels == "repeat" and in_channels not in (1, out_channels):
            raise UserError(
                f"model.channels: repeat tiles a 1-channel input; the data has {in_channels} "
                "channels (use channels: adapt)"
            )
        if normalize and self.out_channels != 3:
            raise UserError(
                f"model.normalize: imagenet needs 3 channels, the backbone gets "
                f"{self.out_channels} (use normalize: none)"
            )
        # Constants, not weights: kept out of the state dict.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), False)
        self.normalize = normalize

    def reset_parameters(self) -> None:
        """Back to the starting mapping (repeat / identity / average), not a random one."""
        if self.conv is not None:
            fresh = _adapt_conv(self.in_channels, self.conv.out_channels)
            with torch.no_grad():
                self.conv.weight.copy_(fresh.weight)
                self.conv.bias.copy_(fresh.bias)

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        if self.size is not None:
            return self.size
        return max(height, self.min_size), max(width, self.min_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = self.output_size(x.shape[-2], x.shape[-1])
        if tuple(x.shape[-2:]) != size:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        if self.conv is not None:
            x = self.conv(x)
        elif self.mode == "repeat" and x.shape[1] != self.out_channels:
            x = x.repeat(1, self.out_channels, 1, 1)
        if self.normalize:
            x = (x - self.mean) / self.std
        return x

    def extra_repr(self) -> str:
        return (
            f"{self.in_channels}->{self.out_channels} ({self.mode}), resize={self.size}, "
            f"min_size={self.min_size}, normalize={self.normalize}"
        )


def _adapt_conv(in_channels: int, out_channels: int) -> nn.Conv2d:
    """A 1x1 conv that starts as `repeat` (1 channel) or identity/average, then learns.

    Starting from a sensible mapping rather than random weights means a pretrained
    backbone first sees inputs like the ones it was trained on.
    """
    conv = nn.Conv2d(in_channels, out_channels, kernel_size=1)
    with torch.no_grad():
        conv.bias.zero_()
        if in_channels == out_channels:
            conv.weight.copy_(torch.eye(in_channels).view(in_channels, in_channels, 1, 1))
        else:
            conv.weight.fill_(1.0 / in_channels)
    return conv
