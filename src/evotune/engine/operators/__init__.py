"""Genetic operators: one small function each, in three registries.

Signatures (all act on whole populations, with an explicit random generator):

- selection: `fn(losses, n, rng, *, params) -> indices`; `losses` is 1-D, lower is
  better; returns `n` indices into the population (parents, in mating order).
- crossover: `fn(parents, rng, space, *, params) -> children`, same shape; rows are
  paired (0, 1), (2, 3), ... (trait `mating: pairs`, the default) as the algorithm's
  mating step arranged them (`base.mating_for`), or read in selection order
  (`sequence`), or mated by the operator itself (`own`).
- mutation: `fn(genomes, rng, space, *, params) -> mutated`, a new array.

Algorithms repair children with `space.repair` after mutation, so operators need not
keep forced genes, bounds or integrality themselves.
"""

from evotune.engine.operators import crossover, mutation, selection  # noqa: F401  (registers)
from evotune.engine.operators.base import CROSSOVER, MUTATION, SELECTION

__all__ = ["CROSSOVER", "MUTATION", "SELECTION"]
