"""Genes and freezing: stable lists, exact trainable counts, frozen weights and batch-norm
statistics untouched by training, and the frozen prefix that can be cached."""

from __future__ import annotations

import pytest
import torch
import torchvision.models as tvm
from torch.nn.modules.batchnorm import _BatchNorm

from evotune.models import ModelConfig, build_model


def numel(*modules) -> int:
    return sum(p.numel() for m in modules for p in m.parameters())


@pytest.mark.parametrize("granularity", ["leaf", "block", "stage"])
def test_gene_lists_are_stable_across_builds(build, granularity):
    first = build("torchvision:mobilenet_v3_small", granularity=granularity)
    second = build("torchvision:mobilenet_v3_small", granularity=granularity)
    assert first.genes == second.genes
    assert first.genes_for("leaf") == second.genes_for("leaf")


def test_every_backbone_parameter_is_in_exactly_one_gene(shared_nets):
    net = shared_nets("densenet121")
    for granularity in ["leaf", "block", "stage"]:
        names = [n for g in net.genes_for(granularity) for n in g.param_names]
        assert len(names) == len(set(names))
        assert set(names) == {n for n, _ in net.stages.named_parameters(prefix="stages")}


def test_gene_names_and_order_follow_the_forward_pass(shared_nets):
    net = shared_nets("resnet50")
    leaf = [g.name for g in net.genes_for("leaf")]
    assert leaf[:4] == ["stem.conv1", "stem.bn1", "layer1.0.conv1", "layer1.0.bn1"]
    assert leaf.index("layer1.0.downsample.0") > leaf.index("layer1.0.bn3")
    assert [g.name for g in net.genes_for("stage")] == [
        "stem",
        "layer1",
        "layer2",
        "layer3",
        "layer4",
    ]
    block = net.genes_for("block")
    assert [g.name for g in block[:3]] == ["stem", "layer1.0", "layer1.1"]
    assert [g.stage for g in block] == list(range(17))
    dense = shared_nets("densenet121").genes_for("block")
    assert dense[1].name == "denseblock1.denselayer1" and dense[7].name == "transition1"
    vgg = shared_nets("vgg16").genes_for("leaf")
    assert [g.name for g in vgg[:3]] == ["block1_conv1", "block1_conv2", "block2_conv1"]


def test_freeze_mask_gives_the_exact_trainable_count(build):
    net = build("torchvision:resnet50", classes=10)
    reference = tvm.resnet50()  # counted from torchvision's own modules, not from genes
    stage_names = [g.name for g in net.genes_for("stage")]
    assert stage_names[:2] == ["stem", "layer1"]
    mask = [g.name.split(".")[0] not in ("stem", "layer1") for g in net.genes]
    adapter = 1 * 3 + 3  # 1x1 conv from 1 to 3 channels
    head = 2048 * 10 + 10
    expected = numel(reference.layer2, reference.layer3, reference.layer4) + adapter + head
    assert net.set_trainable(mask) == expected == net.count_trainable()
    assert sum(p.numel() for p in net.trainable_parameters()) == expected
    assert net.set_trainable([False] * len(net.genes), adapter=False) == head
    assert net.set_trainable([True] * len(net.genes)) == numel(net)


def test_leaf_mask_counts_single_layers(build):
    net = build("torchvision:vgg16", granularity="leaf", classes=2)
    mask = [i >= 10 for i in range(13)]  # train block5 only (conv5_1..conv5_3)
    reference = tvm.vgg16().features
    convs = [m for m in reference if isinstance(m, torch.nn.Conv2d)]
    assert net.set_trainable(mask) == numel(*convs[10:]) + 6 + (512 * 2 + 2)


def test_wrong_mask_length_is_refused(build):
    net = build()
    with pytest.raises(ValueError, match=f"{len(net.genes)} block genes"):
        net.set_trainable([True])


def train_step(net, batch=8, shape=(1, 28, 28), classes=3):
    x, y = torch.rand(batch, *shape), torch.randint(0, classes, (batch,))
    optimizer = torch.optim.SGD(net.trainable_parameters(), lr=0.5)
    net.train()
    loss = torch.nn.functional.cross_entropy(net(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()


def snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


@pytest.mark.parametrize("granularity", ["block", "leaf"])
def test_frozen_genes_and_batchnorm_statistics_do_not_change(build, granularity):
    net = build("builtin:small_resnet", granularity=granularity)
    n = len(net.genes)
    mask = [i >= n // 2 for i in range(n)]
    net.set_trainable(mask)
    net.train()  # .train() must not wake the frozen batch-norm layers
    before = {g.name: snapshot_gene(net, g) for g in net.genes}
    stats_before = snapshot(net.stages)
    train_step(net)
    for gene, on in zip(net.genes, mask):
        changed = any(
            not torch.equal(v, dict(net.named_parameters())[k])
            for k, v in before[gene.name].items()
        )
        assert changed == on, gene.name
    frozen_bn = frozen_batchnorms(net, mask)
    assert frozen_bn and all(not m.training for m in frozen_bn)
    for name in frozen_bn_buffers(net, mask):
        torch.testing.assert_close(
            net.stages.state_dict()[name], stats_before[name], rtol=0, atol=0
        )
    trained = [m for m in net.stages.modules() if isinstance(m, _BatchNorm) and m.training]
    assert trained  # batch-norm layers of trainable genes still train


def snapshot_gene(net, gene):
    params = dict(net.named_parameters())
    return {name: params[name].detach().clone() for name in gene.param_names}


def frozen_batchnorms(net, mask):
    modules = dict(net.named_modules())
    names = {
        n.rpartition(".")[0] for g, on in zip(net.genes, mask) if not on for n in g.param_names
    }
    return [modules[n] for n in names if isinstance(modules[n], _BatchNorm)]


def frozen_bn_buffers(net, mask):
    modules = dict(net.named_modules())
    names = {
        n.rpartition(".")[0] for g, on in zip(net.genes, mask) if not on for n in g.param_names
    }
    return [
        f"{n[len('stages.') :]}.{b}"
        for n in names
        if isinstance(modules[n], _BatchNorm)
        for b in ("running_mean", "running_var", "num_batches_tracked")
    ]


def test_batchnorm_train_mode_updates_frozen_statistics(build):
    net = build("builtin:small_cnn", batchnorm="train")
    net.set_trainable([False] * len(net.genes))
    before = net.stages[0].bn.running_mean.clone()
    train_step(net)
    assert not torch.equal(before, net.stages[0].bn.running_mean)
    assert net.frozen_prefix() == 0


def bn_state(net):
    """(running statistics, affine weights) of every backbone batch norm, cloned."""
    bns = [m for m in net.stages.modules() if isinstance(m, _BatchNorm)]
    stats = [t.clone() for m in bns for t in (m.running_mean, m.running_var)]
    return stats, [m.weight.detach().clone() for m in bns]


def test_batchnorm_eval_keeps_every_statistic_while_affine_weights_train(build):
    net = build("builtin:small_resnet", batchnorm="eval")
    net.set_trainable([i % 2 == 0 for i in range(len(net.genes))])
    stats, weights = bn_state(net)
    for _ in range(2):
        train_step(net)
    new_stats, new_weights = bn_state(net)
    assert all(torch.equal(a, b) for a, b in zip(stats, new_stats))
    assert any(not torch.equal(a, b) for a, b in zip(weights, new_weights))
    assert not any(m.training for m in net.stages.modules() if isinstance(m, _BatchNorm))
    assert net.frozen_prefix() == 0  # gene 0 trains
    net.set_trainable([i >= 3 for i in range(len(net.genes))], adapter=False)
    assert net.frozen_prefix() == 3  # inference-mode statistics: the prefix can be cached


def test_batchnorm_frozen_eval_updates_statistics_of_trainable_genes(build):
    net = build("builtin:small_resnet", batchnorm="frozen_eval")
    net.set_trainable([True] * len(net.genes))
    stats, _ = bn_state(net)
    train_step(net)
    assert any(not torch.equal(a, b) for a, b in zip(stats, bn_state(net)[0]))


def test_frozen_prefix_can_be_cached(build):
    net = build("builtin:small_resnet", channels="repeat")
    assert [g.stage for g in net.genes] == list(range(7))
    net.set_trainable([i >= 3 for i in range(7)])
    assert net.frozen_prefix() == 3 and net.first_stage_of_gene(3) == 3
    x = torch.rand(4, 1, 28, 28)
    net.eval()
    with torch.no_grad():
        cached = net.forward_stages(net.adapter(x), 0, 3)
        resumed = net.head(net.pool(net.forward_stages(cached, 3)))
        torch.testing.assert_close(resumed, net(x))
    net.set_trainable([True] * 7)
    assert net.frozen_prefix() == 0


def test_trainable_adapter_blocks_the_cache(build):
    net = build("builtin:small_cnn")  # channels: adapt (a learned 1x1 conv)
    net.set_trainable([False] * len(net.genes))
    assert net.frozen_prefix() == 0
    net.set_trainable([False] * len(net.genes), adapter=False)
    assert net.frozen_prefix() == len(net.stages)


def test_build_on_spectrogram_shape_with_densenet_stage_genes():
    net = build_model(
        ModelConfig(backbone="torchvision:densenet121", granularity="stage"),
        (1, 128, 44),
        5,
        seed=0,
    )
    assert [g.name for g in net.genes][:3] == ["stem", "denseblock1", "transition1"]
    assert net.set_trainable([False] * 8 + [True]) == numel(net.stages[-1], net.adapter, net.head)
