"""assemble: a model config + input shape -> TransferNet (backbone, surgery, adapter,
head), for every backbone kind but `file:` (checkpoint.py builds on this one)."""

from __future__ import annotations

import torch
from torch import nn

from evotune.errors import UserError
from evotune.models.adapter import InputAdapter
from evotune.models.config import ModelConfig
from evotune.models.head import GlobalPool, make_head
from evotune.models.kinds import BackboneRequest
from evotune.models.net import TransferNet
from evotune.models.stages import Backbone, BackboneStage
from evotune.models.surgery import insert_se, refit_stage, trace_shapes, truncate
from evotune.models.zoo import create_backbone


def assemble(
    config: ModelConfig,
    input_shape: tuple[int, int, int],
    num_classes: int,
    device: str | torch.device = "cpu",
) -> TransferNet:
    """Build a backbone of a kind that creates one (not file:) on `device`."""
    channels, height, width = input_shape
    out_channels = channels if config.channels == "keep" else 3
    with torch.device(device):
        size = config.resize or (height, width)
        backbone = create_backbone(BackboneRequest(config, out_channels, size))
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
    net.notes = list(backbone.notes)
    return net.train()


def _surgery(
    config: ModelConfig,
    backbone: Backbone,
    adapter: InputAdapter,
    input_shape: tuple[int, int, int],
) -> tuple[list[BackboneStage], int, list[nn.Module]]:
    """Truncate, refit, add SE blocks: the stages, the pooled feature width, and the
    backbone's modules in the order the forward pass calls them."""
    stages, refits = backbone.stages, []
    if (config.truncate is not None or config.se_blocks) and not backbone.surgery:
        raise UserError(
            f"model: {config.backbone} does not support truncate or se_blocks "
            "(supported: torchvision CNNs, builtin backbones and python: models whose "
            "forward can be cut into stages)"
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
    stages: list[BackboneStage],
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
