"""The loaded dataset: train/validation/(test) splits, plus class names.

A split is what training reads: (x, y) batches for an order of example indices
(`Batches`). `Split` holds its inputs as one tensor; `stream.StreamedSplit` reads them
from disk batch by batch (`data.in_memory`), with the same batches for the same order.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import torch

if TYPE_CHECKING:
    from evotune.data.stream import StreamedSplit


class Batches(Protocol):
    """Labelled examples read in batches: a `Split`, a `StreamedSplit`, or cached
    activations. `y` holds every label, on the device the batches go to."""

    y: torch.Tensor

    def __len__(self) -> int: ...

    def batches(
        self, order: torch.Tensor | None, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]: ...


@dataclass
class Split:
    """One split in memory. x: float32 (N, C, H, W) (images in [0, 1], spectrograms in
    dB); y: int64 (N,) labels 0..k-1; groups: the `split.group_by` value per example."""

    x: torch.Tensor
    y: torch.Tensor
    groups: list[str] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def counts(self, n_classes: int) -> list[int]:
        """Examples per label, 0..n_classes-1."""
        return torch.bincount(self.y.cpu(), minlength=n_classes).tolist()

    def to(self, device: torch.device | str) -> Split:
        return Split(self.x.to(device), self.y.to(device), self.groups)

    def batches(
        self, order: torch.Tensor | None, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) for each run of `batch_size` indices of `order` (None: 0..n-1). Each
        batch is gathered into a new tensor, as a streamed batch is stacked, and sent to
        the labels' device (x may stay on the CPU, e.g. memory-mapped activations)."""
        n = len(self)
        index = torch.arange(n) if order is None else order
        index = index.to(self.x.device)
        for start in range(0, len(index), batch_size):
            rows = index[start : start + batch_size]
            x = _gather(self.x, rows, pinned=self.y.device.type == "cuda")
            yield (
                x.to(self.y.device, non_blocking=True),
                self.y.index_select(0, rows.to(self.y.device)),
            )


def _gather(x: torch.Tensor, rows: torch.Tensor, pinned: bool) -> torch.Tensor:
    """x[rows] in a new tensor; in pinned memory when it goes from the host to a GPU
    (the copy then runs asynchronously, beside the computation of the last batch)."""
    if not pinned or x.device.type != "cpu":
        return x.index_select(0, rows)
    out = torch.empty((len(rows), *x.shape[1:]), dtype=x.dtype, pin_memory=True)
    return torch.index_select(x, 0, rows, out=out)


@dataclass
class Dataset:
    """What `load_data` returns. Tasks move the splits to their device (`split.to`)."""

    train: Split | StreamedSplit
    val: Split | StreamedSplit
    test: Split | StreamedSplit | None
    classes: list[str]  # class names; index = label
    input_shape: tuple[int, int, int]  # (C, H, W)
    notes: list[str]  # things the user should hear about, e.g. skipped files

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> dict[str, Split | StreamedSplit]:
        named = {"train": self.train, "val": self.val}
        return named if self.test is None else {**named, "test": self.test}

    def describe(self) -> dict[str, Any]:
        """Counts per split and class, input shape and classes, as plain JSON values."""
        k = self.num_classes
        return {
            "classes": list(self.classes),
            "input_shape": list(self.input_shape),
            "splits": {
                name: {
                    "examples": len(split),
                    "per_class": dict(zip(self.classes, split.counts(k))),
                }
                for name, split in self.splits().items()
            },
            "notes": list(self.notes),
        }
