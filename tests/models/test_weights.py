"""Pretrained weights: local files load exactly, mismatches are named, nothing is
unpickled, and a download without network says what to do instead."""

from __future__ import annotations

import socket
import time

import pytest
import torch
import torchvision.models as tvm
from safetensors.torch import save_file

from evotune.errors import UserError
from evotune.models import ModelConfig, build_model
from evotune.models.stages import split_torchvision

NAME = "mobilenet_v3_small"  # the smallest seed family: quick to save and load


@pytest.fixture(scope="module")
def reference():
    torch.manual_seed(123)
    net = tvm.get_model(NAME)
    with torch.no_grad():  # non-default statistics, so a load that skips buffers fails
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
    return net


def build(weights, backbone=f"torchvision:{NAME}"):
    return build_model(
        ModelConfig(backbone=backbone, weights=str(weights)), (1, 28, 28), 10, seed=0
    )


def assert_same_backbone(net, reference):
    stages = split_torchvision(reference, NAME).stages
    assert len(stages) == len(net.stages)
    for spec, stage in zip(stages, net.stages):
        expected, got = spec.module.state_dict(), stage.state_dict()
        assert expected.keys() == got.keys()
        for key in expected:
            assert torch.equal(expected[key], got[key]), key


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_local_weight_file_loads_exactly(tmp_path, reference, suffix):
    path = tmp_path / f"weights{suffix}"
    state = {k: v.contiguous() for k, v in reference.state_dict().items()}
    torch.save(state, path) if suffix == ".pth" else save_file(state, str(path))
    assert_same_backbone(build(path), reference)


def test_wrapped_and_dataparallel_files_load(tmp_path, reference):
    path = tmp_path / "checkpoint.pt"
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 3}, path)
    assert_same_backbone(build(path), reference)


def test_file_without_the_classifier_is_accepted(tmp_path, reference):
    path = tmp_path / "headless.pth"
    torch.save(
        {k: v for k, v in reference.state_dict().items() if not k.startswith("classifier.")}, path
    )
    assert_same_backbone(build(path), reference)


def test_wrong_keys_are_listed(tmp_path, reference):
    state = reference.state_dict()
    renamed = {k.replace("features.1.", "features.one."): v for k, v in state.items()}
    path = tmp_path / "renamed.pth"
    torch.save(renamed, path)
    n = sum(k.startswith("features.1.") for k in state)
    counters = sum(k.startswith("features.1.") and "num_batches_tracked" in k for k in state)
    with pytest.raises(UserError) as err:
        build(path)
    message = str(err.value)
    assert str(path) in message
    # BatchNorm counters may be missing (old files lack them; torch fills them in)
    assert f"{n - counters} missing keys (features.1.block.0.0.weight" in message
    assert f"{n} unexpected keys (features.one.block.0.0.weight" in message
    assert ", ...)" in message  # long lists are cut


def test_wrong_shapes_are_listed(tmp_path, reference):
    state = dict(reference.state_dict())
    state["features.0.0.weight"] = torch.zeros(16, 1, 3, 3)
    path = tmp_path / "gray.pth"
    torch.save(state, path)
    with pytest.raises(
        UserError,
        match=r"1 shape mismatches .*features.0.0.weight \(16, 1, 3, 3\) vs \(16, 3, 3, 3\)",
    ):
        build(path)


class NotATensor:
    pass


def test_pickled_objects_are_never_loaded(tmp_path):
    path = tmp_path / "pickled.pth"
    torch.save({"weight": NotATensor()}, path)
    with pytest.raises(UserError, match="weights_only=True"):
        build(path)


@pytest.mark.parametrize(
    "weights, message",
    [
        ("missing.pth", "file not found"),
        ("IMAGENET1K_V3", "did you mean 'IMAGENET1K_V1'"),
        ("ResNet50_Weights.IMAGENET1K_V2", "weights of another model"),
    ],
)
def test_bad_weight_names(tmp_path, weights, message):
    spec = str(tmp_path / weights) if weights.endswith(".pth") else weights
    with pytest.raises(UserError, match=message):
        build(spec)


def test_builtin_has_no_named_weights():
    with pytest.raises(UserError, match="no named pretrained weights"):
        build("DEFAULT", backbone="builtin:small_cnn")


def test_builtin_weights_from_a_file(tmp_path):
    torch.manual_seed(1)
    source = build("none", backbone="builtin:small_cnn")
    path = tmp_path / "small.pth"
    torch.save(source.stages.state_dict(), path)
    torch.manual_seed(2)
    loaded = build(path, backbone="builtin:small_cnn")
    for key, value in source.stages.state_dict().items():
        assert torch.equal(value, loaded.stages.state_dict()[key])


def _network_reachable() -> bool:
    try:
        socket.setdefaulttimeout(2)
        socket.getaddrinfo("download.pytorch.org", 443)
        return True
    except OSError:
        return False
    finally:
        socket.setdefaulttimeout(None)


def test_default_weights_without_network_name_the_way_out(tmp_path, monkeypatch):
    if _network_reachable():
        pytest.skip("download.pytorch.org is reachable: the test would download weights")
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    start = time.monotonic()
    with pytest.raises(UserError) as err:
        build("DEFAULT")
    assert "local file" in str(err.value) and "weights: none" in str(err.value)
    assert time.monotonic() - start < 10
