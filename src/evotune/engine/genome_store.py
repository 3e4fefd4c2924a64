"""Genomes too large for a journal line, kept as .npy files named by their hash.

A 784x500 weight matrix is 392,000 genes: about 8 MB of JSON per journal line, and the
run's fitness cache would hold every one of them in memory. A space whose genomes are
that large says so (`space.external`); the run loop then journals
`{"file": "genomes/<hash>.npy", "genes": n}` instead of the values.

The file exists while its genome is the best so far or on the Pareto front: the loop
writes it (atomically) at the end of the generation that evaluated the genome, before
the checkpoint, and deletes it once the genome has dropped out. Writing every genome
would cost 1.5 MB and an fsync per evaluation for files nobody reads: resume never
needs them (it re-asks the interrupted generation from the checkpoint and compares
hashes), and the checkpoint holds the population. Files are read with
`allow_pickle=False`.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np

from evotune.engine.spaces import GenomeError, Space
from evotune.engine.state import atomic_write_bytes

FOLDER = "genomes"


class GenomeStore:
    """Content-addressed genome files under `run_dir/genomes/`."""

    def __init__(self, run_dir: Path) -> None:
        self.run_dir = Path(run_dir)
        self.folder = self.run_dir / FOLDER

    @staticmethod
    def reference(key: str, genes: int) -> dict[str, Any]:
        """What the journal stores for a genome."""
        return {"file": f"{FOLDER}/{key}.npy", "genes": int(genes)}

    def put(self, key: str, genome: np.ndarray) -> dict[str, Any]:
        """Write the genome (once) and return its reference."""
        path = self.folder / f"{key}.npy"
        if not path.exists():  # same hash, same bytes: never written twice
            buffer = io.BytesIO()
            np.save(buffer, np.ascontiguousarray(genome), allow_pickle=False)
            atomic_write_bytes(path, buffer.getvalue())
        return self.reference(key, np.asarray(genome).size)

    def retain(self, keys: set[str]) -> None:
        """Delete the genome files whose hash is not in `keys`."""
        if not self.folder.is_dir():
            return
        for path in self.folder.glob("*.npy"):
            if path.stem not in keys:
                path.unlink(missing_ok=True)


def is_reference(value: Any) -> bool:
    return isinstance(value, dict) and set(value) == {"file", "genes"}


def load_genome(space: Space, value: Any, run_dir: Path) -> np.ndarray:
    """One genome as the journal or summary.json of `run_dir` stores it (values or a
    file reference), checked against `space`."""
    if not is_reference(value):
        return space.from_json(value)
    path = Path(run_dir) / value["file"]
    if not path.is_file():
        raise GenomeError(
            f"{path}: genome file not found (only the best genome and the Pareto front are kept)"
        )
    genome = np.load(path, allow_pickle=False)
    return space.check(genome.reshape(1, -1))[0]
