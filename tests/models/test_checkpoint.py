"""file: checkpoints: exact round trips (adapter, head, batch-norm statistics included)
and transfer to a new dataset reusing the pretrained parts."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch
from safetensors.torch import save_file

from evotune.errors import UserError
from evotune.models import ModelConfig, build_model, load_checkpoint, read_spec, save_checkpoint


def pretrained(build, **options):
    """A net 'pretrained' on 1-channel 28x28 data for 10 classes: a few SGD steps."""
    net = build("builtin:small_resnet", classes=10, **options)
    optimizer = torch.optim.SGD(net.trainable_parameters(), lr=0.1)
    for _ in range(2):
        loss = net(torch.rand(8, 1, 28, 28)).logsumexp(1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return net


def assert_equal_state(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for key in sa:
        assert torch.equal(sa[key], sb[key]), key


@pytest.mark.parametrize("options", [{}, {"se_blocks": True, "truncate": 4, "head_hidden": 16}])
def test_round_trip_is_exact(tmp_path, build, options):
    net = pretrained(build, **options)
    path = tmp_path / "pre.safetensors"
    save_checkpoint(net, path, {"dataset": "mnist", "epochs": 2})
    loaded, meta = load_checkpoint(path)
    assert meta == {"dataset": "mnist", "epochs": 2}
    assert_equal_state(net, loaded)
    assert loaded.stage_names == net.stage_names and loaded.genes == net.genes
    x = torch.rand(3, 1, 28, 28)
    net.eval(), loaded.eval()
    with torch.no_grad():
        torch.testing.assert_close(net(x), loaded(x), rtol=0, atol=0)
    assert list(tmp_path.iterdir()) == [path]  # the temp file was renamed, not left over
    assert read_spec(path)["model"]["backbone"] == "builtin:small_resnet"


def test_file_backbone_reuses_backbone_and_adapter_with_a_new_head(tmp_path, build):
    net = pretrained(build)
    path = tmp_path / "pre.safetensors"
    save_checkpoint(net, path, {})
    config = ModelConfig(backbone=f"file:{path}", granularity="leaf")
    transfer = build_model(
        config, (1, 128, 44), 4, seed=0
    )  # spoken digits: another size, 4 classes
    assert_equal_state(net.stages, transfer.stages)
    assert_equal_state(net.adapter, transfer.adapter)
    assert transfer.head.out.out_features == 4
    assert transfer.source["fresh"] == ["head"]
    assert len(transfer.genes) == len(net.genes_for("leaf"))
    assert transfer(torch.rand(2, 1, 128, 44)).shape == (2, 4)
    same = build_model(ModelConfig(backbone=f"file:{path}"), (1, 28, 28), 10, seed=0)
    assert_equal_state(net, same)  # same classes and head: everything reused
    assert same.source["fresh"] == []


def test_file_backbone_can_be_cut_deeper_and_saved_again(tmp_path, build):
    net = pretrained(build)
    first = tmp_path / "pre.safetensors"
    save_checkpoint(net, first, {})
    cut = build_model(
        ModelConfig(backbone=f"file:{first}", truncate=3, se_blocks=True), (1, 28, 28), 10, seed=0
    )
    assert cut.n_blocks == 3 and cut.source["fresh"] == ["se_layer1", "se_layer2", "head"]
    assert cut.stage_names == ["stem", "layer1.0", "layer1.1", "se_layer1", "layer2.0", "se_layer2"]
    for name in ["stem", "layer1.0", "layer1.1", "layer2.0"]:
        src = net.stages[net.stage_names.index(name)]
        assert_equal_state(src, cut.stages[cut.stage_names.index(name)])
    second = tmp_path / "cut.safetensors"
    save_checkpoint(cut, second, {})
    assert_equal_state(cut, load_checkpoint(second)[0])  # no dependency on the first file
    with pytest.raises(UserError, match="keeps only 3 blocks; got 5"):
        build_model(ModelConfig(backbone=f"file:{second}", truncate=5), (1, 28, 28), 10, seed=0)


def test_torchvision_checkpoint_round_trip(tmp_path, build):
    net = build("torchvision:mobilenet_v3_small", classes=5, se_blocks=True)
    path = tmp_path / "mnv3.safetensors"
    save_checkpoint(net, path, {})
    assert_equal_state(net, load_checkpoint(path)[0])


def test_not_a_checkpoint(tmp_path):
    plain = tmp_path / "plain.safetensors"
    save_file({"w": torch.zeros(2)}, str(plain))
    with pytest.raises(UserError, match="not an evotune checkpoint"):
        build_model(ModelConfig(backbone=f"file:{plain}"), (1, 28, 28), 10, seed=0)
    with pytest.raises(UserError, match="checkpoint not found"):
        load_checkpoint(tmp_path / "missing.safetensors")
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not safetensors at all")
    with pytest.raises(UserError, match="not a safetensors file"):
        load_checkpoint(junk)


def test_checkpoint_given_as_weights_gets_a_hint(tmp_path, build):
    path = tmp_path / "pre.safetensors"
    save_checkpoint(build("builtin:small_cnn"), path, {})
    with pytest.raises(UserError, match="use backbone: file:PATH"):
        build("builtin:small_cnn", weights=str(path))
    with pytest.raises(UserError, match="brings its own weights"):
        build(f"file:{path}", weights="DEFAULT")


def test_spec_is_plain_json(tmp_path, build):
    path = tmp_path / "pre.safetensors"
    save_checkpoint(build("builtin:small_cnn", resize=(32, 32)), path, {"note": "x"})
    spec = read_spec(path)
    assert json.loads(json.dumps(spec)) == spec
    assert spec["input_shape"] == [1, 28, 28] and spec["num_classes"] == 3
    assert spec["model"]["resize"] == [32, 32] and spec["model"]["weights"] == "none"


def test_written_models_are_readable_by_others_as_open_would_make_them(tmp_path):
    from evotune.models.checkpoint import write_safetensors

    path = tmp_path / "m.safetensors"
    write_safetensors(torch.nn.Linear(2, 2), path, {})
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask  # 0644 under umask 022
