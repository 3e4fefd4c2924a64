"""Input adapter, head and the model: section's validation."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from evotune.errors import UserError
from evotune.models import ModelConfig
from evotune.models.adapter import IMAGENET_MEAN, IMAGENET_STD


def test_small_inputs_are_upsampled_to_32_and_spectrograms_pass(shared_nets, build):
    net = shared_nets("mobilenet_v3_small")
    assert net.adapter(torch.rand(2, 1, 28, 28)).shape == (2, 3, 32, 32)
    assert net.adapter(torch.rand(2, 1, 128, 44)).shape == (2, 3, 128, 44)
    assert net.adapter(torch.rand(2, 1, 128, 20)).shape == (2, 3, 128, 32)
    builtin = build("builtin:small_cnn")  # CPU-sized: takes 8x8 and up as they are
    assert builtin.adapter(torch.rand(2, 1, 28, 28)).shape == (2, 3, 28, 28)
    resized = build("builtin:small_cnn", resize=(40, 24))
    assert resized.adapter(torch.rand(2, 1, 28, 28)).shape == (2, 3, 40, 24)


def test_adapt_starts_as_repeat_and_learns(build):
    adapt = build("builtin:small_cnn", channels="adapt", normalize="none")
    repeat = build("builtin:small_cnn", channels="repeat", normalize="none")
    x = torch.rand(2, 1, 32, 32)
    torch.testing.assert_close(adapt.adapter(x), repeat.adapter(x))
    assert torch.equal(repeat.adapter(x), x.repeat(1, 3, 1, 1))
    assert adapt.adapter.conv.weight.requires_grad
    assert sum(p.numel() for p in repeat.adapter.parameters()) == 0
    with torch.no_grad():
        adapt.adapter.conv.weight.mul_(3)
    adapt.adapter.reset_parameters()
    torch.testing.assert_close(adapt.adapter(x), repeat.adapter(x))


def test_imagenet_normalisation(build):
    net = build("builtin:small_cnn", channels="repeat")
    out = net.adapter(torch.zeros(1, 1, 32, 32))
    expected = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out[0, :, 0, 0], expected)


def test_keep_passes_channels_through(build):
    net = build("builtin:small_cnn", channels="keep", normalize="none", shape=(2, 16, 16))
    assert net.stages[0].conv.in_channels == 2
    assert net(torch.rand(2, 2, 16, 16)).shape == (2, 3)


@pytest.mark.parametrize(
    "options, shape, message",
    [
        (
            {"backbone": "torchvision:resnet18", "channels": "keep"},
            (1, 28, 28),
            "takes 3 input channels",
        ),
        ({"channels": "repeat"}, (2, 28, 28), "repeat tiles a 1-channel input"),
        ({"channels": "keep"}, (1, 28, 28), "normalize: none"),
    ],
)
def test_adapter_misuse_is_a_user_error(build, options, shape, message):
    options.setdefault("backbone", "builtin:small_cnn")
    with pytest.raises(UserError, match=message):
        build(options.pop("backbone"), shape=shape, **options)


def test_head_hidden_layer_and_dropout(build):
    net = build("builtin:small_cnn", head_hidden=32, dropout=0.5, classes=7)
    assert [type(m).__name__ for m in net.head] == [
        "Dropout",
        "Linear",
        "ReLU",
        "Dropout",
        "Linear",
    ]
    assert net.head.hidden.in_features == net.feature_dim == 64
    assert net.head.out.out_features == 7
    assert len(build("builtin:small_cnn").head) == 1


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"backbone": "resnet50"}, "expected one of torchvision:<name>"),
        ({"backbone": "hub:resnet50"}, "expected one of"),
        ({"granularity": "layer"}, "granularity"),
        ({"resize": [0, 32]}, "positive sizes"),
        ({"dropout": 1.0}, "dropout"),
        ({"truncate": 0}, "truncate"),
        ({"weigths": "none"}, "weigths"),
    ],
)
def test_config_validation(raw, message):
    with pytest.raises(ValidationError, match=message):
        ModelConfig.model_validate(raw)


def test_config_defaults():
    config = ModelConfig()
    assert (config.kind, config.name) == ("builtin", "small_cnn")
    assert config.model_dump(mode="json") == {
        "backbone": "builtin:small_cnn",
        "weights": "none",
        "args": {},
        "classifier": None,
        "strict": True,
        "granularity": "block",
        "channels": "adapt",
        "resize": None,
        "normalize": "imagenet",
        "head_hidden": None,
        "dropout": 0.0,
        "truncate": None,
        "se_blocks": False,
        "batchnorm": "frozen_eval",
    }
