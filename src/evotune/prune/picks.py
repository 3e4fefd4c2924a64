"""Choosing one member of a Pareto front: `--pick accuracy|smallest|knee|index N`."""

from __future__ import annotations

from typing import Any

import numpy as np

from evotune.engine.problem import Objective, losses_of
from evotune.errors import UserError

SIZE_NAMES = ("active_fraction", "trainable_params", "head_params")


def pick(front: list[dict[str, Any]], objectives: list[dict[str, str]], how: str) -> int:
    """Index into `front` (summary.json's `pareto`) of the chosen member.

    accuracy: best first objective (ties: the next ones); smallest: best size objective
    (ties: the others); knee: nearest the ideal point once every objective is scaled
    to [0, 1] over the front; index N: the N-th entry (pareto.csv's index).
    """
    if not front:
        raise UserError("the run has no Pareto front to pick from")
    objs = tuple(Objective(o["name"], o["direction"]) for o in objectives)
    losses = losses_of(objs, np.array([p["fitness"] for p in front], dtype=float))
    if how == "accuracy":
        return _lexbest(losses, 0)
    if how == "smallest":
        names = [o.name for o in objs]
        size = next((names.index(n) for n in SIZE_NAMES if n in names), None)
        if size is None:
            raise UserError(f"--pick smallest: no size objective among {', '.join(names)}")
        return _lexbest(losses, size)
    if how == "knee":
        return knee(losses)
    if how.startswith("index"):
        return _index(how, len(front))
    raise UserError(f"--pick: expected accuracy, smallest, knee or 'index N', got {how!r}")


def _lexbest(losses: np.ndarray, first: int) -> int:
    order = [first] + [k for k in range(losses.shape[1]) if k != first]
    return int(np.lexsort([losses[:, k] for k in reversed(order)])[0])


def knee(losses: np.ndarray) -> int:
    """The member nearest the ideal point after scaling each objective to [0, 1]."""
    low, high = losses.min(axis=0), losses.max(axis=0)
    scaled = (losses - low) / np.where(high > low, high - low, 1.0)
    return int(np.argmin(np.linalg.norm(scaled, axis=1)))


def _index(how: str, n: int) -> int:
    text = how[len("index") :].strip()
    if not text.lstrip("-").isdigit() or not 0 <= int(text) < n:
        raise UserError(f"--pick {how!r}: expected 'index N' with 0 <= N < {n}")
    return int(text)
