"""Executors move batches of genomes to where they are evaluated.

`local` evaluates in this process; `ray` (its own module, imported only when used)
spreads batches over a Ray cluster.
"""

from evotune.executors.local import LocalExecutor

__all__ = ["LocalExecutor"]
