"""Backbones cut into genes: the zoo (torchvision, timm, builtin, file, python), the input
adapter, the new head, surgery (truncation, SE blocks) and per-gene freezing.

    net = build_model(ModelConfig(backbone="torchvision:resnet50"), (1, 28, 28), 10, seed=0)
    net.set_trainable([i >= 10 for i in range(len(net.genes))])
    optimizer = torch.optim.Adam(net.trainable_parameters(), lr=1e-4)
"""

from evotune.models.build import (
    build_model,
    gene_counts,
    gene_listing,
    names_one_model,
    preview_net,
    resolve_backbone,
)
from evotune.models.checkpoint import load_checkpoint, read_spec, save_checkpoint
from evotune.models.config import ModelConfig
from evotune.models.genes import GRANULARITIES, LayerGene
from evotune.models.net import TransferNet
from evotune.models.zoo import list_models

__all__ = [
    "GRANULARITIES",
    "LayerGene",
    "ModelConfig",
    "TransferNet",
    "build_model",
    "gene_counts",
    "gene_listing",
    "list_models",
    "names_one_model",
    "preview_net",
    "load_checkpoint",
    "read_spec",
    "resolve_backbone",
    "save_checkpoint",
]
