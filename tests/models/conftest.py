"""Shared fixtures: big torchvision nets are built once per session (read-only use)."""

from __future__ import annotations

import pytest
import torch

from evotune.models import ModelConfig, TransferNet, build_model


@pytest.fixture(scope="session")
def shared_nets():
    """name -> TransferNet built for (1, 28, 28) and 10 classes; do not modify them."""
    cache: dict[str, TransferNet] = {}

    def get(name: str) -> TransferNet:
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = build_model(
                ModelConfig(backbone=f"torchvision:{name}"), (1, 28, 28), 10, seed=0
            )
        return cache[name]

    return get


@pytest.fixture
def build():
    """build(backbone, shape, classes, **config) with a fixed seed: a fresh net to modify."""

    def make(backbone="builtin:small_resnet", shape=(1, 28, 28), classes=3, **options):
        torch.manual_seed(0)
        return build_model(ModelConfig(backbone=backbone, **options), shape, classes, seed=0)

    return make
