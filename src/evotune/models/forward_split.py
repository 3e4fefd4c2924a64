"""Cut a user's network (`python:` backbones) into stages: what runs before its classifier.

The network is the user's code, so evotune cannot assume its forward is a chain of its
children (a CIFAR ResNet applies `relu(bn1(conv1(x)))`, then its layers, then a pool
and a flatten, as functions). Two ways, the first that works:

1. **torch.fx.** The top-level forward is traced symbolically: `nn.Sequential`s are
   opened (their children become calls of the graph), every other submodule is one
   opaque call. The graph ends at the classifier's input. It may be cut after a node
   whose tensor is then the only value still needed (a residual block is one call, so
   its skip connection is inside it); the pieces between cuts are grouped by block
   (`layer2.3`), functional glue (a ReLU, a pool) joins the stage before it, leading
   childless modules (`conv1`, `bn1`) form the stem, and the parameter-free tail (pool,
   flatten) is a `final` stage that truncation drops. Each stage is an
   `fx.GraphModule` holding the original modules at their original paths.
2. **The model's own forward**, stopped when the classifier is called (its input is
   the features): right for any forward, but one stage, so no frozen-prefix cache and
   no truncate/se_blocks. Used when fx cannot trace the forward (Python control flow
   on tensor values, ...), when the forward depends on `self.training`, when no cut
   point exists, or when the stages do not reproduce the forward on a dry batch.

Either way, genes come from the module tree, not from the cut: `gene_labels` names
every module that owns parameters by its path in the user's model (`layer2.3.conv1`),
its block (`layer2.3`: a child of a top-level child, or a childless top-level child)
and its stage (`layer2`: the top-level child).
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import fx, nn

from evotune.models.stages import Backbone, BackboneStage


class FeaturesReached(Exception):
    """Raised by `Capture` to stop a forward at the classifier, carrying its input."""

    def __init__(self, features: torch.Tensor) -> None:
        super().__init__("the classifier's input")
        self.features = features


class Capture(nn.Module):
    """Stands in for the removed classifier: stops the forward with its input."""

    def forward(self, x: torch.Tensor, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise FeaturesReached(x)


class WholeModel(nn.Module):
    """The model's own forward up to its classifier (replaced by a `Capture`)."""

    gene_root = "model"  # leaf genes are named by their path inside the user's model

    def __init__(self, model: nn.Module, labels: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self.model = model
        self.gene_labels = labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        try:
            self.model(x)
        except FeaturesReached as reached:
            return reached.features
        raise RuntimeError(
            f"{type(self.model).__name__}.forward returned without calling its classifier"
        )


class Segment(nn.Module):
    """A stage cut by fx: a GraphModule holding the original modules at their paths."""

    gene_root = "model"

    def __init__(self, graph: fx.GraphModule, labels: dict[str, tuple[str, str]]) -> None:
        super().__init__()
        self.model = graph
        self.gene_labels = labels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def replace_module(model: nn.Module, path: str, new: nn.Module) -> None:
    parent, _, name = path.rpartition(".")
    setattr(model.get_submodule(parent) if parent else model, name, new)


def split_forward(model: nn.Module, classifier: str, x: torch.Tensor, label: str) -> Backbone:
    """`model` (eval mode, classifier at `classifier`) cut into stages for inputs like
    `x`; the classifier is replaced by a `Capture`. `label` names the model in notes."""
    replace_module(model, classifier, Capture())
    tree = ModuleTree(model)
    try:
        stages = _fx_stages(model, classifier, x, tree)
    except CannotSplit as why:
        note = (
            f"{label}: one stage (the model's own forward, stopped at its classifier): "
            f"{why}; no frozen-prefix cache, truncate or se_blocks"
        )
        whole = WholeModel(model, tree.labels(model, "model."))
        stage = BackboneStage("model", "model", "block", whole)
        return Backbone([stage], in_channels=x.shape[1], min_size=1, surgery=False, notes=[note])
    names = ", ".join(s.name for s in stages[:3]) + (", ..." if len(stages) > 3 else "")
    note = f"{label}: cut into {len(stages)} stages by torch.fx ({names})"
    return Backbone(stages, in_channels=x.shape[1], min_size=1, notes=[note])


class CannotSplit(Exception):
    """Why a forward cannot be cut into stages (the fallback says so in a note)."""


class ModuleTree:
    """Block and stage labels of module paths in the user's model."""

    def __init__(self, model: nn.Module) -> None:
        self.containers = {n for n, c in model.named_children() if next(c.children(), None)}

    def in_container(self, path: str) -> bool:
        return path.split(".")[0] in self.containers

    def block(self, path: str) -> str:
        parts = path.split(".")
        return ".".join(parts[:2]) if parts[0] in self.containers else parts[0]

    def labels(self, root: nn.Module, prefix: str) -> dict[str, tuple[str, str]]:
        """(block, stage) of every module of `root` owning parameters, keyed by its
        name in the stage (`prefix` + its path, which is its path in the model)."""
        out = {}
        for path, module in root.named_modules():
            if next(module.parameters(recurse=False), None) is not None:
                key = (prefix + path).rstrip(".")
                out[key] = (self.block(path), path.split(".")[0]) if path else ("model", "model")
        return out


class _Tracer(fx.Tracer):
    """Opens nn.Sequentials and the classifier's ancestors; every other module is a call."""

    def __init__(self, classifier: str) -> None:
        super().__init__()
        parts = classifier.split(".")
        self.classifier = classifier
        self.ancestors = {".".join(parts[:i]) for i in range(1, len(parts))}

    def is_leaf_module(self, m: nn.Module, module_qualified_name: str) -> bool:
        if module_qualified_name == self.classifier:
            return True
        if module_qualified_name in self.ancestors:
            return False
        return type(m) is not nn.Sequential


def _trace(model: nn.Module, classifier: str) -> fx.Graph:
    """The forward's graph (in train and eval mode: they must agree, since a stage cannot
    follow a top-level `if self.training:` once traced)."""
    graphs = []
    for training in (True, False):
        model.train(training)
        try:
            graphs.append(_Tracer(classifier).trace(model, concrete_args=_defaults(model)))
        except Exception as err:  # noqa: BLE001 - any tracing failure means: fall back
            first = (str(err).strip().splitlines() or [""])[0]
            raise CannotSplit(
                f"torch.fx cannot trace its forward ({type(err).__name__}: {first})"
            ) from None
    model.eval()
    if str(graphs[0]) != str(graphs[1]):
        raise CannotSplit("its forward depends on self.training")
    return graphs[1]


def _defaults(model: nn.Module) -> dict[str, Any]:
    """forward's optional arguments, fixed at their defaults (the input is the first)."""
    params = list(inspect.signature(model.forward).parameters.values())[1:]
    return {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}


def _end_at_classifier(graph: fx.Graph, classifier: str) -> fx.Node:
    """Make the classifier's input the graph's output; drop what only led past it."""
    calls = [n for n in graph.nodes if n.op == "call_module" and n.target == classifier]
    if len(calls) != 1 or len(calls[0].args) != 1 or calls[0].kwargs:
        raise CannotSplit(f"the classifier {classifier!r} is not called once on one input")
    features = calls[0].args[0]
    if not isinstance(features, fx.Node):
        raise CannotSplit(f"the classifier {classifier!r} gets no traced tensor")
    output = next(n for n in graph.nodes if n.op == "output")
    output.args = (features,)
    graph.eliminate_dead_code()
    inputs = [n for n in graph.nodes if n.op == "placeholder"]
    if any(n.users for n in inputs[1:]):
        raise CannotSplit("its forward uses arguments besides the input")
    return inputs[0]


@dataclass
class _Piece:
    nodes: list[fx.Node]
    units: list[str] = field(default_factory=list)  # blocks of its modules with weights


def _fx_stages(
    model: nn.Module, classifier: str, x: torch.Tensor, tree: ModuleTree
) -> list[BackboneStage]:
    whole = fx.GraphModule(model, _trace(model, classifier))
    first = _end_at_classifier(whole.graph, classifier)
    whole.recompile()
    nodes = [n for n in whole.graph.nodes if n.op not in ("placeholder", "get_attr", "output")]
    tensors = _tensor_nodes(whole, x)
    pieces = [_Piece(p, _units(p, model, tree)) for p in _cut(first, nodes, tensors)]
    groups = _group(pieces, tree)
    while True:
        if sum(kind == "block" for kind, _ in groups) < 1:
            raise CannotSplit("its forward has no cut point between blocks (one tensor alive)")
        stages = _build(model, first, groups, tree)
        changed = _check_stages(model, stages, x)
        if changed is None:
            return stages
        # a stage that changes its input in place (an in-place ReLU after a block) would
        # corrupt the cached output of the stage before it: run the two as one
        if changed == 0:
            raise CannotSplit(f"its first stage {stages[0].name!r} changes its input in place")
        _join_previous(groups, changed)


def _join_previous(groups: list[tuple[str, _Piece]], index: int) -> None:
    """Run stage `index` as part of the stage before it (which keeps its kind)."""
    (kind, before), (_, after) = groups[index - 1], groups[index]
    groups[index - 1 : index + 1] = [
        (kind, _Piece(before.nodes + after.nodes, before.units + after.units))
    ]


def _tensor_nodes(module: fx.GraphModule, x: torch.Tensor) -> set[fx.Node]:
    """The nodes whose value is a tensor, from a dry run."""
    found: set[fx.Node] = set()

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node) -> Any:
            result = super().run_node(n)
            if isinstance(result, torch.Tensor):
                found.add(n)
            return result

    with torch.no_grad():
        Recorder(module).run(x)
    return found


def _cut(first: fx.Node, nodes: list[fx.Node], tensors: set[fx.Node]) -> list[list[fx.Node]]:
    """Split `nodes` after each node whose tensor is then the only live value."""
    pos = {n: i for i, n in enumerate(nodes)}
    pos[first] = -1
    alive = [0] * (len(nodes) + 1)
    for node in [first, *nodes]:
        last = max((pos.get(u, len(nodes)) for u in node.users), default=pos[node])
        for i in range(pos[node] + 1, last + 1):  # alive between its birth and last use
            alive[i] += 1
    pieces, current = [], []
    for i, node in enumerate(nodes):
        current.append(node)
        # after node i, live values are those alive at i + 1 that were born at <= i
        if node in tensors and node.users and alive[i + 1] == 1:
            pieces.append(current)
            current = []
    return pieces + ([current] if current else [])


def _units(nodes: list[fx.Node], model: nn.Module, tree: ModuleTree) -> list[str]:
    units: list[str] = []
    for node in nodes:
        owners = [node] if node.op == "call_module" else []
        owners += [a for a in node.all_input_nodes if a.op == "get_attr"]
        for owner in owners:
            unit = tree.block(_module_path(owner)) if _module_path(owner) else "model"
            if _has_weights(model, owner) and unit not in units:
                units.append(unit)
    return units


def _module_path(node: fx.Node) -> str:
    """The module a node calls, or for a parameter used directly (get_attr), its owner."""
    target = str(node.target)
    return target if node.op == "call_module" else target.rpartition(".")[0]


def _has_weights(model: nn.Module, node: fx.Node) -> bool:
    if node.op == "call_module":
        return next(model.get_submodule(str(node.target)).parameters(), None) is not None
    path, _, name = str(node.target).rpartition(".")
    owner = model.get_submodule(path) if path else model
    return isinstance(getattr(owner, name, None), nn.Parameter)


def _group(pieces: list[_Piece], tree: ModuleTree) -> list[tuple[str, _Piece]]:
    """(kind, piece) stages: weightless pieces join the stage before (the tail is
    `final`), pieces of one block join, childless leading modules form the stem."""
    weighted = [i for i, p in enumerate(pieces) if p.units]
    if not weighted:
        return []
    tail = pieces[weighted[-1] + 1 :]
    merged: list[_Piece] = []
    pending: list[fx.Node] = []
    for piece in pieces[: weighted[-1] + 1]:
        if not piece.units and merged:
            merged[-1].nodes += piece.nodes
        elif not piece.units:
            pending += piece.nodes  # glue before the first weights: into the first stage
        elif merged and piece.units[0] == merged[-1].units[-1]:
            merged[-1].nodes += piece.nodes
            merged[-1].units += piece.units[1:]
        else:
            merged.append(_Piece(pending + piece.nodes, list(piece.units)))
            pending = []
    stem = _stem_size(merged, tree)
    head = _Piece(
        sum((p.nodes for p in merged[:stem]), []), sum((p.units for p in merged[:stem]), [])
    )
    out = [("stem", head)] + [("block", p) for p in merged[stem:]]
    if tail:
        out.append(("final", _Piece(sum((p.nodes for p in tail), []))))
    return out


def _stem_size(merged: list[_Piece], tree: ModuleTree) -> int:
    """How many leading stages hold only childless top-level modules (conv1, bn1): they
    form the stem, unless nothing but such modules follows (a flat chain of layers)."""
    flat = 0
    while flat < len(merged) and not any(tree.in_container(u) for u in merged[flat].units):
        flat += 1
    return flat if 0 < flat < len(merged) else 1


def _build(
    model: nn.Module, first: fx.Node, groups: list[tuple[str, _Piece]], tree: ModuleTree
) -> list[BackboneStage]:
    stages: list[BackboneStage] = []
    source = first
    for kind, piece in groups:
        module = fx.GraphModule(model, _subgraph(source, piece.nodes), class_name="Segment")
        name = _stage_name(kind, piece.units, {s.name for s in stages})
        group = kind if kind != "block" else piece.units[0].split(".")[0]
        stages.append(
            BackboneStage(name, group, kind, Segment(module, tree.labels(module, "model.")))
        )
        source = piece.nodes[-1]
    return stages


def _subgraph(source: fx.Node, nodes: list[fx.Node]) -> fx.Graph:
    """A graph taking `source`'s value and running `nodes` (constants copied in)."""
    graph = fx.Graph()
    env: dict[fx.Node, fx.Node] = {source: graph.placeholder("x")}
    for node in nodes:
        for arg in node.all_input_nodes:
            if arg.op == "get_attr" and arg not in env:
                env[arg] = graph.node_copy(arg)
        env[node] = graph.node_copy(node, lambda a: env[a])
    graph.output(env[nodes[-1]])
    return graph


def _stage_name(kind: str, units: list[str], taken: set[str]) -> str:
    if kind == "final" or (kind == "stem" and len(units) > 1):
        name = kind
    else:
        name = units[0] if len(units) == 1 else f"{units[0]}..{units[-1]}"
    while name in taken:  # a user's module may itself be called "stem" or "final"
        name += "_"
    return name


@torch.no_grad()
def _check_stages(model: nn.Module, stages: list[BackboneStage], x: torch.Tensor) -> int | None:
    """The index of the first stage that changes its input in place (the prefix cache
    keeps that input), else None once the stages, run in order, give what the model's
    own forward gives its classifier (CannotSplit if they do not)."""
    if x.device.type == "meta":
        return None  # nothing to compare: counting genes only
    batch = torch.randn(2, *x.shape[1:], generator=torch.Generator().manual_seed(0)).to(x.device)
    expected = WholeModel(model, {})(batch)
    h = batch
    for index, stage in enumerate(stages):
        version = h._version  # counts in-place writes, even those that change no value
        out = stage.module(h)
        if h._version != version:
            return index
        if not isinstance(out, torch.Tensor):
            raise CannotSplit(f"stage {stage.name!r} returns a {type(out).__name__}")
        h = out
    if h.shape != expected.shape or not torch.allclose(h, expected, rtol=1e-4, atol=1e-5):
        raise CannotSplit("its stages, run in order, do not reproduce its forward")
    return None
