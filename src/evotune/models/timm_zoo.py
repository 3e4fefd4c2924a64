"""timm backbones (the optional extra `evotune[timm]`).

A timm model is one stage (its forward_features + pooled pre-logits), so there is no
cut point inside it and no truncation or SE surgery; its genes come from timm's own
parameter groups (`group_matcher`: fine groups = blocks, coarse groups = stages).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from evotune.errors import UserError, did_you_mean
from evotune.models.stages import Backbone, BackboneStage
from evotune.models.weights import download_guard, is_file_spec, load_into, read_state_dict


def _import_timm() -> Any:
    try:
        import timm
    except ImportError:
        raise UserError(
            "model.backbone: timm backbones need the optional package timm: "
            "pip install 'evotune[timm]' (or pip install timm)"
        ) from None
    return timm


class TimmBody(nn.Module):
    """A timm model without its classifier: images -> pooled features (N, num_features)."""

    gene_root = "model"  # leaf genes are named by their path inside the timm model

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model.forward_head(self.model.forward_features(x), pre_logits=True)


def create_timm(name: str, weights: str, in_channels: int) -> Backbone:
    timm = _import_timm()
    if not timm.list_models(name) and not timm.is_model(name):
        raise UserError(
            f"model.backbone: unknown timm model {name!r}{did_you_mean(name, timm.list_models())}"
        )
    pretrained = weights == "DEFAULT"
    if weights not in ("none", "DEFAULT") and not is_file_spec(weights):
        raise UserError(
            f"model.weights: timm:{name} takes none, DEFAULT or a local file; got {weights!r} "
            "(pick a pretrained tag with the name, e.g. timm:resnet50.a1_in1k)"
        )
    with download_guard(f"pretrained weights for timm:{name}"):
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
        model = timm.create_model(name, pretrained=pretrained, in_chans=in_channels)
    if is_file_spec(weights):
        head = [f"{n}." for n, _ in model.named_children() if n in ("fc", "head", "classifier")]
        load_into(model, read_state_dict(Path(weights)), weights, optional=head)
    model.reset_classifier(0)
    return Backbone(
        [BackboneStage("model", "model", "block", TimmBody(model))],
        in_channels=in_channels,
        fixed_size=_fixed_size(model),
        labels=_labels(model),
        surgery=False,
    )


def _fixed_size(model: nn.Module) -> tuple[int, int] | None:
    """Transformers with learned position embeddings take only their training size."""
    if not hasattr(model, "pos_embed") or getattr(model, "dynamic_img_size", False):
        return None
    size = model.pretrained_cfg.get("input_size", (3, 224, 224))
    return int(size[1]), int(size[2])


def _labels(model: nn.Module) -> dict[str, tuple[str, str]] | None:
    """Module name in the TransferNet -> (block label, stage label), from timm's groups."""
    if not hasattr(model, "group_matcher"):
        return None
    from timm.models import group_parameters

    fine = _param_groups(group_parameters(model, model.group_matcher(coarse=False)))
    coarse = _param_groups(group_parameters(model, model.group_matcher(coarse=True)))
    labels: dict[str, tuple[str, str]] = {}
    for pname in fine:
        module = "stages.0.model." + pname.rpartition(".")[0]
        labels.setdefault(module, (fine[pname], coarse.get(pname, fine[pname])))
    return labels


def _param_groups(groups: dict[Any, list[str]]) -> dict[str, str]:
    """Param name -> a readable group name: the modules' shared dotted prefix, or their
    top-level names joined with '+' ('conv1+bn1' for a ResNet stem)."""
    out: dict[str, str] = {}
    for names in groups.values():
        modules = [n.split(".")[:-1] for n in names]
        shared = os.path.commonprefix(modules)
        tops = dict.fromkeys(m[0] if m else "params" for m in modules)
        text = ".".join(shared) if shared else "+".join(tops)
        out.update({n: text for n in names})
    return out
