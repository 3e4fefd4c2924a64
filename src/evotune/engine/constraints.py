"""Constraints between genes of a mixed space, enforced by repair (never by discarding).

A task whose genes depend on each other (the `hparams` task: frozen blocks <= kept
blocks) builds a `ConstrainedSpace` instead of a plain `MixedSpace`. Operators and
algorithms are unchanged: every child already goes through `space.repair`, so every
genome they produce is valid. The constraints are plain data (gene names), so they are
part of the layout (`describe()`) that a resumed run must match, and the engine stays
ignorant of what the genes mean.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from evotune.engine.spaces import Gene, GenomeError, MixedSpace, Real


@dataclass(frozen=True)
class AtMost:
    """Gene `gene` <= gene `bound` (both numeric: Real or Int).

    Repair lowers `gene` to `bound` (the nearest valid genome that keeps `bound`); when
    that would leave `gene` below its own range, `bound` is raised to `gene`'s low end.
    """

    gene: str
    bound: str

    def describe(self) -> dict[str, str]:
        return {"gene": self.gene, "at_most": self.bound}


class ConstrainedSpace(MixedSpace):
    """A `MixedSpace` whose repair also enforces `constraints`, in order."""

    def __init__(self, genes: list[Gene], constraints: list[AtMost]) -> None:
        super().__init__(genes)
        self.constraints = tuple(constraints)
        self._columns = [self._check(c) for c in self.constraints]

    def _check(self, constraint: AtMost) -> tuple[int, int]:
        index = {g.name: i for i, g in enumerate(self.genes)}
        for name in (constraint.gene, constraint.bound):
            if name not in index:
                raise GenomeError(f"constraint {constraint}: no gene named {name!r}")
            if isinstance(self.genes[index[name]], Real) and self.genes[index[name]].log:
                raise GenomeError(f"constraint {constraint}: {name!r} is log-scaled")
        a, b = index[constraint.gene], index[constraint.bound]
        if self._lower[a] > self._upper[b]:
            raise GenomeError(
                f"constraint {constraint.gene} <= {constraint.bound} cannot hold: "
                f"{constraint.gene} >= {self._lower[a]:g} but {constraint.bound} <= "
                f"{self._upper[b]:g}"
            )
        return a, b

    def repair(self, genomes: np.ndarray) -> np.ndarray:
        values = super().repair(genomes)
        for a, b in self._columns:
            values[:, a] = np.minimum(values[:, a], values[:, b])
            # `a` may now sit below its range: lift both to a's low end
            floor = self._lower[a]
            values[:, b] = np.maximum(values[:, b], floor)
            values[:, a] = np.maximum(values[:, a], floor)
        return values

    def valid(self, genomes: np.ndarray) -> np.ndarray:
        """Per genome: inside the bounds, integral where discrete, constraints hold."""
        values = self.check(genomes)
        inside = ((values >= self._lower) & (values <= self._upper)).all(axis=1)
        whole = (values[:, self._discrete] == np.round(values[:, self._discrete])).all(axis=1)
        held = np.ones(len(values), dtype=bool)
        for a, b in self._columns:
            held &= values[:, a] <= values[:, b]
        return inside & whole & held

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "constraints": [c.describe() for c in self.constraints]}
