"""build_model: config + data shape -> TransferNet (backbone, surgery, adapter, head)."""

from __future__ import annotations

import torch
from pydantic import ValidationError

# Kinds register themselves when imported: these two are imported for that (the zoo's
# kinds come with assemble), so that every kind is known once evotune.models is.
import evotune.models.checkpoint  # noqa: F401
import evotune.models.python_kind  # noqa: F401
from evotune.errors import UserError, did_you_mean
from evotune.models.assemble import assemble
from evotune.models.config import ModelConfig
from evotune.models.genes import GRANULARITIES
from evotune.models.kinds import KINDS, get_kind
from evotune.models.net import TransferNet
from evotune.models.zoo import list_models


def build_model(
    config: ModelConfig, input_shape: tuple[int, int, int], num_classes: int, *, seed: int
) -> TransferNet:
    """The network `config` describes, for inputs of `input_shape` (C, H, W) and
    `num_classes` outputs, in train mode with every gene trainable.

    Every randomly initialised part (a `weights: none` backbone, the adapter, the head,
    SE blocks, refitted stages) is drawn from `seed` and torch's global generator is
    left as it was: a search, its resume and its export in another process all train
    the same network."""
    shape = _check_shape(input_shape)
    if num_classes < 1:
        raise UserError(f"the model needs at least 1 class, got {num_classes}")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        kind = get_kind(config.kind)
        if kind.build is not None:  # file: restores a whole network
            return kind.build(config, shape, num_classes)
        return assemble(config, shape, num_classes)


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"model input must be (channels, height, width), got {input_shape!r}")
    return shape  # type: ignore[return-value]


def resolve_backbone(name: str) -> str:
    """'resnet50' -> 'torchvision:resnet50' (torchvision first, then builtin, then timm)."""
    if ":" in name:
        return name
    matches = list_models(name)
    if not matches:
        bare = [n.partition(":")[2] for n in list_models()]
        raise UserError(f"unknown model {name!r}{did_you_mean(name, bare)}")
    return matches[0]


def gene_counts(name: str) -> dict[str, int]:
    """Genes per granularity of a backbone (built with `weights: none`, on the meta
    device when possible, so even the largest models cost no memory)."""
    net = preview_net(name)
    return {g: len(net.genes_for(g)) for g in GRANULARITIES}


def preview_net(name: str) -> TransferNet:
    """The backbone `name` as a net for 3 x 32 x 32 inputs and 2 classes, with no
    weights (a `file:` checkpoint: its own net), to list its genes."""
    try:
        config = ModelConfig(backbone=resolve_backbone(name))
    except ValidationError as err:
        raise UserError(f"model.backbone: {err.errors()[0]['msg']}") from None
    kind = get_kind(config.kind)
    return kind.preview(config.name) if kind.preview else _build_cheaply(config)


def _build_cheaply(config: ModelConfig) -> TransferNet:
    try:
        return assemble(config, (3, 32, 32), 2, device="meta")
    except Exception:  # noqa: BLE001 - an op without a meta kernel: build for real
        # (a python: model's own code may fail on meta tensors with what reads as bad
        # input; for real bad input the real build raises the same UserError again)
        return assemble(config, (3, 32, 32), 2)


def names_one_model(pattern: str) -> bool:
    """True for `file:PATH` and `python:MODULE:FACTORY`: kinds with no names to browse,
    whose pattern is the model itself."""
    kind = KINDS.get(pattern.partition(":")[0])
    return kind is not None and kind.names is None


def gene_listing(name: str, granularity: str | None) -> list[str]:
    """`evotune models NAME --genes` for one model: its gene counts, what building it
    decided (the classifier removed, ...) and, for `granularity`, each gene."""
    net = preview_net(name)
    counts = "  ".join(f"{g} {len(net.genes_for(g))}" for g in GRANULARITIES)
    lines = [f"{name}  {counts}", *(f"  {note}" for note in net.notes)]
    if granularity is not None:
        genes = net.genes_for(granularity)
        width = max(len(g.name) for g in genes)
        lines.append(f"{granularity} genes (index, name, parameters):")
        lines += [f"  {i:>4}  {g.name:<{width}}  {g.n_params:>10,}" for i, g in enumerate(genes)]
    return lines
