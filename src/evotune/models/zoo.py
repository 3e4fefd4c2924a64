"""Where backbones come from: torchvision, timm, evotune's builtins (file: is
checkpoint.py, python: python_kind.py), each registered as a kind in `kinds.KINDS`.

`create_backbone` returns the backbone with its weights loaded and already cut into
stages; `list_models` is what users browse (`evotune models 'res*'`).
"""

from __future__ import annotations

import fnmatch
import warnings
from pathlib import Path

from torch import nn

from evotune.errors import UserError, did_you_mean
from evotune.models.builtin import BUILTINS
from evotune.models.kinds import KINDS, BackboneKind, BackboneRequest, get_kind, register_kind
from evotune.models.stages import HEAD_CHILDREN, Backbone, split_torchvision
from evotune.models.timm_zoo import create_timm
from evotune.models.weights import (
    download_guard,
    is_file_spec,
    load_into,
    read_state_dict,
    torchvision_weights,
)


def torchvision_names() -> list[str]:
    import torchvision.models as tvm

    return sorted(tvm.list_models(module=tvm))


def timm_names() -> list[str]:
    """timm's model names, or [] when the optional extra is not installed."""
    try:
        import timm
    except ImportError:
        return []
    return list(timm.list_models())


def list_models(pattern: str = "*") -> list[str]:
    """Every buildable backbone name matching a glob pattern, e.g. 'torchvision:res*'.

    A pattern without a 'kind:' prefix matches the bare model name of every kind.
    """
    names = [f"{k.name}:{n}" for k in KINDS.values() if k.names is not None for n in k.names()]
    if ":" in pattern:
        return [n for n in names if fnmatch.fnmatchcase(n, pattern)]
    return [n for n in names if fnmatch.fnmatchcase(n.partition(":")[2], pattern)]


def _unknown(kind: str, name: str, known: list[str]) -> UserError:
    return UserError(
        f"model.backbone: unknown {kind} model {name!r}{did_you_mean(name, known)}; "
        "`evotune models PATTERN` lists the names"
    )


def create_backbone(request: BackboneRequest) -> Backbone:
    """The backbone `model.backbone` names, with `model.weights` loaded, cut into stages."""
    kind = get_kind(request.config.kind)
    if kind.create is None:
        raise ValueError(f"backbone kind {kind.name!r} builds whole networks, not backbones")
    return kind.create(request)


def _builtin(request: BackboneRequest) -> Backbone:
    name, weights = request.config.name, request.config.weights
    if name not in BUILTINS:
        raise _unknown("builtin", name, sorted(BUILTINS))
    backbone = BUILTINS[name](request.in_channels, request.size)
    if weights == "DEFAULT" or (weights != "none" and not is_file_spec(weights)):
        raise UserError(
            f"model.weights: builtin:{name} has no named pretrained weights; use none, a local "
            "file, or pretrain one (`evotune pretrain`) and use backbone: file:PATH"
        )
    if weights != "none":
        holder = nn.ModuleList([s.module for s in backbone.stages])  # keys: "0.conv.weight"
        load_into(holder, read_state_dict(Path(weights)), weights)
    return backbone


def _torchvision(request: BackboneRequest) -> Backbone:
    import torchvision.models as tvm

    name, weights, in_channels = request.config.name, request.config.weights, request.in_channels
    if name not in torchvision_names():
        raise _unknown("torchvision", name, torchvision_names())
    if in_channels != 3:
        raise UserError(
            f"model.channels: torchvision:{name} takes 3 input channels; got {in_channels} "
            "with channels: keep (use channels: adapt or repeat)"
        )
    named = None if weights == "none" or is_file_spec(weights) else weights
    with warnings.catch_warnings():  # googlenet/inception warn about their init scheme
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", FutureWarning)
        if named is None:
            net = tvm.get_model(name, weights=None)
        else:
            enum = torchvision_weights(name, named)
            with download_guard(f"{enum} for torchvision:{name}"):
                net = tvm.get_model(name, weights=enum)
    if named is None and weights != "none":
        load_into(net, read_state_dict(Path(weights)), weights, optional=_head_prefixes(net))
    return split_torchvision(net, name)


def _head_prefixes(net: nn.Module) -> list[str]:
    """State-dict prefixes of the classifier: a weights file may lack it or differ there."""
    return [f"{n}." for n, _ in net.named_children() if n in HEAD_CHILDREN]


def _timm(request: BackboneRequest) -> Backbone:
    return create_timm(request.config.name, request.config.weights, request.in_channels)


# Registration order is the order `resolve_backbone` tries a bare name in.
register_kind(
    BackboneKind("torchvision", "torchvision:<name>", create=_torchvision, names=torchvision_names)
)
register_kind(
    BackboneKind("builtin", "builtin:<name>", create=_builtin, names=lambda: sorted(BUILTINS))
)
register_kind(BackboneKind("timm", "timm:<name>", create=_timm, names=timm_names))
