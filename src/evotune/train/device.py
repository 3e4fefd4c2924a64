"""Device selection for torch tasks."""

from __future__ import annotations

import torch

from evotune.errors import UserError


def resolve_device(name: str, where: str = "fitness.device") -> torch.device:
    """`auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(f"{where}: expected auto, cpu, cuda or cuda:N, got {name!r}") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(f"{where}: {name!r} requested but no CUDA device is available; use auto")
    return device
