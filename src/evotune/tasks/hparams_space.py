"""The `hparams` genome: which transfer hyperparameters are genes, their ranges, and
what a genome means (a `Plan`).

Every gene is optional (null in `task.genes` turns it off; the value then comes from
`fitness:` or `model:`). Kept depth >= frozen depth is a constraint of the space,
enforced by its repair (`engine/constraints.py`), so every genome any algorithm
proposes is valid.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from evotune.engine.constraints import AtMost, ConstrainedSpace
from evotune.engine.spaces import Choice, Gene, Int, Real
from evotune.errors import UserError
from evotune.sections import Section

GENE_NAMES = (
    "kept",
    "frozen",
    "lr",
    "dropout",
    "weight_decay",
    "batch_size",
    "head_width",
    "se_blocks",
)


class GeneRanges(Section):
    """Bounds of each gene; null turns the gene off."""

    kept: tuple[int, int | None] | None = Field(
        (1, None), description="blocks kept (truncation) [low, high]; high null: all"
    )
    frozen: tuple[int, int | None] | None = Field(
        (0, None), description="leading blocks frozen [low, high]; high null: all"
    )
    lr: tuple[float, float] | None = Field((1e-5, 1e-1), description="learning rate (log scale)")
    dropout: tuple[float, float] | None = Field((0.0, 0.5), description="head dropout")
    weight_decay: tuple[float, float] | None = Field(None, description="log scale, low > 0")
    batch_size: list[int] | None = Field(None, min_length=1, description="choices")
    head_width: list[int] | None = Field(
        None, min_length=1, description="hidden units of the head (0: linear head)"
    )
    se_blocks: list[bool] | None = Field(None, min_length=1, description="e.g. [false, true]")

    @model_validator(mode="after")
    def _ranges(self) -> GeneRanges:
        for name in ("kept", "frozen", "lr", "dropout", "weight_decay"):
            pair = getattr(self, name)
            if pair is not None and pair[1] is not None and pair[0] > pair[1]:
                raise ValueError(f"{name}: low {pair[0]} > high {pair[1]}")
        _check(self.kept is None or self.kept[0] >= 1, "kept: keep at least 1 block")
        _check(self.frozen is None or self.frozen[0] >= 0, "frozen: low must be >= 0")
        for name in ("lr", "weight_decay"):
            pair = getattr(self, name)
            _check(pair is None or pair[0] > 0, f"{name}: a log-scaled range needs low > 0")
        _check(self.dropout is None or 0 <= self.dropout[0] <= self.dropout[1] < 1,
               "dropout: expected 0 <= low <= high < 1")  # fmt: skip
        _check(not self.batch_size or min(self.batch_size) >= 1, "batch_size: sizes >= 1")
        _check(not self.head_width or min(self.head_width) >= 0, "head_width: widths >= 0")
        return self

    def enabled(self) -> list[str]:
        return [name for name in GENE_NAMES if getattr(self, name) is not None]


def _check(ok: bool, message: str) -> None:
    if not ok:
        raise ValueError(message)


@dataclass(frozen=True)
class Plan:
    """What one genome asks for: the network's cut and the training settings."""

    kept: int
    frozen: int
    lr: float
    dropout: float
    weight_decay: float
    batch_size: int
    head_width: int
    se_blocks: bool

    def describe(self) -> dict[str, Any]:
        return dict(self.__dict__)


def build_space(genes: GeneRanges, n_blocks: int) -> ConstrainedSpace:
    """The genome space of the enabled genes, depths checked against the backbone."""
    made: list[Gene] = []
    for name in genes.enabled():
        value = getattr(genes, name)
        if name in ("kept", "frozen"):
            made.append(Int(name, value[0], _depth(name, value, n_blocks)))
        elif name in ("lr", "weight_decay"):
            made.append(Real(name, float(value[0]), float(value[1]), log=True))
        elif name == "dropout":
            made.append(Real(name, float(value[0]), float(value[1])))
        else:
            made.append(Choice(name, tuple(value)))
    if not made:
        raise UserError("task.genes: every gene is off (null); enable at least one")
    both = genes.kept is not None and genes.frozen is not None
    try:
        return ConstrainedSpace(made, [AtMost("frozen", "kept")] if both else [])
    except UserError as err:
        raise UserError(f"task.genes: {err}") from None


def _depth(name: str, pair: tuple[int, int | None], n_blocks: int) -> int:
    high = n_blocks if pair[1] is None else pair[1]
    if high > n_blocks or pair[0] > n_blocks:
        raise UserError(
            f"task.genes.{name}: [{pair[0]}, {pair[1]}] but the backbone has {n_blocks} blocks; "
            f"use a range within [0, {n_blocks}] (high null: all blocks)"
        )
    return high


def decode(space: ConstrainedSpace, genome: np.ndarray, defaults: Plan) -> Plan:
    """The plan of `genome`: its genes, `defaults` for the genes that are off."""
    values = {**defaults.describe(), **space.decode(genome)}
    values["head_width"] = int(values["head_width"])
    values["se_blocks"] = bool(values["se_blocks"])
    return Plan(**values)


def encode(space: ConstrainedSpace, plan: Plan) -> np.ndarray:
    """The valid genome nearest to `plan` (e.g. the config's defaults as a baseline)."""
    row = []
    for gene in space.genes:
        value = getattr(plan, gene.name)
        if isinstance(gene, Choice):
            row.append(float(_nearest(gene.options, value)))
        elif isinstance(gene, Real) and gene.log:
            row.append(math.log10(min(max(value, gene.low), gene.high)))
        else:
            row.append(float(value))
    return space.repair(np.array([row]))[0]


def _nearest(options: tuple[Any, ...], value: Any) -> int:
    if value in options:
        return options.index(value)
    if isinstance(value, bool) or not all(isinstance(o, int | float) for o in options):
        return 0
    return int(np.argmin([abs(o - value) for o in options]))
