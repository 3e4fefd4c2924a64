"""Genome spaces: what a genome is, how to sample, repair, hash and encode it.

A population is one 2-D numpy array (members x genes). Every space stores its genes
as numbers so that operators can act on whole arrays:

- `BinarySpace`: uint8 bits; an optional prefix of genes is forced to 0 (frozen).
- `MixedSpace`: float64; `Real` genes (log-scaled ones are stored as log10), `Int`
  genes and `Choice` genes (stored as the option's index).
- `RealVectorSpace`: float32 or float64 vector with optional bounds (a long one, e.g. a
  weight matrix, is `external`: journaled as a file reference, see `genome_store.py`).

Operators only see arrays plus `lower`/`upper` (in stored coordinates); tasks turn a
row back into values with `decode`.
"""

from __future__ import annotations

import hashlib
import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any

import numpy as np

from evotune.errors import UserError


class GenomeError(UserError):
    """A genome or population does not fit its space."""


class Space(ABC):
    """A genome space. Subclasses define `kind`, `n_genes`, `dtype`, bounds and coding."""

    kind: str
    dtype: np.dtype
    # True: genomes are too large for a journal line; the run loop keeps them as files
    # (engine/genome_store.py) and journals a reference.
    external: bool = False

    @property
    @abstractmethod
    def n_genes(self) -> int: ...

    @property
    @abstractmethod
    def lower(self) -> np.ndarray:
        """Lower bound per gene, in stored coordinates."""

    @property
    @abstractmethod
    def upper(self) -> np.ndarray:
        """Upper bound per gene, in stored coordinates."""

    @abstractmethod
    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        """`n` random genomes, already valid."""

    @abstractmethod
    def repair(self, genomes: np.ndarray) -> np.ndarray:
        """Map any array of the right shape to the nearest valid genomes."""

    @abstractmethod
    def to_json(self, genome: np.ndarray) -> Any:
        """A JSON-serialisable form of one genome (what the journal stores)."""

    @abstractmethod
    def from_json(self, value: Any) -> np.ndarray:
        """Inverse of `to_json`."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The layout, as JSON: two spaces with equal descriptions are interchangeable."""

    def decode(self, genome: np.ndarray) -> Any:
        """What a task reads from one genome; by default the row itself."""
        return genome

    def check(self, genomes: np.ndarray) -> np.ndarray:
        """Validate a population's shape; returns it as a 2-D array of this space's dtype."""
        arr = np.asarray(genomes)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.n_genes:
            raise GenomeError(
                f"expected genomes of shape (n, {self.n_genes}) for {self.kind} space, "
                f"got array of shape {arr.shape} ({type(genomes).__name__})"
            )
        return arr.astype(self.dtype, copy=False)

    def hash(self, genome: np.ndarray) -> str:
        """Stable 16-hex-digit hash of one genome (same on every platform and run)."""
        row = np.ascontiguousarray(np.asarray(genome, dtype=self.dtype))
        digest = hashlib.blake2b(digest_size=8)
        digest.update(self.kind.encode())
        digest.update(row.dtype.str.encode())
        digest.update(row.tobytes())
        return digest.hexdigest()


class BinarySpace(Space):
    """One bit per gene. The first `frozen_prefix` genes are always 0.

    `ones_fraction` is the probability of a 1 when sampling; `"uniform"` draws that
    probability per genome from U(0, 1), as MOEvoPruneDeepTL initialises (SEEDS.md §3).
    """

    kind = "binary"
    dtype = np.dtype(np.uint8)

    def __init__(
        self, length: int, frozen_prefix: int = 0, ones_fraction: float | str = 0.5
    ) -> None:
        if length < 1:
            raise GenomeError(f"binary genome length must be >= 1, got {length!r}")
        if not 0 <= frozen_prefix < length:
            raise GenomeError(f"frozen_prefix must be in [0, {length}), got {frozen_prefix!r}")
        if ones_fraction != "uniform" and not (
            isinstance(ones_fraction, (int, float)) and 0.0 <= ones_fraction <= 1.0
        ):
            raise GenomeError(
                f"ones_fraction must be a number in [0, 1] or 'uniform', got {ones_fraction!r}"
            )
        self.length = length
        self.frozen_prefix = frozen_prefix
        self.ones_fraction = ones_fraction

    @property
    def n_genes(self) -> int:
        return self.length

    @property
    def lower(self) -> np.ndarray:
        return np.zeros(self.length)

    @property
    def upper(self) -> np.ndarray:
        upper = np.ones(self.length)
        upper[: self.frozen_prefix] = 0
        return upper

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if self.ones_fraction == "uniform":
            p = rng.random((n, 1))
        else:
            p = np.full((n, 1), float(self.ones_fraction))
        bits = (rng.random((n, self.length)) < p).astype(self.dtype)
        return self.repair(bits)

    def repair(self, genomes: np.ndarray) -> np.ndarray:
        bits = (self.check(genomes) != 0).astype(self.dtype)
        bits[:, : self.frozen_prefix] = 0
        return bits

    def to_json(self, genome: np.ndarray) -> str:
        return "".join("1" if b else "0" for b in np.asarray(genome).ravel())

    def from_json(self, value: Any) -> np.ndarray:
        if not isinstance(value, str) or len(value) != self.length or set(value) - {"0", "1"}:
            raise GenomeError(
                f"expected a string of {self.length} '0'/'1' characters, got {value!r:.80}"
            )
        return np.frombuffer(value.encode(), dtype=np.uint8) - ord("0")

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind, "length": self.length, "frozen_prefix": self.frozen_prefix}


@dataclass(frozen=True)
class Real:
    """A real gene in [low, high]; `log=True` searches log10-uniformly (low > 0)."""

    name: str
    low: float
    high: float
    log: bool = False


@dataclass(frozen=True)
class Int:
    """An integer gene in [low, high], both inclusive."""

    name: str
    low: int
    high: int


@dataclass(frozen=True)
class Choice:
    """One of a list of options (numbers, strings or booleans), stored as its index."""

    name: str
    options: tuple[Any, ...]


Gene = Real | Int | Choice


def _check_gene(gene: Gene) -> None:
    if isinstance(gene, Choice):
        if len(gene.options) < 1:
            raise GenomeError(f"gene {gene.name!r}: a choice needs at least one option")
        return
    if not gene.low <= gene.high:
        raise GenomeError(f"gene {gene.name!r}: low {gene.low!r} > high {gene.high!r}")
    if isinstance(gene, Real) and gene.log and gene.low <= 0:
        raise GenomeError(f"gene {gene.name!r}: a log-scaled gene needs low > 0, got {gene.low}")


class MixedSpace(Space):
    """Named genes of mixed types; a genome decodes to `{name: value}`."""

    kind = "mixed"
    dtype = np.dtype(np.float64)

    def __init__(self, genes: list[Gene]) -> None:
        if not genes:
            raise GenomeError("a mixed space needs at least one gene")
        names = [g.name for g in genes]
        if len(set(names)) != len(names):
            raise GenomeError(f"gene names must be unique, got {names}")
        for gene in genes:
            _check_gene(gene)
        self.genes = tuple(genes)
        self._lower = np.array([self._bounds(g)[0] for g in genes], dtype=float)
        self._upper = np.array([self._bounds(g)[1] for g in genes], dtype=float)
        self._discrete = np.array([not isinstance(g, Real) for g in genes])

    @staticmethod
    def _bounds(gene: Gene) -> tuple[float, float]:
        if isinstance(gene, Choice):
            return 0.0, float(len(gene.options) - 1)
        if isinstance(gene, Real) and gene.log:
            return math.log10(gene.low), math.log10(gene.high)
        return float(gene.low), float(gene.high)

    @property
    def n_genes(self) -> int:
        return len(self.genes)

    @property
    def lower(self) -> np.ndarray:
        return self._lower.copy()

    @property
    def upper(self) -> np.ndarray:
        return self._upper.copy()

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        # Discrete genes: uniform over [low - 0.5, high + 0.5) then rounded, so every
        # integer (or option) is equally likely.
        pad = np.where(self._discrete, 0.5, 0.0)
        low, high = self._lower - pad, self._upper + pad
        values = low + rng.random((n, self.n_genes)) * (high - low)
        return self.repair(values)

    def repair(self, genomes: np.ndarray) -> np.ndarray:
        values = self.check(genomes).copy()
        values[:, self._discrete] = np.round(values[:, self._discrete])
        return np.clip(values, self._lower, self._upper)

    def decode(self, genome: np.ndarray) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for gene, value in zip(self.genes, np.asarray(genome, dtype=float)):
            if isinstance(gene, Choice):
                out[gene.name] = gene.options[int(round(value))]
            elif isinstance(gene, Int):
                out[gene.name] = int(round(value))
            else:
                out[gene.name] = float(10.0**value) if gene.log else float(value)
        return out

    def to_json(self, genome: np.ndarray) -> dict[str, Any]:
        return self.decode(genome)

    def from_json(self, value: Any) -> np.ndarray:
        if not isinstance(value, dict) or set(value) != {g.name for g in self.genes}:
            raise GenomeError(
                f"expected a mapping with keys {[g.name for g in self.genes]}, got {value!r:.120}"
            )
        row = []
        for gene in self.genes:
            v = value[gene.name]
            if isinstance(gene, Choice):
                row.append(float(gene.options.index(v)))
            elif isinstance(gene, Real) and gene.log:
                row.append(math.log10(v))
            else:
                row.append(float(v))
        return np.array(row)

    def describe(self) -> dict[str, Any]:
        genes = []
        for g in self.genes:
            if isinstance(g, Choice):
                genes.append({"name": g.name, "type": "choice", "options": list(g.options)})
            elif isinstance(g, Int):
                genes.append({"name": g.name, "type": "int", "low": g.low, "high": g.high})
            else:
                genes.append(
                    {"name": g.name, "type": "real", "low": g.low, "high": g.high, "log": g.log}
                )
        return {"kind": self.kind, "genes": genes}


class RealVectorSpace(Space):
    """A vector of `length` reals in [low, high] (bounds may be infinite).

    Sampling is uniform within finite bounds, else normal(0, init_std) clipped to them
    (`init_std`: one value, or one per gene). Genomes of more than `EXTERNAL_GENES`
    genes are `external` unless `external` says otherwise (the layout, `describe()`,
    does not depend on it).
    """

    kind = "real"
    EXTERNAL_GENES = 1024  # about 20 KB of JSON per genome

    def __init__(
        self,
        length: int,
        low: float = -math.inf,
        high: float = math.inf,
        init_std: float | np.ndarray = 1.0,
        dtype: str = "float64",
        external: bool | None = None,
    ) -> None:
        if length < 1:
            raise GenomeError(f"real vector length must be >= 1, got {length!r}")
        if not low < high:
            raise GenomeError(f"real vector bounds need low < high, got [{low}, {high}]")
        if dtype not in ("float32", "float64"):
            raise GenomeError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
        self.length, self.low, self.high = length, float(low), float(high)
        # one std for all genes, or one per gene (e.g. each weight tensor's own init scale)
        self.init_std = np.asarray(init_std, dtype=float) if np.ndim(init_std) else float(init_std)
        self.dtype = np.dtype(dtype)
        self.external = length > self.EXTERNAL_GENES if external is None else external

    @property
    def n_genes(self) -> int:
        return self.length

    @property
    def lower(self) -> np.ndarray:
        return np.full(self.length, self.low)

    @property
    def upper(self) -> np.ndarray:
        return np.full(self.length, self.high)

    def sample(self, n: int, rng: np.random.Generator) -> np.ndarray:
        if math.isfinite(self.low) and math.isfinite(self.high):
            values = rng.uniform(self.low, self.high, (n, self.length))
        else:
            values = rng.normal(0.0, self.init_std, (n, self.length))
        return self.repair(values)

    def repair(self, genomes: np.ndarray) -> np.ndarray:
        return np.clip(self.check(genomes), self.low, self.high).astype(self.dtype)

    def to_json(self, genome: np.ndarray) -> list[float]:
        return [float(v) for v in np.asarray(genome).ravel()]

    def from_json(self, value: Any) -> np.ndarray:
        if not isinstance(value, list) or len(value) != self.length:
            raise GenomeError(f"expected a list of {self.length} numbers, got {value!r:.80}")
        return np.asarray(value, dtype=self.dtype)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "length": self.length,
            "low": self.low if math.isfinite(self.low) else None,
            "high": self.high if math.isfinite(self.high) else None,
            "dtype": self.dtype.name,
        }
