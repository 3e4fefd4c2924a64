"""Surgery: truncation keeps the expected blocks and re-attaches the head at the right
width; SE blocks go after each stage, change the output and train."""

from __future__ import annotations

import pytest
import torch

from evotune.errors import UserError
from evotune.models.surgery import SEBlock


def trains(net, shape=(1, 28, 28)) -> None:
    """One Adam step runs and changes every trainable parameter that got a gradient."""
    before = [p.detach().clone() for p in net.trainable_parameters()]
    optimizer = torch.optim.Adam(net.trainable_parameters(), lr=1e-2)
    loss = net(torch.rand(4, *shape)).logsumexp(1).mean()
    loss.backward()
    optimizer.step()
    assert any(not torch.equal(b, p) for b, p in zip(before, net.trainable_parameters()))


def test_truncated_resnet50_keeps_k_blocks_and_fits_the_head(build):
    net = build("torchvision:resnet50", truncate=5)
    assert net.n_blocks == 5
    assert net.stage_names == ["stem", "layer1.0", "layer1.1", "layer1.2", "layer2.0", "layer2.1"]
    assert net.feature_dim == 512 and net.head.out.in_features == 512
    assert len(net.genes) == 6
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 3)


def test_densenet121_truncated_inside_a_dense_block(build):
    net = build("torchvision:densenet121", truncate=10, se_blocks=False)
    assert net.n_blocks == 10
    # stem, 6 layers of dense block 1, transition 1, 4 layers of block 2, fresh norm + ReLU
    assert net.stage_names[7] == "transition1" and net.stage_names[-2] == "denseblock2.denselayer4"
    assert net.stage_kinds[-1] == "new"
    assert net.feature_dim == 128 + 4 * 32 == net.head.out.in_features
    assert net(
        torch.rand(2, 1, 128, 44),
    ).shape == (2, 3)
    trains(net)


@pytest.mark.parametrize("keep, blocks", [(1, 1), (58, 58)])
def test_densenet_truncation_range_matches_the_seed(build, keep, blocks):
    net = build("torchvision:densenet121", truncate=keep)
    assert net.n_blocks == blocks
    assert net(torch.rand(2, 1, 28, 28)).shape == (2, 3)


def test_truncating_past_the_last_block_is_a_user_error(build):
    with pytest.raises(UserError, match="has 6 blocks; got 7"):
        build("builtin:small_resnet", truncate=7)
    with pytest.raises(UserError, match="does not support truncate"):
        build("torchvision:vit_b_32", truncate=2)


def test_mobilenet_truncation_drops_the_final_conv(build):
    net = build("torchvision:mobilenet_v2", truncate=3)
    assert net.stage_names == ["features.0", "features.1", "features.2", "features.3"]
    assert net.feature_dim == 24


def test_se_blocks_after_each_densenet_dense_block(build):
    plain = build("torchvision:densenet121")
    net = build("torchvision:densenet121", se_blocks=True)
    se = [n for n, k in zip(net.stage_names, net.stage_kinds) if k == "new"]
    assert se == [f"se_denseblock{i}" for i in range(1, 5)]
    widths = [m.fc2.out_features for m in net.modules() if isinstance(m, SEBlock)]
    assert widths == [256, 512, 1024, 1024]
    # SE blocks are new weights, not genes
    assert [(g.name, g.n_params) for g in net.genes] == [(g.name, g.n_params) for g in plain.genes]
    assert plain.set_trainable([False] * len(plain.genes)) + sum(
        p.numel() for m in net.modules() if isinstance(m, SEBlock) for p in m.parameters()
    ) == net.set_trainable([False] * len(net.genes))
    x = torch.rand(2, 1, 28, 28)
    net.eval(), plain.eval()
    with torch.no_grad():  # same seed: same backbone weights; SE rescales the features
        assert not torch.allclose(net.features(x), plain.features(x))
    trains(net.train())


def test_se_blocks_after_each_resnet_stage_with_truncation(build):
    net = build("torchvision:resnet50", se_blocks=True, truncate=8)
    assert [n for n in net.stage_names if n.startswith("se_")] == [
        "se_layer1",
        "se_layer2",
        "se_layer3",
    ]
    widths = [m.fc1.in_features for m in net.modules() if isinstance(m, SEBlock)]
    assert widths == [256, 512, 1024]
    assert [m.fc1.out_features for m in net.modules() if isinstance(m, SEBlock)] == [16, 32, 64]
    trains(net)


def test_frozen_backbone_with_se_still_trains_se_and_head(build):
    net = build("builtin:small_resnet", se_blocks=True, channels="repeat")
    net.set_trainable([False] * len(net.genes))
    assert net.frozen_prefix() == 3  # stem and layer1 (2 blocks), then the first SE block
    trains(net)
