"""The zoo: every seed family builds and takes images and spectrograms; stage splits
reproduce the original feature extractors; names are listed and checked."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
import torchvision.models as tvm
from torch import nn

from evotune.errors import UserError
from evotune.models import ModelConfig, build_model, gene_counts, list_models, resolve_backbone
from evotune.models.stages import split_torchvision

FAMILIES = [
    "vgg16",
    "resnet50",
    "resnet101",
    "resnet152",
    "mobilenet_v2",
    "mobilenet_v3_small",
    "mobilenet_v3_large",
    "efficientnet_b0",
    "densenet121",
]  # the seed families (SEEDS.md sections 1-3)


@pytest.mark.parametrize("name", FAMILIES)
def test_family_takes_mnist_and_spectrogram_batches(shared_nets, name):
    net = shared_nets(name).eval()
    with torch.no_grad():
        for shape in [(2, 1, 28, 28), (2, 1, 128, 44)]:
            logits = net(torch.rand(shape))
            assert logits.shape == (2, 10)
            assert torch.isfinite(logits).all()
    assert net.features(torch.rand(2, 1, 28, 28)).shape == (2, net.feature_dim)


def _features(net: nn.Module, kind: str, x: torch.Tensor) -> torch.Tensor:
    """The original model's own feature extractor, before its classifier."""
    if kind == "resnet":
        return nn.Sequential(*list(net.children())[:-2])(x)
    if kind == "densenet":
        return F.relu(net.features(x))
    if kind == "regnet":
        return net.trunk_output(net.stem(x))
    if kind == "vit":
        net.heads = nn.Identity()
        return net(x)
    return net.features(x)


@pytest.mark.parametrize(
    "name, kind, size",
    [
        ("resnet18", "resnet", 32),  # same split code as resnet50/101/152
        ("vgg11_bn", "features", 32),
        ("densenet121", "densenet", 32),
        ("mobilenet_v2", "features", 32),
        ("mobilenet_v3_small", "features", 32),
        ("efficientnet_b0", "features", 32),
        ("convnext_tiny", "features", 32),
        ("regnet_x_400mf", "regnet", 32),
        ("vit_b_32", "vit", 224),
    ],
)
def test_stage_split_reproduces_the_original_features(name, kind, size):
    torch.manual_seed(0)
    net = tvm.get_model(name).eval()
    x = torch.randn(2, 3, size, size)
    with torch.no_grad():
        expected = _features(net, kind, x)
        h = x
        for spec in split_torchvision(net, name).stages:
            h = spec.module(h)
    torch.testing.assert_close(h, expected)


@pytest.mark.parametrize("name", ["squeezenet1_1", "shufflenet_v2_x0_5", "alexnet", "googlenet"])
def test_other_torchvision_models_fall_back_to_a_generic_split(name):
    net = build_model(ModelConfig(backbone=f"torchvision:{name}"), (1, 28, 28), 4, seed=0)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 4)
    assert len(net.genes) >= 3


def test_list_models_finds_the_seed_families_and_builtins():
    names = list_models()
    for name in ["torchvision:vgg16", "torchvision:resnet50", "torchvision:densenet121"]:
        assert name in names
    assert "builtin:small_cnn" in names and "builtin:small_resnet" in names
    assert list_models("resnet5*") == ["torchvision:resnet50"] + [
        n for n in list_models("timm:resnet5*")
    ]
    assert list_models("builtin:*") == ["builtin:mlp", "builtin:small_cnn", "builtin:small_resnet"]
    assert resolve_backbone("densenet121") == "torchvision:densenet121"


@pytest.mark.parametrize(
    "backbone, expected",
    [
        ("torchvision:resnet500", "did you mean 'resnet50'"),
        ("builtin:small_cn", "did you mean 'small_cnn'"),
    ],
)
def test_unknown_backbone_suggests_a_name(backbone, expected):
    with pytest.raises(UserError, match=expected):
        build_model(ModelConfig(backbone=backbone), (1, 28, 28), 10, seed=0)
    with pytest.raises(UserError, match="did you mean"):
        gene_counts(backbone.partition(":")[2])


def test_gene_counts_per_granularity():
    assert gene_counts("torchvision:resnet50") == {"leaf": 106, "block": 17, "stage": 5}
    assert gene_counts("densenet121") == {"leaf": 241, "block": 63, "stage": 9}
    assert gene_counts("vgg16") == {"leaf": 13, "block": 13, "stage": 5}
    assert gene_counts("builtin:small_cnn") == {"leaf": 8, "block": 4, "stage": 2}


def test_builtins_build_and_mlp_has_a_fixed_input_size(build):
    for name in ["builtin:small_cnn", "builtin:small_resnet"]:
        assert build(name)(torch.rand(2, 1, 28, 28)).shape == (2, 3)
    net = build("builtin:mlp", shape=(1, 8, 8), channels="keep", normalize="none")
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 3)
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 3)  # resized to the built size


def test_input_too_small_for_the_backbone_is_a_user_error(build):
    with pytest.raises(UserError, match="model.resize"):
        build("torchvision:vgg16", resize=(8, 8))
