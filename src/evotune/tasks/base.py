"""What a task is: a genome space, objectives, a batched fitness, and its config sections.

A task class declares the pydantic models of the config sections it reads (`Options`
for the `task:` mapping, `Fitness`, and `Data`/`Model` when it takes them), the genome
kind (for checking operators before anything is built) and its seed preset.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from evotune.engine.problem import Evaluation, Objective
from evotune.engine.spaces import Space

if TYPE_CHECKING:
    from evotune.config import RunConfig


class Section(BaseModel):
    """A config section: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class NoOptions(Section):
    """A section that takes no keys."""


class Task(ABC):
    """Base class of every task (`layers`, `prune`, ..., and the toy ones)."""

    name: ClassVar[str]
    description: ClassVar[str] = ""
    genome_kind: ClassVar[str]  # "binary", "mixed" or "real"
    Options: ClassVar[type[Section]] = NoOptions
    Fitness: ClassVar[type[Section]] = NoOptions
    Data: ClassVar[type[Section] | None] = None  # None: no `data:` section allowed
    Model: ClassVar[type[Section] | None] = None  # None: no `model:` section allowed
    seed_preset: ClassVar[str | None] = None  # what `search.preset: seed` means here
    # `search.preset: seed` may also set other sections' defaults (e.g. the seed's
    # backbone): section name -> raw values, under whatever the user wrote.
    seed_defaults: ClassVar[dict[str, dict[str, Any]]] = {}

    space: Space
    objectives: tuple[Objective, ...]
    genomes_per_call: int | None = None  # genomes per evaluate() call; None: any number
    whole_generation: bool = False  # results depend on the whole call (see engine.problem)

    @classmethod
    def objectives_for(cls, config: RunConfig) -> tuple[Objective, ...]:
        """The objectives a config asks for (known before the task is built)."""
        return cls.objectives

    @classmethod
    @abstractmethod
    def from_config(cls, config: RunConfig) -> Task:
        """Build the task (load data, models, ...) from a validated config."""

    @abstractmethod
    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        """One Evaluation per genome, in order; `seeds[i]` seeds genome i's evaluation."""

    def reference_point(self) -> tuple[float, ...] | None:
        """Hypervolume reference point in natural units (None: derived from the run)."""
        return None

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "genes": self.space.n_genes}
