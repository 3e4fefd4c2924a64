"""Layer genes: the backbone cut into an ordered list of named parameter groups.

- `leaf`: every module that directly owns parameters (conv, batch-norm, linear, ...),
  in the order the forward pass first calls them (the first seed's per-layer genome);
- `block`: one gene per stage with weights (stem, residual block, dense layer,
  transition, inverted-residual block, VGG conv unit, ...);
- `stage`: the top-level stages (ResNet's layer1..4, DenseNet's dense blocks, ...).

Adapter, head and new modules (SE blocks, refitted norms) are never genes: they are
new weights and always train. Every backbone parameter is in exactly one gene.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

GRANULARITIES = ("leaf", "block", "stage")


@dataclass(frozen=True)
class LayerGene:
    """A group of backbone parameters that trains or freezes as one (not a genome's
    `engine.spaces.Gene`: task `layers` maps one bit of its genome to each)."""

    name: str
    stage: int  # index of the first stage holding its weights (cache cut point)
    param_names: list[str]  # names in TransferNet.named_parameters()
    n_params: int


@dataclass(frozen=True)
class Leaf:
    """A module that directly owns parameters, with the labels that group it."""

    module: str  # full module name in the TransferNet ("stages.3.conv1")
    stage: int
    name: str  # display name ("layer1.0.conv1")
    block: str
    group: str


def _owners(stage: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in stage.named_modules() if next(m.parameters(False), None) is not None]


def leaf_table(
    stages: nn.ModuleList,
    names: list[str],
    groups: list[str],
    kinds: list[str],
    order: list[nn.Module],
    labels: dict[str, tuple[str, str]] | None = None,
) -> list[Leaf]:
    """Leaves of the gene stages (not 'new' ones), sorted by stage then first call.

    `order` lists modules in the order a dry forward pass first called them; modules
    it never called keep their registration order after the called ones.
    """
    rank = {id(module): i for i, module in enumerate(order)}
    leaves: list[tuple[tuple[int, float, int], Leaf]] = []
    for s, stage in enumerate(stages):
        if kinds[s] == "new":
            continue
        owners = _owners(stage)
        root = getattr(stage, "gene_root", None)  # timm: name leaves inside the model
        # python: stages carry their leaves' labels, keyed inside the stage, so that
        # they survive surgery that renumbers the stages (SE blocks)
        own: dict[str, tuple[str, str]] = getattr(stage, "gene_labels", {})
        for reg, (rel, module) in enumerate(owners):
            full = f"stages.{s}.{rel}" if rel else f"stages.{s}"
            display = _display(names[s], rel, len(owners), root)
            block, group = (labels or {}).get(full) or own.get(rel) or (names[s], groups[s])
            key = (s, float(rank.get(id(module), float("inf"))), reg)
            leaves.append((key, Leaf(full, s, display, block, group)))
    return [leaf for _, leaf in sorted(leaves, key=lambda kv: kv[0])]


def _display(stage_name: str, rel: str, n_owners: int, root: str | None) -> str:
    if root is not None and (rel == root or rel.startswith(root + ".")):
        return rel[len(root) + 1 :] or root
    if n_owners == 1 or not rel:
        return stage_name
    return f"{stage_name}.{rel}"


def make_genes(leaves: list[Leaf], net: nn.Module, granularity: str) -> list[LayerGene]:
    """Group the leaves into genes, in order of first appearance."""
    if granularity not in GRANULARITIES:
        raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
    params = dict(net.named_parameters())
    by_label: dict[str, tuple[int, list[str]]] = {}
    for leaf in leaves:
        label = {"leaf": leaf.name, "block": leaf.block, "stage": leaf.group}[granularity]
        stage, names = by_label.setdefault(label, (leaf.stage, []))
        names.extend(_direct_params(leaf.module, params))
    return [
        LayerGene(label, stage, names, sum(params[n].numel() for n in names))
        for label, (stage, names) in by_label.items()
        if names
    ]


def _direct_params(module: str, params: dict[str, torch.nn.Parameter]) -> list[str]:
    return [n for n in params if n.rpartition(".")[0] == module]
