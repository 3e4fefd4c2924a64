"""What a source hands to the loader before classes are subset and splits are made.

Sources work in numpy (cheap fancy indexing); only the finished splits become tensors.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from evotune.data.stream import FileInputs
from evotune.errors import UserError


@dataclass
class Examples:
    """A set of examples: inputs, label indices and optional per-example string fields.

    Subsets share `x` and only record which of its rows they hold, so splitting a large
    dataset in several steps copies the inputs once, at the end (`inputs()`). `x` is
    decoded (an array) or, for data that streams from disk, the files to read."""

    x: np.ndarray | FileInputs  # float32 (M, C, H, W), possibly shared with other subsets
    labels: np.ndarray  # int64 (N,), indices into the source's class list
    fields: dict[str, np.ndarray] = field(default_factory=dict)  # e.g. {"speaker": ...}
    rows: np.ndarray | None = None  # the rows of x these examples are; None: all of them

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(int(n) for n in self.x.shape[1:])

    def take(self, index: np.ndarray) -> Examples:
        """The examples at `index` (an int array or a boolean mask); x is not copied."""
        rows = np.arange(len(self.labels)) if self.rows is None else self.rows
        return Examples(
            x=self.x,
            labels=self.labels[index],
            fields={name: values[index] for name, values in self.fields.items()},
            rows=rows[index],
        )

    def inputs(self) -> np.ndarray | FileInputs:
        """x of these examples only (a copy unless they are all of x, in order)."""
        if self.rows is None:
            return self.x
        return self.x.subset(self.rows) if isinstance(self.x, FileInputs) else self.x[self.rows]


@dataclass
class Loaded:
    """A source's output: all its data, its class names, and its own test set if any."""

    data: Examples
    classes: list[str]
    origin: str  # what the data came from, for messages: a path or "sklearn digits"
    test: Examples | None = None
    test_origin: str | None = None  # e.g. "t10k files" or the test_path
    notes: list[str] = field(default_factory=list)


class ErrorPolicy:
    """`on_error`: raise a UserError at the first bad file, or skip it and count it."""

    def __init__(self, skip: bool) -> None:
        self.skip = skip
        self.skipped: list[str] = []

    def bad_file(self, path: Path | str, problem: str) -> None:
        message = f"{path}: {problem}"
        if not self.skip:
            raise UserError(message + " (set data.on_error: skip to skip such files)")
        self.skipped.append(message)

    def notes(self) -> list[str]:
        if not self.skipped:
            return []
        n = len(self.skipped)
        return [f"skipped {n} bad file{'s' if n > 1 else ''} (first: {self.skipped[0]})"]


def existing(path: str | None, kind: str, key: str = "data.path") -> Path:
    """`path` as a Path, checked to exist and to be a `kind` ("folder" or "file")."""
    if path is None:
        raise UserError(f"{key}: required for this source")
    resolved = Path(path).expanduser()
    if not resolved.exists():
        raise UserError(f"{key}: {str(resolved)!r} does not exist")
    if kind == "folder" and not resolved.is_dir():
        raise UserError(f"{key}: {str(resolved)!r} is not a folder")
    if kind == "file" and not resolved.is_file():
        raise UserError(f"{key}: {str(resolved)!r} is not a file")
    return resolved
