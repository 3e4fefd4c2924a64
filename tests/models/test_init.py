"""Kaiming initialisation of the parts `derive` adds (task `hparams`, SEEDS.md §2)."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from evotune.models.derive import derive
from evotune.models.init import kaiming_init
from evotune.models.surgery import SEBlock


def kurtosis(values: torch.Tensor) -> float:
    centred = values.flatten().double() - values.double().mean()
    return float((centred**4).mean() / (centred**2).mean() ** 2)


@pytest.mark.parametrize(
    "layer, fan_in", [(nn.Linear(1024, 512), 1024), (nn.Conv2d(64, 128, 3), 64 * 9)]
)
def test_weights_are_he_normal_and_biases_zero(layer, fan_in):
    torch.manual_seed(0)
    kaiming_init(layer)
    weight = layer.weight.detach()
    assert float(weight.std()) == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
    assert abs(float(weight.mean())) < 0.05 * math.sqrt(2 / fan_in)
    assert kurtosis(weight) == pytest.approx(3.0, abs=0.1)  # normal (uniform: 1.8)
    assert not layer.bias.any()


def test_norm_layers_keep_their_own_init():
    norm = nn.BatchNorm2d(8)
    kaiming_init(nn.Sequential(norm))
    assert norm.weight.eq(1).all() and norm.bias.eq(0).all()


def derived(template, seed, init="kaiming", head_hidden=2048):
    torch.manual_seed(seed)
    return derive(
        template, 3, keep=None, se_blocks=True, head_hidden=head_hidden, dropout=0.0, init=init
    )


def test_derive_initialises_the_head_and_se_blocks_only(build):
    template = build("builtin:small_cnn", channels="keep", normalize="none")
    net = derived(template, seed=0)
    hidden = net.head.hidden.weight.detach()  # feature_dim x 2048 weights
    assert float(hidden.std()) == pytest.approx(math.sqrt(2 / net.feature_dim), rel=0.02)
    se = [m for m in net.modules() if isinstance(m, SEBlock)]
    assert se and all(not m.fc1.bias.any() and not m.fc2.bias.any() for m in se)
    assert not net.head.hidden.bias.any() and not net.head.out.bias.any()
    backbone = dict(zip(template.stage_names, template.stages))
    for name, stage in zip(net.stage_names, net.stages):
        if name in backbone:  # the template's weights, untouched
            for a, b in zip(stage.state_dict().values(), backbone[name].state_dict().values()):
                assert a.equal(b), name
    assert len(net.stages) == len(backbone) + len(se)
    plain = derived(template, seed=0, init="default")
    assert plain.head.out.bias.any()  # torch's default (uniform bias): not replaced


def test_the_same_seed_draws_the_same_new_parts(build):
    template = build("builtin:small_cnn", channels="keep", normalize="none")
    first, again = derived(template, 5, head_hidden=16), derived(template, 5, head_hidden=16)
    other = derived(template, 6, head_hidden=16)
    for (name, a), b in zip(first.state_dict().items(), again.state_dict().values()):
        assert a.equal(b), name
    assert not first.head.hidden.weight.equal(other.head.hidden.weight)
    assert not first.stages[-1].fc1.weight.equal(other.stages[-1].fc1.weight)
