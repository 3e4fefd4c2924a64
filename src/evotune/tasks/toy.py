"""Toy tasks that exercise the engine end to end through the same CLI users use:
OneMax (binary), ZDT1/ZDT2 (two objectives, real vector) and a mixed-space sphere."""

from __future__ import annotations

import time
from typing import Any, ClassVar

import numpy as np
from pydantic import Field

from evotune.engine.problem import Evaluation, Objective
from evotune.engine.spaces import BinarySpace, Choice, Int, MixedSpace, Real, RealVectorSpace
from evotune.sections import Section
from evotune.tasks.base import Task


class ToyFitness(Section):
    delay: float = Field(
        0.0, ge=0, description="seconds to sleep per evaluation: simulates an expensive fitness"
    )


class ToyTask(Task):
    """Shared by the toy tasks: the optional delay."""

    Fitness = ToyFitness
    delay = 0.0

    def pause(self, n: int) -> None:
        if self.delay:
            time.sleep(self.delay * n)


class OneMax(ToyTask):
    name = "onemax"
    description = "maximise the number of ones in a bit string (binary genome)"
    genome_kind = "binary"
    seed_preset = "selective-tuning"

    class Options(Section):
        length: int = Field(100, ge=1, description="bits per genome")
        frozen_prefix: int = Field(0, ge=0, description="leading bits forced to 0")

    objectives = (Objective("ones", "max"),)

    def __init__(self, length: int, frozen_prefix: int = 0) -> None:
        self.space = BinarySpace(length, frozen_prefix=frozen_prefix)

    @classmethod
    def from_config(cls, config: Any) -> OneMax:
        task = cls(config.task.length, config.task.frozen_prefix)
        task.delay = config.fitness.delay
        return task

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        self.pause(len(genomes))
        ones = genomes.sum(axis=1)
        return [Evaluation((float(n),), {"fraction": float(n) / genomes.shape[1]}) for n in ones]


class ZDT(ToyTask):
    """Zitzler-Deb-Thiele test problems: two minimised objectives on [0, 1]^n."""

    genome_kind = "real"
    shape: ClassVar[str]

    class Options(Section):
        n_var: int = Field(30, ge=2, description="decision variables")

    objectives = (Objective("f1", "min"), Objective("f2", "min"))

    def __init__(self, n_var: int = 30) -> None:
        self.space = RealVectorSpace(n_var, 0.0, 1.0)

    @classmethod
    def from_config(cls, config: Any) -> ZDT:
        task = cls(config.task.n_var)
        task.delay = config.fitness.delay
        return task

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        self.pause(len(genomes))
        f1 = genomes[:, 0]
        g = 1.0 + 9.0 * genomes[:, 1:].sum(axis=1) / (genomes.shape[1] - 1)
        ratio = f1 / g
        h = 1.0 - (np.sqrt(ratio) if self.shape == "convex" else ratio**2)
        return [Evaluation((float(a), float(b))) for a, b in zip(f1, g * h)]

    def reference_point(self) -> tuple[float, ...]:
        return (1.1, 1.1)


class ZDT1(ZDT):
    name = "zdt1"
    description = "ZDT1: convex Pareto front, 2 objectives (real genome)"
    shape = "convex"


class ZDT2(ZDT):
    name = "zdt2"
    description = "ZDT2: non-convex Pareto front, 2 objectives (real genome)"
    shape = "concave"


class MixedSphere(ToyTask):
    """A shifted sphere over mixed genes, shaped like a hyperparameter search: the
    optimum is x = 1.5, lr = 1e-3, depth = 7, activation = 'gelu' (fitness 0)."""

    name = "mixed_sphere"
    description = "minimise distance to a known optimum over real/log/int/choice genes"
    genome_kind = "mixed"
    seed_preset = "tl-hparams"
    objectives = (Objective("distance", "min"),)

    def __init__(self) -> None:
        self.space = MixedSpace(
            [
                Real("x", -5.0, 5.0),
                Real("lr", 1e-6, 1e-1, log=True),
                Int("depth", 1, 12),
                Choice("activation", ("relu", "tanh", "gelu")),
            ]
        )

    @classmethod
    def from_config(cls, config: Any) -> MixedSphere:
        task = cls()
        task.delay = config.fitness.delay
        return task

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        self.pause(len(genomes))
        out = []
        for genome in genomes:
            v = self.space.decode(genome)
            distance = (
                (v["x"] - 1.5) ** 2
                + (np.log10(v["lr"]) + 3.0) ** 2
                + 0.1 * (v["depth"] - 7) ** 2
                + (v["activation"] != "gelu")
            )
            out.append(Evaluation((float(distance),), {"lr": v["lr"], "depth": v["depth"]}))
        return out
