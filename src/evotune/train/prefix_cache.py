"""Frozen-prefix activation cache.

Stages before a genome's first trainable one compute the same activations in every
epoch and for every genome that shares that prefix (frozen weights, inference-mode
batch-norm). They are computed once per cut point and training starts from them.
Entries live in memory up to a budget (`fitness.cache_gb`, least recently used out
first); an entry larger than the whole budget spills to a memory-mapped file under the
cache directory instead, in full precision like the others, so a cached run trains on
exactly the activations an uncached one computes. The file is unlinked as soon as it
is mapped: the disk space comes back when the entry is dropped, even from a killed run.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from evotune.data.dataset import Batches, Split
from evotune.models import TransferNet
from evotune.paths import cache_dir

DISK_MARGIN = 2**30  # a spill leaves at least this much (and 5% of the disk) free


class Suffix(nn.Module):
    """The part of a TransferNet after stage `start`: stages[start:], pool, head."""

    def __init__(self, net: TransferNet, start: int) -> None:
        super().__init__()
        self.net, self.start = net, start

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net.head(self.net.pool(self.net.forward_stages(h, self.start)))


@dataclass
class _Entry:
    splits: dict[str, Split]  # activations (x) and labels (y) of each input split
    nbytes: int
    spilled: bool  # x is a memory-mapped file, not memory


class PrefixCache:
    """Activations after the first `k` stages of a frozen template, for each of its
    input splits (train, val), computed batch by batch (`chunk` examples at a time)."""

    def __init__(
        self,
        template: TransferNet,
        inputs: dict[str, Batches],
        budget_bytes: float,
        chunk: int = 512,
        spill_dir: Path | None = None,
    ) -> None:
        self.template, self.inputs, self.budget = template, inputs, budget_bytes
        self.chunk, self.spill_dir = chunk, spill_dir
        self.entries: OrderedDict[int, _Entry] = OrderedDict()
        self.hits = self.misses = self.spills = 0

    def __getstate__(self) -> dict:
        # Shipped to other processes (Ray) empty: entries may be mapped files.
        return {**self.__dict__, "entries": OrderedDict()}

    def get(self, stage: int) -> dict[str, Split] | None:
        """Activations after `stage` stages as splits (None when neither memory nor the
        disk has room for them)."""
        if stage in self.entries:
            self.entries.move_to_end(stage)
            self.hits += 1
            return self.entries[stage].splits
        self.misses += 1
        entry = self._compute(stage)
        if entry is None:
            return None
        self.entries[stage] = entry
        return entry.splits

    def used(self, spilled: bool = False) -> int:
        """Bytes of the entries in memory (or, `spilled`, in files)."""
        return sum(e.nbytes for e in self.entries.values() if e.spilled == spilled)

    @torch.no_grad()
    def _compute(self, stage: int) -> _Entry | None:
        self.template.eval()
        total = sum(len(split) for split in self.inputs.values())
        stores: dict[str, torch.Tensor] = {}
        where: str | None = None
        nbytes = 0
        for name, split in self.inputs.items():
            for start, (x, _) in zip(
                range(0, len(split), self.chunk), split.batches(None, self.chunk)
            ):
                h = self.template.forward_stages(self.template.adapter(x), 0, stage)
                if where is None:  # the first batch tells the size of the whole entry
                    nbytes = total * h[0].numel() * h.element_size()
                    where = self._make_room(nbytes)
                    if where is None:
                        return None
                if name not in stores:
                    stores[name] = self._allocate(where, (len(split), *h.shape[1:]), h)
                stores[name][start : start + len(h)] = h
        splits = {name: Split(stores[name], split.y) for name, split in self.inputs.items()}
        return _Entry(splits, nbytes, spilled=where == "disk")

    def _make_room(self, nbytes: int) -> str | None:
        """'memory' or 'disk' for a new entry of `nbytes`, after dropping least recently
        used entries of that kind; None when it fits neither."""
        if nbytes <= self.budget:
            self._drop_until(lambda: self.used() + nbytes <= self.budget, spilled=False)
            return "memory"
        if self.spill_dir is None:
            self.spill_dir = cache_dir("activations")
        self._drop_until(lambda: _disk_room(self.spill_dir) >= nbytes, spilled=True)
        return "disk" if _disk_room(self.spill_dir) >= nbytes else None

    def _drop_until(self, enough, spilled: bool) -> None:
        for stage in [s for s, e in self.entries.items() if e.spilled == spilled]:
            if enough():
                return
            del self.entries[stage]  # its memory (or file) goes with the last reference

    def _allocate(self, where: str, shape: tuple[int, ...], like: torch.Tensor) -> torch.Tensor:
        if where == "memory" or shape[0] == 0:
            return torch.empty(shape, dtype=like.dtype, device=like.device)
        self.spills += 1
        return _mapped(self.spill_dir, shape, like.dtype)


def _mapped(folder: Path, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """A CPU tensor backed by a new file in `folder`, unlinked at once."""
    path = folder / f"prefix-{os.getpid()}-{secrets.token_hex(6)}.bin"
    numpy_dtype = torch.empty(0, dtype=dtype).numpy().dtype
    array = np.memmap(path, dtype=numpy_dtype, mode="w+", shape=shape)
    path.unlink()  # the mapping keeps the data; the space is freed with it
    return torch.from_numpy(array)


def _disk_room(folder: Path) -> int:
    usage = shutil.disk_usage(folder)
    return usage.free - max(DISK_MARGIN, usage.total // 20)
