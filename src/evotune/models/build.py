"""build_model: config + data shape -> TransferNet (backbone, surgery, adapter, head)."""

from __future__ import annotations

from pathlib import Path

import torch

from evotune.errors import UserError, did_you_mean
from evotune.models.assemble import assemble
from evotune.models.checkpoint import build_from_checkpoint, load_checkpoint
from evotune.models.config import ModelConfig
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
        if config.kind == "file":
            return build_from_checkpoint(config, shape, num_classes)
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
    config = ModelConfig(backbone=resolve_backbone(name))
    if config.kind == "file":
        net = load_checkpoint(Path(config.name))[0]
    else:
        net = _build_cheaply(config)
    return {g: len(net.genes_for(g)) for g in ("leaf", "block", "stage")}


def _build_cheaply(config: ModelConfig) -> TransferNet:
    try:
        return assemble(config, (3, 32, 32), 2, device="meta")
    except UserError:
        raise
    except Exception:  # an op without a meta kernel: build for real
        return assemble(config, (3, 32, 32), 2)
