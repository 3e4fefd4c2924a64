"""Pretrained weights: torchvision's named weights (downloaded by torchvision's own code)
and local files (`.pth`/`.pt`/`.bin` read with weights_only=True, or `.safetensors`)."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evotune.errors import UserError, did_you_mean
from evotune.models.config import WEIGHT_SUFFIXES

NESTED_KEYS = ("state_dict", "model_state_dict", "model", "module")
DOWNLOAD_TIMEOUT_S = 30.0  # DNS or a proxy may hang instead of failing at once


def is_file_spec(spec: str) -> bool:
    return spec.lower().endswith(WEIGHT_SUFFIXES) or "/" in spec or "\\" in spec


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors in a weights file, unwrapped from {'state_dict': ...} and 'module.'."""
    if not path.is_file():
        raise UserError(f"model.weights: file not found: {path}")
    state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    for key in NESTED_KEYS:  # training checkpoints often wrap the weights
        if isinstance(state.get(key), dict) and not _all_tensors(state):
            state = state[key]
            break
    if not state or not _all_tensors(state):
        raise UserError(f"model.weights: {path} holds no state dict of named tensors")
    if all(k.startswith("module.") for k in state):  # saved from DataParallel
        state = {k[len("module.") :]: v for k, v in state.items()}
    return state


def _all_tensors(state: dict[str, Any]) -> bool:
    return all(isinstance(v, torch.Tensor) for v in state.values())


def _read_safetensors(path: Path) -> dict[str, Any]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise UserError(f"model.weights: cannot read {path} as safetensors: {err}") from None


def _read_torch(path: Path) -> dict[str, Any]:
    try:  # never unpickle arbitrary objects from a user's file
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a text file fails as KeyError deep in torch
        first = str(err).strip().splitlines()[0] if str(err).strip() else ""
        raise UserError(
            f"model.weights: cannot read {path} as a torch file of plain tensors "
            f"(weights_only=True): {type(err).__name__}: {first}. Expected what "
            "torch.save(model.state_dict(), PATH) writes, or a .safetensors file"
        ) from None
    if not isinstance(state, dict):
        raise UserError(f"model.weights: {path} holds a {type(state).__name__}, not a state dict")
    return state


def _listing(keys: list[str], what: str, limit: int = 5) -> str:
    shown = ", ".join(keys[:limit]) + (", ..." if len(keys) > limit else "")
    return f"{len(keys)} {what} ({shown})"


def load_into(
    model: nn.Module, state: dict[str, torch.Tensor], source: str, optional: Iterable[str] = ()
) -> None:
    """Load exactly, or raise a UserError listing missing, unexpected and mis-shaped keys.

    Keys starting with one of `optional` (the classifier that is replaced anyway) may be
    missing or differ in shape.
    """
    expected = model.state_dict()
    skip = tuple(optional)
    missing = [k for k in expected if k not in state and not k.startswith(skip)]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape and not k.startswith(skip)
    ]
    if missing or unexpected or shapes:
        parts = [
            _listing(keys, what)
            for keys, what in (
                (missing, "missing keys"),
                (unexpected, "unexpected keys"),
                (shapes, "shape mismatches (file vs model)"),
            )
            if keys
        ]
        hint = " (an evotune checkpoint: use backbone: file:PATH)" if _is_checkpoint(state) else ""
        raise UserError(
            f"model.weights: {source} does not match the model{hint}: " + "; ".join(parts)
        )
    usable = {k: v for k, v in state.items() if expected[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)


def _is_checkpoint(state: dict[str, torch.Tensor]) -> bool:
    return any(k.startswith("stages.0.") for k in state)


def torchvision_weights(name: str, spec: str) -> Any:
    """The weights enum member for DEFAULT, 'IMAGENET1K_V2' or 'ResNet50_Weights.X'."""
    from torchvision.models import get_model_weights

    try:
        enum = get_model_weights(name)
    except (ValueError, KeyError):
        raise UserError(f"model.weights: torchvision has no named weights for {name!r}") from None
    cls_name, _, member = spec.rpartition(".")
    if cls_name and cls_name != enum.__name__:
        raise UserError(
            f"model.weights: {spec!r} are weights of another model; {name} takes {enum.__name__}.*"
        )
    choices = ["DEFAULT", *enum.__members__]
    if member not in choices:
        raise UserError(
            f"model.weights: unknown weights {spec!r} for {name}{did_you_mean(member, choices)}; "
            f"expected one of: none, {', '.join(choices)}, or a local file"
        )
    return enum.DEFAULT if member == "DEFAULT" else enum[member]


@contextmanager
def download_guard(what: str) -> Iterator[None]:
    """Turn a failed download into a UserError that names the way out."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(DOWNLOAD_TIMEOUT_S)
    try:
        yield
    except (OSError, RuntimeError) as err:  # URLError and socket errors are OSErrors
        raise UserError(
            f"model.weights: cannot download {what} ({type(err).__name__}: {err}). "
            "With no network, pass a local file (model.weights: path/to/weights.pth) "
            "or train from scratch with model.weights: none"
        ) from None
    finally:
        socket.setdefaulttimeout(previous)
