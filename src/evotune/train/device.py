"""Device, precision and memory layout for torch tasks."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import Literal

import torch
from torch import nn

from evotune.errors import UserError

Precision = Literal["fp32", "bf16", "fp16"]
DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}


def resolve_device(name: str, where: str = "fitness.device") -> torch.device:
    """`auto` (CUDA when available, else CPU), `cpu`, `cuda` or `cuda:N`."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    expected = f"{where}: expected auto, cpu, cuda or cuda:N, got {name!r}"
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UserError(expected) from None
    if device.type not in ("cpu", "cuda"):
        raise UserError(expected)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UserError(
            f"{where}: {name!r} requested but no CUDA device is available; use auto or cpu"
        )
    if device.type == "cuda" and (device.index or 0) >= torch.cuda.device_count():
        raise UserError(
            f"{where}: {name!r} requested but there are {torch.cuda.device_count()} CUDA "
            f"devices (cuda:0 to cuda:{torch.cuda.device_count() - 1})"
        )
    return device


def check_precision(
    precision: str, device: torch.device, where: str = "fitness.precision"
) -> Precision:
    """`precision` when `device` can run it: fp16 needs CUDA (its gradient scaler and
    fast kernels are GPU only), bf16 a CPU or a GPU that has it (Ampere or newer)."""
    if precision not in DTYPES:
        raise UserError(f"{where}: expected fp32, bf16 or fp16, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        raise UserError(
            f"{where}: fp16 needs a CUDA device, and this run is on {device}; use bf16 "
            "(mixed precision on the CPU too) or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise UserError(f"{where}: this GPU has no bf16; use fp16 or fp32")
    return precision  # type: ignore[return-value]


def autocast(device: torch.device | str, precision: str) -> AbstractContextManager:
    """Mixed precision for the forward passes inside it (none for fp32)."""
    dtype = DTYPES[precision]
    if dtype is None:
        return nullcontext()
    return torch.autocast(torch.device(device).type, dtype=dtype)


def grad_scaler(device: torch.device, precision: str) -> torch.amp.GradScaler | None:
    """fp16's loss scaler (fp16 gradients underflow without it); None otherwise."""
    return torch.amp.GradScaler(device.type) if precision == "fp16" else None


def place(module: nn.Module, device: torch.device) -> nn.Module:
    """`module` on `device`; on a GPU, a convolutional net also in channels_last memory
    format (the layout tensor cores read without transposing; convolutions then return
    channels_last activations, whatever the layout of the input)."""
    module = module.to(device)
    if device.type == "cuda" and any(isinstance(m, nn.Conv2d) for m in module.modules()):
        module = module.to(memory_format=torch.channels_last)
    return module


PRECISION_HELP = (
    "forward passes in fp32, or mixed precision under autocast: bf16 (CPU or an Ampere+ "
    "GPU), fp16 (CUDA only, with a gradient scaler); a genome's value depends on it"
)
