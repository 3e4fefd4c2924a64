"""What a task is: a genome space, objectives, a batched fitness, and its config sections.

A task class declares the pydantic models of the config sections it reads (`Options`
for the `task:` mapping, `Fitness`, and `Data`/`Model` when it takes them), the genome
kind (for checking operators before anything is built) and its seed preset.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from evotune.engine.problem import Evaluation, Objective
from evotune.engine.spaces import Space
from evotune.sections import NoOptions, Section

if TYPE_CHECKING:
    from evotune.config import RunConfig


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

    def data_notes(self) -> list[str]:
        """What loading the data noticed (skipped files, no test set), for the console,
        summary.json (`data_notes`) and the report."""
        return list(getattr(getattr(self, "data", None), "notes", []))

    def model_notes(self) -> list[str]:
        """What building the backbone decided (a python: model's weights wrapper and
        removed classifier, how it was cut), for the console and summary.json."""
        net = getattr(self, "template", None) or getattr(self, "net", None)
        return list(getattr(net, "notes", []))

    def setup_process(self) -> None:
        """Called in every process that evaluates this task (the run's own, each Ray
        worker) before it does: torch's thread count and kernels set from the config
        (`fitness.threads`), not from the environment, so a genome's value does not
        depend on where it ran (a CPU sum split over 2 threads rounds differently)."""
        pin_torch_threads(getattr(getattr(self, "fitness", None), "threads", None))


def build_task(config: RunConfig) -> Task:
    """The config's task, built in a process set up as its evaluations will be."""
    pin_torch_threads(getattr(config.fitness, "threads", None))
    task = config.task_class.from_config(config)
    task.setup_process()
    return task


def pin_torch_threads(threads: int | None) -> None:
    """torch's CPU threads (None: leave them) and deterministic cuDNN kernels."""
    if threads is None:
        return
    import torch  # only torch tasks have fitness.threads: toy runs start without it

    if torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    torch.backends.cudnn.deterministic = True
    torch.backends.cudnn.benchmark = False
