"""Seeded splits: stratified hold-outs (optionally grouped) and test selection by field.

Every function returns index arrays in the original order, so a split is a pure
function of (data, settings, seed).
"""

from __future__ import annotations

import numpy as np

from evotune.data.raw import Examples
from evotune.errors import UserError


def holdout(
    labels: np.ndarray,
    fraction: float,
    seed: int,
    classes: list[str],
    what: str,
    origin: str,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(kept, held-out) indices, stratified by label; with `groups`, no group is cut."""
    if groups is None:
        return _stratified(labels, fraction, seed, classes, what, origin)
    return _grouped(labels, groups, fraction, seed, classes, what, origin)


def _stratified(
    labels: np.ndarray, fraction: float, seed: int, classes: list[str], what: str, origin: str
) -> tuple[np.ndarray, np.ndarray]:
    # Per class, so every class keeps its proportion exactly (up to rounding).
    rng = np.random.default_rng(seed)
    held = []
    for label, name in enumerate(classes):
        members = np.flatnonzero(labels == label)
        if len(members) < 2:
            raise UserError(
                f"{origin}: class {name!r} has {len(members)} example(s); at least 2 are "
                f"needed to split off a {what} set (drop it with data.classes)"
            )
        n_held = min(max(1, int(round(fraction * len(members)))), len(members) - 1)
        held.append(rng.permutation(members)[:n_held])
    held_index = np.sort(np.concatenate(held)) if held else np.zeros(0, dtype=np.int64)
    return _complement(len(labels), held_index), held_index


def _grouped(
    labels: np.ndarray,
    groups: np.ndarray,
    fraction: float,
    seed: int,
    classes: list[str],
    what: str,
    origin: str,
) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import StratifiedGroupKFold

    distinct = np.unique(groups)
    if len(distinct) < 2:
        raise UserError(
            f"{origin}: split.group_by has a single value ({str(distinct[0])!r}) in the "
            f"{what} pool; at least 2 groups are needed to hold one out"
        )
    # One fold of k ~ 1/fraction folds is held out: the fraction is approximate because
    # whole groups move together.
    n_splits = min(max(2, int(round(1 / fraction))), len(distinct))
    folds = StratifiedGroupKFold(n_splits=n_splits, shuffle=True, random_state=seed)
    kept, held = next(folds.split(np.zeros(len(labels)), labels, groups))
    _check_every_class_kept(labels[kept], classes, what, origin)
    return np.sort(kept), np.sort(held)


def _check_every_class_kept(labels: np.ndarray, classes: list[str], what: str, origin: str) -> None:
    present = set(np.unique(labels).tolist())
    for label, name in enumerate(classes):
        if label not in present:
            raise UserError(
                f"{origin}: class {name!r} has no training examples left after holding out "
                f"whole groups for the {what} set; use fewer groups or no split.group_by"
            )


def where(examples: Examples, selection: dict[str, list[str]], origin: str) -> np.ndarray:
    """Boolean mask of the examples whose fields take one of the listed values."""
    mask = np.ones(len(examples), dtype=bool)
    for name, values in selection.items():
        mask &= np.isin(examples.fields[name], values)
    if not mask.any():
        raise UserError(f"{origin}: no file matches split.test_where {selection}")
    if mask.all():
        raise UserError(
            f"{origin}: every file matches split.test_where {selection}; none left to train on"
        )
    return mask


def cap_per_class(labels: np.ndarray, cap: int, seed: int) -> np.ndarray:
    """Indices keeping at most `cap` examples of each label (a seeded random choice)."""
    rng = np.random.default_rng(seed)
    kept = [rng.permutation(np.flatnonzero(labels == label))[:cap] for label in np.unique(labels)]
    return np.sort(np.concatenate(kept)) if kept else np.zeros(0, dtype=np.int64)


def _complement(n: int, index: np.ndarray) -> np.ndarray:
    mask = np.ones(n, dtype=bool)
    mask[index] = False
    return np.flatnonzero(mask)
