"""Task `layers`: which genes (layer groups) of a pretrained backbone to fine-tune.

Genome: one bit per gene, 1 = trainable (SEEDS.md §1); the head always trains, the input
adapter trains unless `task.train_adapter` is false. Fitness: train `fitness.epochs` with
early stopping on validation loss; fitness = best validation accuracy (and, optionally,
the trainable parameter count as a second, minimised objective).
"""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from evotune.data import DataConfig, Dataset, load_data
from evotune.engine.problem import Evaluation, Objective
from evotune.engine.spaces import BinarySpace
from evotune.engine.state import atomic_write_json
from evotune.errors import UserError
from evotune.executors.guard import describe, failed
from evotune.models import ModelConfig, TransferNet, build_model
from evotune.models.checkpoint import export_model
from evotune.sections import Section, threads_field
from evotune.tasks.base import Task
from evotune.train.auto_rgn import AutoRgnRun
from evotune.train.device import (
    PRECISION_HELP,
    Precision,
    check_precision,
    place,
    resolve_device,
)
from evotune.train.finetune import (
    TrainingRun,
    TrainResult,
    TrainSettings,
    eval_batch_size,
    test_split_metrics,
)
from evotune.train.poplayers import PopulationBatches, population_batches
from evotune.train.prefix_cache import PrefixCache, Suffix
from evotune.train.schedule import (
    Outcome,
    Schedule,
    Scheduled,
    ScheduleFields,
    combine,
    full_budget_view,
)

BASELINES = ("full", "head", "last_k", "random")  # the default list
BaselineName = Literal["full", "head", "last_k", "random", "random_full", "surgical", "auto_rgn"]


class LayersOptions(Section):
    frozen_prefix: int = Field(0, ge=0, description="leading genes always frozen")
    objectives: list[Literal["accuracy", "trainable_params"]] = ["accuracy"]
    train_adapter: bool = Field(
        True, description="train the input adapter; false lets frozen prefixes be cached"
    )
    baselines: list[BaselineName] = Field(
        list(BASELINES),
        description="full, head, last_k, random (masks; with the search's schedule), "
        "random_full (masks, each trained the full budget), surgical (one gene group at a "
        "time: Lee et al. 2023), auto_rgn (every layer, learning rates by relative "
        "gradient norm); all but random train the full budget under successive halving",
    )
    last_k: list[int] | None = Field(None, description="k values for the last-k sweep")
    baseline_budget: Literal["evaluations", "time"] = Field(
        "time",
        description="random masks get as much evaluation time as the search used (time) "
        "or as many evaluations (evaluations)",
    )
    batch: int | Literal["auto"] = Field(
        1,
        description="genomes trained together as one population-batched stack "
        "(train/poplayers.py); 1: one at a time; auto: 16 on a GPU, 1 on a CPU",
    )


class LayersFitness(ScheduleFields):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-4, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    patience: int | None = Field(5, ge=1, description="early stopping on validation loss")
    device: str = "auto"
    precision: Precision = Field("fp32", description=PRECISION_HELP)
    cache: bool = Field(True, description="cache frozen-prefix activations")
    cache_gb: float = Field(
        2.0, gt=0, description="memory budget of the prefix cache; larger entries spill to disk"
    )
    threads: int | None = threads_field()

    def train_settings(self, restore_best: bool = False) -> TrainSettings:
        return TrainSettings(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            optimizer=self.optimizer,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            patience=self.patience,
            restore_best=restore_best,
            precision=self.precision,
        )


METRIC_OF = {"accuracy": "val_accuracy", "trainable_params": "trainable_params"}


def _score(run: TrainingRun) -> float:
    """A run's rank within a rung, lower is better: minus its best validation accuracy."""
    return -run.result().best_val_accuracy


def _run_metrics(run: TrainingRun, trainable: int, genome: np.ndarray) -> dict[str, Any]:
    result = run.result()
    return {
        "val_accuracy": result.best_val_accuracy,
        "val_loss": result.best_val_loss,
        "trainable_params": trainable,
        "trainable_genes": int(np.sum(genome)),
        "epochs": result.epochs_run,
        "train_seconds": round(result.seconds, 3),
    }


def _stage_groups(template: TransferNet, options: LayersOptions) -> list[list[int]]:
    """Gene indices grouped by the stage their weights start in, past the frozen prefix."""
    groups: dict[int, list[int]] = {}
    for i, gene in enumerate(template.genes):
        if i >= options.frozen_prefix:
            groups.setdefault(gene.stage, []).append(i)
    return list(groups.values())


def _objectives(options: LayersOptions) -> tuple[Objective, ...]:
    directions = {"accuracy": "max", "trainable_params": "min"}
    return tuple(Objective(name, directions[name]) for name in options.objectives)


class LayersTask(Scheduled, Task):
    name = "layers"
    description = "which layers of a pretrained backbone to fine-tune (binary genome)"
    genome_kind = "binary"
    Options = LayersOptions
    Fitness = LayersFitness
    Data = DataConfig
    Model = ModelConfig
    seed_preset = "selective-tuning"
    # SEEDS.md §1: the Keras backbone runs every batch norm in inference mode, trainable
    # or not (the seed ran four backbones, so none is fixed here).
    seed_defaults: ClassVar[dict[str, dict[str, Any]]] = {"model": {"batchnorm": "eval"}}

    def __init__(
        self,
        template: TransferNet,
        data: Dataset,
        options: LayersOptions,
        fitness: LayersFitness,
        device: torch.device,
    ) -> None:
        check_precision(fitness.precision, device)
        self.template = place(template, device).eval()
        self.data, self.options, self.fitness, self.device = data, options, fitness, device
        n_genes = len(template.genes)
        if options.frozen_prefix >= n_genes:
            raise UserError(
                f"task.frozen_prefix: {options.frozen_prefix} >= the backbone's {n_genes} genes"
            )
        groups = len(_stage_groups(template, options))
        if "surgical" in options.baselines and groups < 2:
            raise UserError(
                "task.baselines: surgical fine-tunes one gene group (stage) at a time and "
                "needs at least 2 groups past task.frozen_prefix; this backbone's "
                f"{n_genes} gene(s) form {groups}: remove surgical or use another backbone"
            )
        self.space = BinarySpace(n_genes, frozen_prefix=options.frozen_prefix)
        self.objectives = _objectives(options)
        self.run_class: type[TrainingRun] = TrainingRun  # a baseline's view may change it
        self.schedule = Schedule.of(fitness)
        self.whole_generation = self.schedule.halving  # halving ranks a generation together
        self.genomes_per_call = None if self.schedule.halving else 1
        self.splits = {name: split.to(device) for name, split in data.splits().items()}
        self.eval_batch = eval_batch_size(data.input_shape)
        inputs = {k: self.splits[k] for k in ("train", "val")}
        budget, chunk = fitness.cache_gb * 2**30, min(512, self.eval_batch)
        self.cache = PrefixCache(template, inputs, budget, chunk) if fitness.cache else None
        self.batched = self._population_batches(options.batch)  # None: one at a time

    @classmethod
    def objectives_for(cls, config: Any) -> tuple[Objective, ...]:
        return _objectives(config.task)

    @classmethod
    def from_config(cls, config: Any) -> LayersTask:
        data = load_data(config.data, streaming=True)
        template = build_model(
            config.model, data.input_shape, data.num_classes, seed=config.search.seed
        )
        return cls(
            template, data, config.task, config.fitness, resolve_device(config.fitness.device)
        )

    # -- fitness ------------------------------------------------------------------------

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        """Train under the schedule (train/schedule.py): genome by genome for the full
        budget, or the generation together under successive halving."""
        if self.batched is not None:  # task.batch: the call's genomes trained as stacks
            outcomes = self.batched.train(genomes, seeds)
        else:
            outcomes = self.schedule.train(self._start, genomes, seeds, _score)
        return [self._evaluation(o, g) for o, g in zip(outcomes, genomes)]

    def _population_batches(self, batch: int | str) -> PopulationBatches | None:
        """`task.batch` > 1: stacks of that many members (None when 1, or when this net,
        data or schedule cannot be batched: then one at a time, with a model note)."""
        settings = dataclasses.replace(
            self.fitness.train_settings(), eval_batch_size=self.eval_batch
        )
        train, halving = self.splits["train"], self.schedule.halving
        size, why = population_batches(batch, self.device, self.template, train, settings, halving)
        if why is not None:
            self.template.notes.append(f"task.batch: one genome at a time ({why})")
        if size <= 1:
            return None
        self.genomes_per_call = size
        val, repeats = self.splits["val"], self.schedule.repeats
        return PopulationBatches(self._member_net, train, val, settings, size, repeats)

    def _member_net(self, genome: np.ndarray, seed: int) -> tuple[TransferNet, int]:
        """A stack member: the genome's fresh net under its mask, and its trainable count."""
        net = self.fresh_net(seed)
        return net, net.set_trainable(genome.astype(bool), adapter=self.options.train_adapter)

    def _start(self, genome: np.ndarray, seed: int) -> tuple[TrainingRun, int]:
        run, _, trainable = self.start_run(genome, seed)
        return run, trainable  # the run holds the net: dropped once the run is released

    def _evaluation(self, outcome: Outcome, genome: np.ndarray) -> Evaluation:
        if outcome.error is not None:
            return failed(self, describe(outcome.error))
        rows = [_run_metrics(run, outcome.extra, genome) for run in outcome.runs]
        metrics = combine(rows, METRIC_OF[self.options.objectives[0]])
        metrics |= self.schedule.metrics(outcome.reached, outcome.runs)
        fitness = tuple(float(metrics[METRIC_OF[o]]) for o in self.options.objectives)
        return Evaluation(fitness, metrics)

    def fresh_net(self, seed: int) -> TransferNet:
        """The pretrained template with a newly initialised head (and adapter, when it
        trains), drawn from `seed`."""
        net = copy.deepcopy(self.template)
        torch.manual_seed(seed)
        for module in net.head.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        if self.options.train_adapter and hasattr(net.adapter, "reset_parameters"):
            net.adapter.reset_parameters()  # its own start: the repeat-like mapping
        return net

    def train_genome(
        self,
        genome: np.ndarray,
        seed: int,
        settings: TrainSettings | None = None,
        use_cache: bool = True,
    ) -> tuple[TransferNet, TrainResult, int]:
        """Train one genome's network from `seed` for the full budget (`fit`)."""
        run, net, trainable = self.start_run(genome, seed, settings, use_cache)
        run.advance(run.settings.epochs)
        return net, run.finish(), trainable

    def start_run(
        self,
        genome: np.ndarray,
        seed: int,
        settings: TrainSettings | None = None,
        use_cache: bool = True,
    ) -> tuple[TrainingRun, TransferNet, int]:
        """One genome's training run from `seed`, its network and trainable parameter
        count; the frozen prefix comes from the cache when it can (the trained net's own
        prefix weights are the template's anyway)."""
        settings = dataclasses.replace(
            settings or self.fitness.train_settings(), eval_batch_size=self.eval_batch
        )
        net = self.fresh_net(seed)
        trainable = net.set_trainable(genome.astype(bool), adapter=self.options.train_adapter)
        start = net.frozen_prefix() if (self.cache and use_cache) else 0
        cached = self.cache.get(start) if start > 0 else None
        model, splits = (net, self.splits) if cached is None else (Suffix(net, start), cached)
        params = net.trainable_parameters()
        run = self.run_class(model, params, splits["train"], splits["val"], settings, seed)
        return run, net, trainable

    def test_metrics(self, genome: np.ndarray, seed: int) -> dict[str, float]:
        """Retrain a genome exactly as in the search, then measure it on the test split."""
        net, result, trainable = self.train_genome(genome, seed)
        metrics = {"val_accuracy": result.best_val_accuracy, "trainable_params": trainable}
        precision = self.fitness.precision
        return metrics | test_split_metrics(net, self.splits, self.eval_batch, precision)

    def export(
        self, genome: np.ndarray, seed: int, path: Path, epochs: int | None, source: dict
    ) -> dict[str, Any]:
        """Retrain with the best epoch's weights kept, test, and save a `file:` model
        (loadable again with `model.backbone: file:PATH`) plus a JSON description."""
        fitness = (
            self.fitness if epochs is None else self.fitness.model_copy(update={"epochs": epochs})
        )
        net, result, trainable = self.train_genome(
            genome, seed, fitness.train_settings(restore_best=True)
        )
        metrics: dict[str, Any] = {
            "val_accuracy": result.best_val_accuracy,
            "trainable_params": trainable,
            "epochs": result.epochs_run,
        }
        metrics |= test_split_metrics(net, self.splits, self.eval_batch, fitness.precision)
        mask = self.space.to_json(genome)
        meta = {
            "mask": mask,
            "genes": [g.name for g in net.genes],
            "metrics": metrics,
            "classes": self.data.classes,
            **source,
        }
        export_model(net.cpu(), path, meta)
        return metrics

    # -- baselines ----------------------------------------------------------------------

    def baseline_genomes(self, budget: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Candidate genomes per baseline: the best candidate of each is reported."""
        n = self.space.n_genes
        out: dict[str, np.ndarray] = {}
        for name in self.options.baselines:
            if name == "full":
                out[name] = self.space.repair(np.ones((1, n)))
            elif name == "head":
                out[name] = np.zeros((1, n), dtype=np.uint8)
            elif name == "last_k":
                out[name] = self.space.repair(np.stack([self._last(k) for k in self._ks()]))
            elif name == "surgical":
                out[name] = self._surgical()
            elif name == "auto_rgn":
                out[name] = self.space.repair(np.ones((1, n)))  # all genes: see baseline_problem
            else:  # random, random_full
                out[name] = self.space.sample(max(1, budget), rng)
        return out

    open_baselines = ("random", "random_full")  # drawn until they used the search's time

    @property
    def baseline_budget(self) -> str:
        return self.options.baseline_budget

    def more_baseline_genomes(self, name: str, count: int, rng: np.random.Generator) -> np.ndarray:
        """`count` more candidates of an open-ended baseline (random masks)."""
        return self.space.sample(count, rng)

    def baseline_problem(self, name: str) -> LayersTask | None:
        """The task that evaluates a baseline's candidates when it is not this one:
        `auto_rgn` trains with per-tensor learning rates (train/auto_rgn.py), so its
        all-ones genome means something else than the plain full fine-tune; under
        successive halving every baseline but `random` (which isolates selection by
        sharing the search's schedule) trains each candidate for the full budget, as a
        practitioner would: a one-block fine-tune is not dropped on its first epoch."""
        halving = self.schedule.halving and name != "random"
        if name != "auto_rgn" and not halving:
            return None
        view = full_budget_view(self) if halving else copy.copy(self)
        if name == "auto_rgn":
            view.run_class, view.batched = AutoRgnRun, None
        return view

    def _surgical(self) -> np.ndarray:
        """One candidate per gene group (the genes whose weights start in one stage of
        the cut backbone: a block at granularity block, a stage at stage), the others
        frozen (Lee et al., ICLR 2023)."""
        rows = []
        for genes in _stage_groups(self.template, self.options):
            mask = np.zeros(self.space.n_genes, dtype=np.uint8)
            mask[genes] = 1
            rows.append(mask)
        return self.space.repair(np.stack(rows))

    def _ks(self) -> list[int]:
        n = self.space.n_genes
        if self.options.last_k:
            return sorted({min(max(1, k), n) for k in self.options.last_k})
        return sorted({k for k in (1, 2, 4, 8, 16, n // 4, n // 2) if 1 <= k < n})

    def _last(self, k: int) -> np.ndarray:
        mask = np.zeros(self.space.n_genes, dtype=np.uint8)
        mask[-k:] = 1
        return mask

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "model": self.template.describe(), "data": self.data.describe()}

    def after_search(self, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        """summary.json gets the genes' names (one per genome bit), so that the report
        can name the layers of its layer map."""
        summary = {**summary, "genes": [g.name for g in self.template.genes]}
        atomic_write_json(Path(run_dir) / "summary.json", summary)
        return summary
