"""Pretrained weights: torchvision's named weights (downloaded by torchvision's own code)
and local files (`.pth`/`.pt`/`.bin` read with weights_only=True, or `.safetensors`)."""

from __future__ import annotations

import socket
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evotune.errors import UserError, did_you_mean
from evotune.models.config import WEIGHT_SUFFIXES

# Keys under which training scripts save the weights, tried in this order.
NESTED_KEYS = ("state_dict", "model", "model_state_dict", "net", "ema", "module")
STRIPPED_PREFIXES = ("module.", "_orig_mod.")  # nn.DataParallel, torch.compile
DOWNLOAD_TIMEOUT_S = 30.0  # DNS or a proxy may hang instead of failing at once


def is_file_spec(spec: str) -> bool:
    return spec.lower().endswith(WEIGHT_SUFFIXES) or "/" in spec or "\\" in spec


@dataclass
class StateDict:
    """A weights file's tensors and how they were found in it."""

    tensors: dict[str, torch.Tensor]
    wrapper: str | None = None  # the keys unwrapped to reach them ("state_dict")
    stripped: list[str] = field(default_factory=list)  # prefixes removed ("module.")

    def describe(self) -> str:
        where = f"under {self.wrapper!r}" if self.wrapper else "at the top level"
        text = f"{len(self.tensors)} tensors {where}"
        return text + "".join(f", prefix {p!r} stripped" for p in self.stripped)


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """The tensors in a weights file, unwrapped from {'state_dict': ...} and 'module.'."""
    return read_weights(path).tensors


def read_weights(path: Path) -> StateDict:
    """`read_state_dict`, saying which wrapper held the tensors and which prefixes
    (DataParallel's 'module.', torch.compile's '_orig_mod.') were stripped."""
    if not path.is_file():
        raise UserError(f"model.weights: file not found: {path}")
    state = _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    state, wrapper = _unwrap(state)
    if not state or not _all_tensors(state):
        raise UserError(
            f"model.weights: {path} holds no state dict of named tensors: expected "
            f"{{name: tensor}}, at the top level or under one of {', '.join(NESTED_KEYS)}; "
            f"found {_contents(state)}"
        )
    stripped: list[str] = []
    while state and (prefix := _shared_prefix(state)) is not None:
        state = {k[len(prefix) :]: v for k, v in state.items()}
        stripped.append(prefix)
    return StateDict(state, wrapper, stripped)


def _unwrap(state: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Training checkpoints wrap the weights ({'state_dict': ..., 'epoch': 3}), at times
    twice ({'model': {'state_dict': ...}}): follow the first known key, in order."""
    path: list[str] = []
    while not _all_tensors(state):
        key = next((k for k in NESTED_KEYS if isinstance(state.get(k), dict)), None)
        if key is None or len(path) == 3:
            break
        state = state[key]
        path.append(key)
    return state, ".".join(path) or None


def _shared_prefix(state: dict[str, Any]) -> str | None:
    return next((p for p in STRIPPED_PREFIXES if all(k.startswith(p) for k in state)), None)


def _contents(state: dict[str, Any]) -> str:
    if not state:
        return "nothing"
    shown = [f"{k!r} ({type(v).__name__})" for k, v in list(state.items())[:5]]
    return ", ".join(shown) + (", ..." if len(state) > 5 else "")


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
    model: nn.Module,
    state: dict[str, torch.Tensor],
    source: str,
    optional: Iterable[str] = (),
    strict: bool = True,
) -> list[str]:
    """Load exactly, or raise a UserError listing missing, unexpected and mis-shaped keys.

    Keys starting with one of `optional` (the classifier that is replaced anyway) may be
    missing or differ in shape, and BatchNorm's `num_batches_tracked` counters may be
    missing (files saved before PyTorch 0.4.1 lack them; torch fills them in). With
    `strict=False` the matching tensors are loaded and the problems returned instead.
    """
    expected = model.state_dict()
    problems = _mismatches(expected, state, tuple(optional))
    if problems and strict:
        hint = " (an evotune checkpoint: use backbone: file:PATH)" if _is_checkpoint(state) else ""
        raise UserError(
            f"model.weights: {source} does not match the model{hint}: " + "; ".join(problems)
        )
    usable = {k: v for k, v in state.items() if k in expected and expected[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    return problems


def _mismatches(
    expected: dict[str, torch.Tensor], state: dict[str, torch.Tensor], skip: tuple[str, ...]
) -> list[str]:
    """'3 missing keys (a, b, c)', ... for each kind of mismatch there is."""
    missing = [
        k
        for k in expected
        if k not in state and not k.startswith(skip) and not k.endswith("num_batches_tracked")
    ]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k} {tuple(state[k].shape)} vs {tuple(v.shape)}"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape and not k.startswith(skip)
    ]
    return [
        _listing(keys, what)
        for keys, what in (
            (missing, "missing keys"),
            (unexpected, "unexpected keys"),
            (shapes, "shape mismatches (file vs model)"),
        )
        if keys
    ]


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
