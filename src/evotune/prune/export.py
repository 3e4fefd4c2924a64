"""Export one front member as a physically smaller model: the frozen backbone plus a
head holding only the kept rows and columns (not a masked full-size head).

The file is one .safetensors with every tensor of the network and, in its header, the
spec to rebuild it (`load_pruned`). Export retrains the member exactly as the search
did (same seed), checks that the pruned model predicts what the masked full-size head
predicts, and measures parameters, latency per batch and test accuracy.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import statistics
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evotune.engine.state import atomic_write_json
from evotune.errors import UserError
from evotune.models import ModelConfig, TransferNet
from evotune.models.assemble import assemble
from evotune.models.checkpoint import portable_config, write_safetensors
from evotune.train.maskedhead import Head
from evotune.train.popheads import train_heads

FORMAT = "evotune-pruned"
LATENCY_BATCH = 32


class PrunedHead(nn.Module):
    """features[:, inputs] -> Linear(d, h, no bias) -> ReLU -> Linear(h, C)."""

    def __init__(self, n_inputs: int, n_hidden: int, n_classes: int) -> None:
        super().__init__()
        self.register_buffer("inputs", torch.zeros(n_inputs, dtype=torch.long))
        with warnings.catch_warnings():  # a head may keep nothing: 0-sized layers are fine
            warnings.filterwarnings("ignore", "Initializing zero-element tensors")
            self.fc1 = nn.Linear(n_inputs, n_hidden, bias=False)
            self.fc2 = nn.Linear(n_hidden, n_classes)

    @classmethod
    def from_head(cls, head: Head) -> PrunedHead:
        module = cls(len(head.inputs), len(head.hidden), len(head.b2))
        with torch.no_grad():
            module.inputs.copy_(head.inputs.cpu())
            module.fc1.weight.copy_(head.w1.t().cpu())
            module.fc2.weight.copy_(head.w2.t().cpu())
            module.fc2.bias.copy_(head.b2.cpu())
        return module

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(features[:, self.inputs])))


def masked_dense(head: Head, n_features: int, hidden: int) -> nn.Module:
    """The same head at full size, masked: what the search's genome describes."""
    module = nn.Sequential(nn.Linear(n_features, hidden, bias=False), nn.ReLU())
    out = nn.Linear(hidden, len(head.b2))
    with torch.no_grad():
        w1 = torch.zeros(n_features, hidden)
        w1[head.inputs.cpu()[:, None], head.hidden.cpu()[None, :]] = head.w1.cpu()
        module[0].weight.copy_(w1.t())
        out.weight.zero_()
        out.weight[:, head.hidden.cpu()] = head.w2.t().cpu()
        out.bias.copy_(head.b2.cpu())
    return nn.Sequential(module, out).eval()


def export_member(
    task: Any, genome: np.ndarray, seed: int, path: Path, epochs: int | None, source: dict
) -> dict[str, Any]:
    if task.net is None:
        raise UserError("this prune task has no backbone to export")
    settings = task.settings
    if epochs is not None:
        settings = dataclasses.replace(settings, epochs=epochs)
    member = task.members(genome[None, :], np.array([seed]))
    f = task.feats
    head = train_heads(member, f.train_x, f.train_y, settings, f.n_classes)[0]
    net = copy.deepcopy(task.net).cpu().eval()
    net.head = PrunedHead.from_head(head)
    metrics = measure(net, head, task)
    meta = {"mask": task.space.to_json(genome), "seed": int(seed), "metrics": metrics, **source}
    save_pruned(net, path, meta)
    atomic_write_json(path.with_suffix(".json"), meta)
    return metrics


@torch.no_grad()
def measure(net: TransferNet, head: Head, task: Any) -> dict[str, Any]:
    """Sizes, agreement with the masked head, latency per batch, test accuracy."""
    f = task.feats
    x, y = (f.test_x, f.test_y) if f.test_x is not None else (f.val_x, f.val_y)
    x, y = x.cpu(), y.cpu()
    masked = masked_dense(head, f.n_features, task.fitness.hidden)
    pruned_logits, masked_logits = net.head(x), masked(x)
    images = task.images[:LATENCY_BATCH].cpu()
    full = net(images)  # the whole exported model, from images
    masked_full = masked(task.net.cpu().eval().features(images))
    batch = x[:LATENCY_BATCH]
    return {
        "head_params": _params(net.head),
        "masked_head_params": _params(masked),
        "backbone_params": _params(net) - _params(net.head),
        "same_predictions": bool(
            torch.equal(pruned_logits.argmax(1), masked_logits.argmax(1))
            and torch.equal(full.argmax(1), masked_full.argmax(1))
        ),
        "max_logit_difference": float((pruned_logits - masked_logits).abs().max()),
        "head_latency_ms": _latency(lambda: net.head(batch)),
        "masked_head_latency_ms": _latency(lambda: masked(batch)),
        "model_latency_ms": _latency(lambda: net(images)),
        "latency_batch": len(batch),
        "test_accuracy": float((pruned_logits.argmax(1) == y).double().mean()),
        "evaluated_on": "test" if f.test_x is not None else "validation",
    }


def _params(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _latency(call, repeats: int = 30) -> float:
    """Median milliseconds per call, after a warm-up."""
    for _ in range(3):
        call()
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        call()
        times.append(time.perf_counter() - began)
    return round(statistics.median(times) * 1000, 4)


def save_pruned(net: TransferNet, path: Path, meta: dict[str, Any]) -> None:
    """Every tensor of `net` (pruned head included) plus the spec, written atomically."""
    head: PrunedHead = net.head
    spec = {
        "format": FORMAT,
        "model": portable_config(net.config).model_dump(mode="json"),
        "input_shape": list(net.input_shape),
        "head": [len(head.inputs), head.fc1.out_features, head.fc2.out_features],
        "meta": meta,
    }
    write_safetensors(net, path, {FORMAT: json.dumps(spec)})


def load_pruned(path: Path) -> tuple[TransferNet, dict[str, Any]]:
    """Rebuild an exported model (backbone + pruned head) and its metadata."""
    from safetensors import safe_open
    from safetensors.torch import load_model

    with safe_open(str(path), framework="pt") as handle:
        header = handle.metadata() or {}
    if FORMAT not in header:
        raise UserError(f"{path} is not a model exported by the prune task")
    spec = json.loads(header[FORMAT])
    d, h, c = spec["head"]
    net = assemble(ModelConfig.model_validate(spec["model"]), tuple(spec["input_shape"]), c)
    net.head = PrunedHead(d, h, c)
    load_model(net, str(path), strict=True)
    return net.eval(), spec["meta"]
