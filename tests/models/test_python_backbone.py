"""python:MODULE:FACTORY backbones: a user's own model file and checkpoint, cut into genes
and stages, and every way the user's input can be wrong (fixtures in conftest.py)."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from evotune.errors import UserError
from evotune.models import ModelConfig, gene_listing
from evotune.models.derive import derive

RAW = {"channels": "keep", "normalize": "none"}  # the net sees exactly the test's input


def features_of(model, x):
    """What the user's model hands its classifier `fc`."""
    seen = {}
    handle = model.fc.register_forward_pre_hook(lambda m, args: seen.setdefault("x", args[0]))
    with torch.no_grad():
        model.eval()(x)
    handle.remove()
    return seen["x"]


def test_genes_are_named_from_the_module_tree(byo, build):
    _, prefix, _, _ = byo
    net = build(prefix + "tiny", (3, 8, 8), 3, **RAW)
    names = {g: [gene.name for gene in net.genes_for(g)] for g in ("leaf", "block", "stage")}
    assert names["stage"] == ["conv1", "bn1", "layer1", "layer2"]
    assert names["block"] == ["conv1", "bn1", "layer1.0", "layer1.1", "layer2.0", "layer2.1"]
    assert names["leaf"][:4] == ["conv1", "bn1", "layer1.0.conv", "layer1.0.bn"]
    # stages: the stem (conv1, bn1 and the functional ReLU), one per block, the pool
    assert net.stage_names == ["stem", "layer1.0", "layer1.1", "layer2.0", "layer2.1", "final"]
    assert net.stage_kinds[0] == "stem" and net.stage_kinds[-1] == "final"
    assert net.n_blocks == 4
    assert not any("fc" in n for n, _ in net.stages.named_parameters())  # classifier removed
    assert any("classifier 'fc' (Linear 8 -> 5; the last nn.Linear" in n for n in net.notes)


def test_wrapped_prefixed_checkpoint_loads_and_stages_reproduce_the_forward(byo, build):
    path, prefix, weights, state = byo
    net = build(prefix + "tiny", (3, 8, 8), 3, weights=str(weights), **RAW).eval()
    assert any("under 'state_dict', prefix 'module.' stripped" in n for n in net.notes)
    loaded = dict(net.named_parameters())["stages.1.model.layer1.0.conv.weight"]
    assert torch.equal(loaded, state["layer1.0.conv.weight"])
    # the stages in order give what the user's forward gives its classifier
    from evotune.models.python_kind import FactorySpec, get_factory

    user = get_factory(FactorySpec(str(path), "tiny"))()
    user.load_state_dict(state)
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(net.features(x), features_of(user, x), atol=1e-6)


def test_prefix_cache_and_truncation_work_as_for_the_zoo(byo, build):
    _, prefix, weights, _ = byo
    net = build(prefix + "tiny", (3, 8, 8), 3, weights=str(weights), **RAW)
    net.set_trainable([i >= 4 for i in range(len(net.genes))], adapter=False)  # layer2 trains
    start = net.frozen_prefix()
    assert start == 3  # stem, layer1.0, layer1.1
    x = torch.randn(6, 3, 8, 8)
    net.eval()
    with torch.no_grad():  # what the prefix cache stores, then the rest of the net
        cached = net.forward_stages(net.adapter(x), 0, start)
        rest = net.head(net.pool(net.forward_stages(cached, start)))
        assert torch.allclose(rest, net(x), atol=1e-6)
    short = derive(net, 3, keep=2, se_blocks=True, head_hidden=None, dropout=0.0)
    assert short.stage_names == ["stem", "layer1.0", "layer1.1", "se_layer1"]
    assert [g.name for g in short.genes] == ["conv1", "bn1", "layer1.0", "layer1.1"]


def test_dotted_module_and_factory_arguments(byo, build, monkeypatch):
    path, _, _, _ = byo
    monkeypatch.syspath_prepend(str(path.parent))
    net = build("python:user_models:tiny", (1, 8, 8), 3, args={"width": 4}, classifier="fc")
    assert net.feature_dim == 4
    assert any("classifier 'fc' (Linear 4 -> 5; model.classifier)" in n for n in net.notes)
    with pytest.raises(ValidationError, match="only python:"):
        ModelConfig(backbone="builtin:small_cnn", args={"width": 4})
    with pytest.raises(ValidationError, match="python:MODULE:FACTORY"):
        ModelConfig(backbone=f"python:{path}")


def test_a_forward_fx_cannot_trace_runs_as_one_stage(byo, build):
    _, prefix, _, _ = byo
    net = build(prefix + "branchy", (3, 8, 8), 2, **RAW)
    assert net.stage_names == ["model"] and [g.name for g in net.genes] == ["conv"]
    assert any("torch.fx cannot trace its forward" in n for n in net.notes)
    assert net(torch.randn(2, 3, 8, 8)).shape == (2, 2)
    with pytest.raises(UserError, match="does not support truncate"):
        build(prefix + "branchy", (3, 8, 8), 2, truncate=1, **RAW)


def test_a_stage_that_would_change_its_input_in_place_joins_the_one_before(byo, build):
    _, prefix, _, _ = byo
    net = build(prefix + "inplace_tail", (3, 8, 8), 2, **RAW)
    assert net.stage_names[-1] == "layer2.1"  # the ReLU and the pool run inside it
    assert net.n_blocks == 4


def test_cached_features_are_keyed_by_the_model_code_too(byo, build):
    import os

    from evotune.train.features import features_key

    path, prefix, weights, _ = byo
    net = build(prefix + "tiny", (3, 8, 8), 2, weights=str(weights), **RAW)
    inputs = {"x": torch.ones(2, 3, 8, 8)}
    before = features_key(net, inputs)
    path.write_text(path.read_text() + "\n# the forward changed\n")
    os.utime(path, ns=(1, 1))  # another version of the file, whatever the clock
    assert features_key(net, inputs) != before


def test_models_command_lists_the_genes(byo):
    _, prefix, _, _ = byo
    lines = gene_listing(prefix + "tiny", "leaf")
    assert lines[0].endswith("leaf 10  block 6  stage 4")
    assert any("layer2.1.bn" in line for line in lines)


# -- bad input: one message naming the key or file and what was expected --------------


@pytest.mark.parametrize(
    ("factory", "options", "message"),
    [
        ("tiny", {"args": {"depth": 3}}, r"raised TypeError: .*depth.* model\.args \{'depth': 3\}"),
        ("broken", {}, r"raised RuntimeError: cannot build width 8 \(user_models.py:\d+\)"),
        ("not_a_model", {}, r"returned \{'weights': 1\} \(dict\); expected a torch.nn.Module"),
        ("tinny", {}, r"has no factory 'tinny' \(did you mean 'tiny'\?\)"),
        ("headless", {}, r"model.classifier: .*calls no nn.Linear.*model.classifier"),
        ("tiny", {"classifier": "head"}, r"model.classifier: .* has no module 'head'"),
    ],
)
def test_bad_factories(byo, build, factory, options, message):
    _, prefix, _, _ = byo
    with pytest.raises(UserError, match=message):
        build(prefix + factory, (3, 8, 8), 2, **RAW, **options)


def test_missing_module_file_and_module(build, tmp_path):
    with pytest.raises(UserError, match=r"python module file not found: nowhere/m.py"):
        build("python:nowhere/m.py:net")
    with pytest.raises(UserError, match=r"no module named 'no_such_pkg.models'"):
        build("python:no_such_pkg.models:net")
    bad = tmp_path / "bad.py"
    bad.write_text("import torch\ndef net(:\n")
    with pytest.raises(UserError, match=r"importing .*bad.py raised SyntaxError.*bad.py:2"):
        build(f"python:{bad}:net")


def test_a_checkpoint_that_is_not_a_state_dict(byo, build, tmp_path):
    _, prefix, _, _ = byo
    for name, content, message in [
        ("list.pth", [1, 2], "holds a list, not a state dict"),
        ("meta.pth", {"epoch": 3, "opt": {"lr": 0.1}}, r"found 'epoch' \(int\), 'opt' \(dict\)"),
    ]:
        torch.save(content, tmp_path / name)
        with pytest.raises(UserError, match=message):
            build(prefix + "tiny", (3, 8, 8), 2, weights=str(tmp_path / name), **RAW)
    with pytest.raises(UserError, match="takes none or a local weights file"):
        build(prefix + "tiny", (3, 8, 8), 2, weights="DEFAULT", **RAW)


def test_key_mismatches_are_errors_unless_not_strict(byo, build, tmp_path):
    _, prefix, _, state = byo
    renamed = {k.replace("layer2.1.", "layer2.9."): v for k, v in state.items()}
    path = tmp_path / "renamed.pt"
    torch.save({"model": renamed}, path)
    with pytest.raises(UserError) as err:
        build(prefix + "tiny", (3, 8, 8), 2, weights=str(path), **RAW)
    message = str(err.value)
    assert f"model.weights: {path} does not match python:" in message
    assert "missing keys (layer2.1.conv.weight, layer2.1.bn.weight" in message
    assert "unexpected keys (layer2.9.conv.weight" in message
    assert "model.strict: false" in message
    net = build(prefix + "tiny", (3, 8, 8), 2, weights=str(path), strict=False, **RAW)
    warning = next(n for n in net.notes if "WARNING" in n)
    assert "under 'model'" in warning and "missing keys (layer2.1.conv.weight" in warning
    loaded = dict(net.named_parameters())["stages.1.model.layer1.0.conv.weight"]
    assert torch.equal(loaded, state["layer1.0.conv.weight"])  # what matched is loaded
