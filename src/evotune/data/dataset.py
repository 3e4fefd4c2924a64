"""The loaded dataset: train/validation/(test) splits as CPU tensors, plus class names."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch


@dataclass
class Split:
    """One split. x: float32 (N, C, H, W) (images in [0, 1], spectrograms in dB);
    y: int64 (N,) labels 0..k-1; groups: the `split.group_by` value per example."""

    x: torch.Tensor
    y: torch.Tensor
    groups: list[str] | None = None

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def counts(self, n_classes: int) -> list[int]:
        """Examples per label, 0..n_classes-1."""
        return torch.bincount(self.y, minlength=n_classes).tolist()


@dataclass
class Dataset:
    """What `load_data` returns. Tasks move the tensors to their device."""

    train: Split
    val: Split
    test: Split | None
    classes: list[str]  # class names; index = label
    input_shape: tuple[int, int, int]  # (C, H, W)
    notes: list[str]  # things the user should hear about, e.g. skipped files

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def splits(self) -> dict[str, Split]:
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
