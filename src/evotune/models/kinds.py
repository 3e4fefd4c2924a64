"""Backbone kinds, found through one registry: `model.backbone: KIND:NAME`.

Each kind's module registers itself (zoo.py: torchvision, builtin, timm; checkpoint.py:
file; python_kind.py: python), and everything that needs to know the kinds (config
validation, `build_model`, `list_models`, `evotune models`, checkpoints) asks this
table: adding a kind is one `register_kind` call, with no if-chain to extend.

This module imports no other evotune model module, so that `config.py` can validate
against it while the kinds themselves import `config.py`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from evotune.errors import UserError, did_you_mean

if TYPE_CHECKING:
    from evotune.models.config import ModelConfig
    from evotune.models.net import TransferNet
    from evotune.models.stages import Backbone


@dataclass(frozen=True)
class BackboneRequest:
    """What a kind gets to build a backbone: the model config, the channels the input
    adapter hands over (3 unless `channels: keep`) and the input's spatial size
    (`model.resize`, else the data's)."""

    config: ModelConfig
    in_channels: int
    size: tuple[int, int]


def _same(backbone: str) -> str:
    return backbone


def _any_name(name: str) -> None:
    return None


def _no_code(name: str) -> str:
    return ""


@dataclass(frozen=True)
class BackboneKind:
    """One kind of backbone and what it can do.

    `create` builds the backbone cut into stages (the adapter and head are added by
    `assemble`); a kind that restores a whole network instead (`file:`) sets `build`.
    """

    name: str
    usage: str  # how a user writes it, for help and errors: "torchvision:<name>"
    create: Callable[[BackboneRequest], Backbone] | None = None
    build: Callable[[ModelConfig, tuple[int, int, int], int], TransferNet] | None = None
    # every name `evotune models PATTERN` can list (None: the kind names files or code)
    names: Callable[[], list[str]] | None = None
    # raises ValueError when the part after "KIND:" cannot be one of this kind's names
    check_name: Callable[[str], None] = _any_name
    # the backbone string as a checkpoint records it (python: makes a file path absolute)
    portable: Callable[[str], str] = _same
    # a built net to list genes from without a data set (file: reads its checkpoint)
    preview: Callable[[str], TransferNet] | None = None
    options: tuple[str, ...] = ()  # model.* keys only this kind takes (args, classifier)
    # a hash of the code that defines the model ('' for none of the user's): what
    # caches keyed by the backbone (prune's features) must add to its tensors
    fingerprint: Callable[[str], str] = _no_code


KINDS: dict[str, BackboneKind] = {}


def register_kind(kind: BackboneKind) -> BackboneKind:
    if kind.name in KINDS:
        raise ValueError(f"backbone kind {kind.name!r} is registered twice")
    KINDS[kind.name] = kind
    return kind


def get_kind(name: str) -> BackboneKind:
    if name not in KINDS:
        raise UserError(
            f"model.backbone: unknown kind {name!r}{did_you_mean(name, KINDS)}; "
            f"expected one of {usages()}"
        )
    return KINDS[name]


def usages() -> str:
    """'torchvision:<name> | timm:<name> | ...', in registration order."""
    return " | ".join(kind.usage for kind in KINDS.values())
