"""Variants of a built network: same pretrained weights, another cut, SE blocks or head.

Transfer-hyperparameter search (task `hparams`) builds one network per genome: kept
depth (truncation), SE blocks on or off, head width and dropout all change the
architecture. Building each from the backbone's source (a torchvision download, a
checkpoint file) would be slow, and with `weights: none` every variant would get other
random backbone weights. Instead the template is built once and each variant is
assembled without weights, then takes the template's weights stage by stage.
"""

from __future__ import annotations

from typing import Literal

from torch import nn

from evotune.models.assemble import assemble
from evotune.models.init import kaiming_init
from evotune.models.net import TransferNet


def derive(
    template: TransferNet,
    num_classes: int,
    *,
    keep: int | None,
    se_blocks: bool,
    head_hidden: int | None,
    dropout: float,
    init: Literal["default", "kaiming"] = "default",
) -> TransferNet:
    """A copy of `template` keeping its first `keep` blocks (None: all), with or
    without SE blocks and a fresh head; new modules (head, SE blocks, refitted final
    norms) are initialised from torch's global generator, so seed it first: with
    torch's defaults, or with `init="kaiming"` their Linear/Conv layers He-normal.

    The variant's genes are always `block` genes (one per stage with weights).
    """
    base = template.config
    truncate = base.truncate if keep is None or keep >= template.n_blocks else keep
    config = base.model_copy(
        update={
            "weights": "none",
            "truncate": truncate,
            "se_blocks": se_blocks,
            "head_hidden": head_hidden,
            "dropout": dropout,
            "granularity": "block",
        }
    )
    net = assemble(config, template.input_shape, num_classes)
    fresh = set(copy_weights(template, net))
    missing = [n for n, k in zip(net.stage_names, net.stage_kinds) if n in fresh and k != "new"]
    if missing:  # truncation only drops stages: every backbone stage has its source
        raise RuntimeError(f"derive: stages {missing} found no weights in the template")
    net.config = config.model_copy(update={"weights": base.weights})
    net.source = template.source
    if init == "kaiming":
        for module in fresh_modules(net, fresh):
            kaiming_init(module)
    return net


def fresh_modules(net: TransferNet, fresh: set[str]) -> list[nn.Module]:
    """The head and the stages named in `fresh`: what took no weights from the template
    (a `file:` template's trained SE blocks are copied, so they keep their weights)."""
    stages = [s for name, s in zip(net.stage_names, net.stages) if name in fresh]
    return [net.head, *stages]


def copy_weights(source: TransferNet, target: TransferNet) -> list[str]:
    """Copy the adapter and every stage of `target` that `source` has under the same name
    with the same shapes; returns the names of the stages left as built (new ones)."""
    _copy(source.adapter, target.adapter)
    stages = dict(zip(source.stage_names, source.stages))
    fresh = []
    for name, stage in zip(target.stage_names, target.stages):
        if name not in stages or not _copy(stages[name], stage):
            fresh.append(name)
    return fresh


def _copy(src: nn.Module, dst: nn.Module) -> bool:
    have, want = src.state_dict(), dst.state_dict()
    if have.keys() != want.keys() or any(have[k].shape != want[k].shape for k in want):
        return False
    dst.load_state_dict(have)
    return True
