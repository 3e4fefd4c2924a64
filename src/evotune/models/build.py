"""build_model: config + data shape -> TransferNet (backbone, surgery, adapter, head)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from evotune.errors import UserError
from evotune.models.adapter import InputAdapter
from evotune.models.config import ModelConfig
from evotune.models.head import GlobalPool, make_head
from evotune.models.net import TransferNet
from evotune.models.stages import Backbone, StageSpec
from evotune.models.surgery import insert_se, refit_stage, trace_shapes, truncate
from evotune.models.zoo import create_backbone


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
            from evotune.models.checkpoint import build_from_checkpoint

            return build_from_checkpoint(config, shape, num_classes)
        return assemble(config, shape, num_classes)


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int]:
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise UserError(f"model input must be (channels, height, width), got {input_shape!r}")
    return shape  # type: ignore[return-value]


def assemble(
    config: ModelConfig,
    input_shape: tuple[int, int, int],
    num_classes: int,
    device: str | torch.device = "cpu",
) -> TransferNet:
    """Build a torchvision/timm/builtin backbone (not file:) on `device`."""
    channels, height, width = input_shape
    out_channels = channels if config.channels == "keep" else 3
    with torch.device(device):
        size = config.resize or (height, width)
        backbone = create_backbone(config.kind, config.name, config.weights, out_channels, size)
        adapter = InputAdapter(
            channels,
            config.channels,
            backbone.in_channels,
            config.resize or backbone.fixed_size,
            backbone.min_size,
            config.normalize == "imagenet",
        )
        stages, feature_dim, order = _surgery(config, backbone, adapter, input_shape)
        head = make_head(feature_dim, num_classes, config.head_hidden, config.dropout)
        net = TransferNet(
            adapter,
            stages,
            head,
            pool=GlobalPool(),
            feature_dim=feature_dim,
            input_shape=input_shape,
            granularity=config.granularity,
            batchnorm=config.batchnorm,
            labels=backbone.labels,
            call_order=order,
        )
    net.config = config
    return net.train()


def _surgery(
    config: ModelConfig,
    backbone: Backbone,
    adapter: InputAdapter,
    input_shape: tuple[int, int, int],
) -> tuple[list[StageSpec], int, list[nn.Module]]:
    """Truncate, refit, add SE blocks: the stages, the pooled feature width, and the
    backbone's modules in the order the forward pass calls them."""
    stages, refits = backbone.stages, []
    if (config.truncate is not None or config.se_blocks) and not backbone.surgery:
        raise UserError(
            f"model: {config.backbone} does not support truncate or se_blocks "
            "(supported: torchvision CNNs and builtin backbones)"
        )
    if config.truncate is not None:
        stages, refits = truncate(stages, config.truncate)
    shapes, order = _dry_run(config, backbone, adapter, stages, input_shape)
    stages = stages + [refit_stage(r, shapes[-1][1]) for r in refits]
    if config.se_blocks:
        stages = insert_se(stages, shapes + [shapes[-1]] * len(refits))
    last = shapes[-1]
    return stages, int(last[-1] if len(last) == 3 else last[1]), order


def _dry_run(
    config: ModelConfig,
    backbone: Backbone,
    adapter: InputAdapter,
    stages: list[StageSpec],
    input_shape: tuple[int, int, int],
) -> tuple[list[tuple[int, ...]], list[nn.Module]]:
    """Shapes and call order for one input (in eval mode: no statistics change)."""
    modules = [s.module.eval() for s in stages]
    x = torch.zeros(1, *input_shape)
    with torch.no_grad():
        x = adapter.eval()(x)
    try:
        shapes, order = trace_shapes(modules, x)
    except (RuntimeError, ValueError) as err:
        first = str(err).strip().splitlines()[0]
        raise UserError(
            f"model: {config.backbone} cannot take a {tuple(input_shape)} input "
            f"({tuple(x.shape[1:])} after the adapter): {first}. Set model.resize to a "
            f"larger [height, width]"
        ) from None
    if not shapes:
        raise UserError(f"model: {config.backbone} has no stages left (truncate too small?)")
    return shapes, order


def resolve_backbone(name: str) -> str:
    """'resnet50' -> 'torchvision:resnet50' (torchvision first, then builtin, then timm)."""
    if ":" in name:
        return name
    from evotune.models.zoo import list_models

    matches = list_models(name)
    if not matches:
        from evotune.errors import did_you_mean

        bare = [n.partition(":")[2] for n in list_models()]
        raise UserError(f"unknown model {name!r}{did_you_mean(name, bare)}")
    return matches[0]


def gene_counts(name: str) -> dict[str, int]:
    """Genes per granularity of a backbone (built with `weights: none`, on the meta
    device when possible, so even the largest models cost no memory)."""
    config = ModelConfig(backbone=resolve_backbone(name))
    if config.kind == "file":
        from evotune.models.checkpoint import load_checkpoint

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
