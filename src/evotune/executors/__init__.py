"""Executors move batches of genomes to where they are evaluated.

`local` evaluates in this process; `ray` (its own module, imported only when used:
`evotune.executors.ray.RayExecutor`) spreads batches over a Ray cluster. Both evaluate
through `guard.evaluate_guarded`, so an evaluation that raises becomes a failed result.
"""

from evotune.executors.local import LocalExecutor

__all__ = ["LocalExecutor"]
