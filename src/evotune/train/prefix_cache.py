"""Frozen-prefix activation cache.

Stages before a genome's first trainable one compute the same activations in every
epoch and for every genome that shares that prefix (frozen weights, inference-mode
batch-norm). They are computed once per cut point, kept under a memory budget (in half
precision when full precision does not fit), and training starts from them.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from evotune.models import TransferNet


class Suffix(nn.Module):
    """The part of a TransferNet after stage `start`: stages[start:], pool, head."""

    def __init__(self, net: TransferNet, start: int) -> None:
        super().__init__()
        self.net, self.start = net, start

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        h = h.float()  # the cache may hold half precision
        return self.net.head(self.net.pool(self.net.forward_stages(h, self.start)))


class PrefixCache:
    """Activations after the first `k` stages of a frozen template, for train and val
    inputs, least recently used first out when the budget is exceeded."""

    def __init__(
        self, template: TransferNet, inputs: dict[str, torch.Tensor], budget_bytes: float
    ) -> None:
        self.template, self.inputs, self.budget = template, inputs, budget_bytes
        self.entries: OrderedDict[int, dict[str, torch.Tensor]] = OrderedDict()
        self.hits = self.misses = 0

    def get(self, stage: int) -> dict[str, torch.Tensor] | None:
        """Activations after `stage` stages (None when they cannot fit the budget)."""
        if stage in self.entries:
            self.entries.move_to_end(stage)
            self.hits += 1
            return self.entries[stage]
        self.misses += 1
        entry = self._compute(stage)
        if entry is None:
            return None
        self.entries[stage] = entry
        while self._used() > self.budget and len(self.entries) > 1:
            self.entries.popitem(last=False)
        return entry

    def _used(self) -> int:
        return sum(t.numel() * t.element_size() for e in self.entries.values() for t in e.values())

    @torch.no_grad()
    def _compute(self, stage: int, chunk: int = 512) -> dict[str, torch.Tensor] | None:
        self.template.eval()
        out: dict[str, torch.Tensor] = {}
        for name, x in self.inputs.items():
            parts = [
                self.template.forward_stages(self.template.adapter(x[i : i + chunk]), 0, stage)
                for i in range(0, len(x), chunk)
            ]
            out[name] = torch.cat(parts)
        size = sum(t.numel() * t.element_size() for t in out.values())
        if size <= self.budget:
            return out
        if size / 2 <= self.budget:  # half precision: twice the examples in the budget
            return {k: v.half() for k, v in out.items()}
        return None
