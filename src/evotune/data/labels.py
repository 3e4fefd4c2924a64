"""Class names: ordering and turning raw label values into label indices."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from evotune.errors import UserError


def _natural(name: str) -> tuple[int, int, str]:
    # Numeric names sort as numbers, so "10" comes after "9" and digit d gets label d.
    return (0, int(name), name) if name.isdigit() else (1, 0, name)


def sort_names(names: Iterable[str]) -> list[str]:
    """Distinct class names, numeric ones first in numeric order, then the rest sorted."""
    return sorted(set(names), key=_natural)


def as_strings(values: np.ndarray) -> np.ndarray:
    """Label values (ints, integral floats or strings) as strings ("3", not "3.0")."""
    if values.dtype.kind == "f":
        values = values.astype(np.int64)
    return values.astype(str)


def encode(values: np.ndarray, classes: list[str], where: str) -> np.ndarray:
    """Label indices (int64) of string `values` in `classes`; unknown values name `where`."""
    index = {name: i for i, name in enumerate(classes)}
    unknown = sorted(set(values.tolist()) - index.keys(), key=_natural)
    if unknown:
        raise UserError(
            f"{where}: label {unknown[0]!r} is not one of the training classes "
            f"({', '.join(classes)})"
        )
    return np.fromiter((index[v] for v in values.tolist()), dtype=np.int64, count=len(values))
