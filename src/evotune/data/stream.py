"""Examples read from disk batch by batch, for data larger than memory (`data.in_memory`).

A source that streams hands over `FileInputs` (one file per example and how to read it)
instead of a decoded array; `load_data` turns them into a `StreamedSplit`, which yields
the same (x, y) batches as an in-memory `Split` for the same index order: each example
is read by the very function the in-memory path decodes it with, and batches are
stacked into fresh tensors as an in-memory split's are gathered, so training gives the
same numbers either way. Reading runs in DataLoader worker processes, with pinned
memory when the batches go to a GPU.
"""

from __future__ import annotations

import ctypes
import functools
import os
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from torch.utils.data import Dataset as TorchDataset

from evotune.errors import UserError


class FileInputs:
    """Examples kept on disk: `paths[i]` is read into a float32 array of `item_shape`.
    Subclasses say how (`read`); `subset` keeps some of them, as indexing an array does."""

    def __init__(self, paths: list[Path], item_shape: tuple[int, ...]) -> None:
        self.paths, self.item_shape = list(paths), tuple(item_shape)

    def __len__(self) -> int:
        return len(self.paths)

    @property
    def shape(self) -> tuple[int, ...]:
        """(examples, *item_shape), as the decoded array would have."""
        return (len(self), *self.item_shape)

    @property
    def nbytes(self) -> int:
        """Bytes of the decoded float32 array."""
        return 4 * int(np.prod(self.shape))

    def read(self, i: int) -> np.ndarray:
        """Example i as float32 `item_shape`; raises on a file that cannot be read."""
        raise NotImplementedError

    def subset(self, rows: np.ndarray) -> FileInputs:
        """The examples at `rows` (an int array), in that order."""
        raise NotImplementedError

    def decode_all(self) -> np.ndarray:
        """Every example, decoded into one array (the in-memory fallback)."""
        out = np.empty(self.shape, dtype=np.float32)
        for i in range(len(self)):
            out[i] = _read_or_fail(self, i)
        return out


def streams(in_memory: str | bool, memory_gb: float, n: int, item_shape: tuple[int, ...]) -> bool:
    """Whether a source should keep `n` examples of `item_shape` on disk."""
    if in_memory == "auto":
        return decoded_bytes(n, item_shape) > memory_gb * 2**30
    return not in_memory


def decoded_bytes(n: int, item_shape: tuple[int, ...]) -> int:
    return 4 * n * int(np.prod(item_shape))


def default_workers() -> int:
    """CPUs - 1, at most 8: one core stays with the training process."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min((cpus or 1) - 1, 8))


class StreamedSplit:
    """A split whose inputs stay on disk; labels are in memory (on the training device).

    `batches(order, batch_size)` reads the examples of each batch of `order` through a
    DataLoader (the order is the caller's: training draws it from its own generator)."""

    def __init__(
        self,
        files: FileInputs,
        y: torch.Tensor,
        groups: list[str] | None = None,
        workers: int | None = None,
        device: torch.device | str = "cpu",
    ) -> None:
        self.files, self.y, self.groups = files, y, groups
        self.workers = default_workers() if workers is None else workers
        self.device = torch.device(device)

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def counts(self, n_classes: int) -> list[int]:
        """Examples per label, 0..n_classes-1."""
        return torch.bincount(self.y.cpu(), minlength=n_classes).tolist()

    def to(self, device: torch.device | str) -> StreamedSplit:
        """The same files, with labels on `device` and batches sent there."""
        return StreamedSplit(self.files, self.y.to(device), self.groups, self.workers, device)

    def batches(
        self, order: torch.Tensor | None, batch_size: int
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(x, y) for each run of `batch_size` indices of `order` (None: 0..n-1)."""
        index = torch.arange(len(self)) if order is None else order.cpu()
        chunks = [index[s : s + batch_size] for s in range(0, len(index), batch_size)]
        loader = DataLoader(
            _Reader(self.files),
            batch_sampler=[chunk.tolist() for chunk in chunks],
            num_workers=min(self.workers, len(chunks)),
            collate_fn=_stack,
            pin_memory=self.device.type == "cuda",
        )
        if loader.num_workers:
            release_freed_memory()
        for (x, problem), chunk in zip(loader, chunks):
            if problem is not None:
                raise UserError(
                    f"{problem}; found while streaming data from disk (data.in_memory): "
                    "remove the file, or load in memory with data.on_error: skip"
                )
            yield x.to(self.device, non_blocking=True), self.y[chunk.to(self.y.device)]


def release_freed_memory() -> None:
    """Give the heap's free pages back to the system before workers fork: a worker
    shares the trainer's pages, so each page the trainer then reuses (activations of
    the next batches) would be copied and kept for the whole pass (measured: +0.8 GB
    with ResNet-18 at 224 x 224). glibc only; elsewhere nothing to do."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018 - glibc has it, musl and macOS do not
    except (OSError, AttributeError):
        return None
    return libc


class _Reader(TorchDataset):
    """Example i, or the reason it could not be read (raised in the training process)."""

    def __init__(self, files: FileInputs) -> None:
        self.files = files

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> tuple[np.ndarray | None, str | None]:
        try:
            return self.files.read(i), None
        except Exception as err:  # noqa: BLE001 - PIL and audio decoders raise many types
            return None, f"{self.files.paths[i]}: unreadable ({err})"


def _stack(
    items: list[tuple[np.ndarray | None, str | None]],
) -> tuple[torch.Tensor | None, str | None]:
    problems = [problem for _, problem in items if problem is not None]
    if problems:
        return None, problems[0]
    # torch.stack: a fresh torch allocation, like an in-memory split's gathered batch
    return torch.stack([torch.from_numpy(array) for array, _ in items]), None


def _read_or_fail(files: FileInputs, i: int) -> np.ndarray:
    array, problem = _Reader(files)[i]
    if problem is not None:
        raise UserError(problem)
    return array
