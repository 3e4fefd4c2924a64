"""Task `hparams`: how to transfer a pretrained backbone (SEEDS.md §2).

Genome (`hparams_space.py`): kept depth (truncation), frozen depth (the frozen prefix),
learning rate, dropout and, optionally, weight decay, batch size, head width and SE
blocks on/off. Fitness: train, then minus the validation loss, reported as the
objective `val_loss` (min): the best validation loss over the epochs.

`fitness.schedule: successive_halving` evaluates a whole generation at once: every
genome trains `min_epochs`, the best 1/eta train on to eta times as many, and so on up
to `fitness.epochs` (`train/halving.py`). Each journal line records its `fidelity`
(1.0: the full-budget value). Runs continue where they stopped, so a genome reaching
the last rung gets exactly its full-budget value, and a genome stopped earlier reports
the best loss of its own training so far, a pessimistic bound of its full value.
Comparisons are therefore like with like within a generation (every rung ranks
genomes trained for the same epochs), and across fidelities the GA can only prefer a
lower-fidelity genome when even its pessimistic value is better.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field

from evotune.data import Batches, DataConfig, Dataset, load_data
from evotune.engine.problem import Evaluation, Objective
from evotune.executors.guard import describe, failed
from evotune.models import ModelConfig, TransferNet, build_model
from evotune.models.checkpoint import export_model
from evotune.models.derive import derive
from evotune.sections import Section, threads_field
from evotune.tasks.base import Task
from evotune.tasks.hparams_space import GeneRanges, Plan, build_space, decode, encode
from evotune.train.device import (
    PRECISION_HELP,
    Precision,
    check_precision,
    place,
    resolve_device,
)
from evotune.train.finetune import TrainingRun, TrainSettings, eval_batch_size, test_split_metrics
from evotune.train.prefix_cache import PrefixCache, Suffix
from evotune.train.schedule import (
    Outcome,
    Schedule,
    Scheduled,
    ScheduleFields,
    combine,
)

DIRECTIONS = {"val_loss": "min", "val_accuracy": "max", "trainable_params": "min"}


class HparamsOptions(Section):
    genes: GeneRanges = GeneRanges()
    objectives: list[Literal["val_loss", "val_accuracy", "trainable_params"]] = ["val_loss"]
    baselines: list[Literal["default"]] = Field(
        ["default"], description="default: the config's own settings, every block kept"
    )


class HparamsFitness(ScheduleFields):
    epochs: int = Field(5, ge=1, description="full training budget per genome")
    batch_size: int = Field(64, ge=1, description="when batch_size is not a gene")
    lr: float = Field(1e-3, gt=0, description="when lr is not a gene")
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0, description="when weight_decay is not a gene")
    patience: int | None = Field(5, ge=1, description="early stopping on validation loss")
    device: str = "auto"
    precision: Precision = Field("fp32", description=PRECISION_HELP)
    cache: bool = Field(True, description="cache frozen-prefix activations")
    cache_gb: float = Field(
        2.0, gt=0, description="memory budget of the prefix cache; larger entries spill to disk"
    )
    threads: int | None = threads_field()


def _objectives(options: HparamsOptions) -> tuple[Objective, ...]:
    return tuple(Objective(name, DIRECTIONS[name]) for name in options.objectives)


class HparamsTask(Scheduled, Task):
    name = "hparams"
    description = "transfer hyperparameters: kept/frozen depth, lr, dropout, ... (mixed genome)"
    genome_kind = "mixed"
    Options = HparamsOptions
    Fitness = HparamsFitness
    Data = DataConfig
    Model = ModelConfig
    seed_preset = "tl-hparams"
    # SEEDS.md §2: DenseNet-121 with SE blocks, 1-58 dense layers kept, 0-18 frozen,
    # lr 1e-6..1e-1, dropout 0.1..0.9, Adam, full-budget evaluation.
    seed_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "model": {"backbone": "torchvision:densenet121", "weights": "DEFAULT", "se_blocks": True},
        "task": {
            "genes": {
                "kept": [1, 58],
                "frozen": [0, 18],
                "lr": [1e-6, 1e-1],
                "dropout": [0.1, 0.9],
            }
        },
        "fitness": {"optimizer": "adam", "schedule": "full"},
    }

    def __init__(
        self,
        template: TransferNet,
        data: Dataset,
        options: HparamsOptions,
        fitness: HparamsFitness,
        model: ModelConfig,
        device: torch.device,
    ) -> None:
        check_precision(fitness.precision, device)
        self.template = place(template, device).eval()
        self.data, self.options, self.fitness, self.device = data, options, fitness, device
        self.space = build_space(options.genes, template.n_blocks)
        self.objectives = _objectives(options)
        self.defaults = Plan(
            kept=template.n_blocks,
            frozen=0,
            lr=fitness.lr,
            dropout=model.dropout,
            weight_decay=fitness.weight_decay,
            batch_size=fitness.batch_size,
            head_width=model.head_hidden or 0,
            se_blocks=model.se_blocks,
        )
        self.schedule = Schedule.of(fitness)
        halving = self.schedule.halving
        self.whole_generation = halving  # halving ranks the generation's genomes together
        self.genomes_per_call = None if halving else 1
        self.budgets = self.schedule.budgets
        self.splits = {name: split.to(device) for name, split in data.splits().items()}
        self.eval_batch = eval_batch_size(data.input_shape)
        inputs = {k: self.splits[k] for k in ("train", "val")}
        budget, chunk = fitness.cache_gb * 2**30, min(512, self.eval_batch)
        self.cache = PrefixCache(template, inputs, budget, chunk) if fitness.cache else None

    @classmethod
    def objectives_for(cls, config: Any) -> tuple[Objective, ...]:
        return _objectives(config.task)

    @classmethod
    def from_config(cls, config: Any) -> HparamsTask:
        data = load_data(config.data, streaming=True)
        # The template has no SE blocks and a plain head: each genome adds its own.
        base = config.model.model_copy(update={"se_blocks": False, "head_hidden": None})
        template = build_model(base, data.input_shape, data.num_classes, seed=config.search.seed)
        device = resolve_device(config.fitness.device)
        return cls(template, data, config.task, config.fitness, config.model, device)

    # -- fitness ------------------------------------------------------------------------

    def plan(self, genome: np.ndarray) -> Plan:
        return decode(self.space, genome, self.defaults)

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        """Under halving the generation's genomes are ranked together; one that fails
        (to build or to train) fails alone (see train/schedule.py)."""
        outcomes = self.schedule.train(self._start, genomes, seeds, self._score)
        return [self._evaluation(outcome) for outcome in outcomes]

    def _start(self, genome: np.ndarray, seed: int) -> tuple[TrainingRun, int]:
        run, _, trainable = self.start_run(self.plan(genome), seed)
        return run, trainable  # the run holds the net: dropped once the run is released

    def _score(self, run: TrainingRun) -> float:
        """A run's rank within a rung, lower is better: the first objective, or the
        validation loss when that is `trainable_params` (fixed before training)."""
        result = run.result()
        if self.options.objectives[0] == "val_accuracy":
            return -result.best_val_accuracy
        return result.best_val_loss

    def _evaluation(self, outcome: Outcome) -> Evaluation:
        if outcome.error is not None:
            return failed(self, describe(outcome.error))
        rows = [self._run_metrics(run, outcome.extra) for run in outcome.runs]
        metrics = combine(rows, self.options.objectives[0])
        metrics |= self.schedule.metrics(outcome.reached, outcome.runs)
        return Evaluation(tuple(float(metrics[o]) for o in self.options.objectives), metrics)

    def _run_metrics(self, run: TrainingRun, trainable: int) -> dict[str, Any]:
        result = run.result()
        return {
            "val_loss": result.best_val_loss,
            "val_accuracy": result.best_val_accuracy,
            "trainable_params": trainable,
            "epochs": result.epochs_run,
            "train_seconds": round(result.seconds, 3),
        }

    def build_net(self, plan: Plan, seed: int) -> tuple[TransferNet, int]:
        """The genome's network, new parts drawn from `seed`, frozen as planned; returns
        it with its trainable parameter count. New Linear/Conv layers (head, SE blocks)
        are Kaiming-initialised, as in SEEDS.md §2; drawn on the CPU before moving to the
        device, so a seed gives the same network everywhere."""
        torch.manual_seed(seed)
        net = derive(
            self.template,
            self.data.num_classes,
            keep=plan.kept,
            se_blocks=plan.se_blocks,
            head_hidden=plan.head_width or None,
            dropout=plan.dropout,
            init="kaiming",
        )
        net = place(net, self.device)  # channels_last on a GPU, as the template
        cut = _frozen_stages(net, plan.frozen)
        mask = [gene.stage >= cut for gene in net.genes]
        # the adapter is the first layer: frozen with any frozen prefix
        trainable = net.set_trainable(mask, adapter=plan.frozen == 0)
        return net, trainable

    def start_run(
        self, plan: Plan, seed: int, restore_best: bool = False
    ) -> tuple[TrainingRun, TransferNet, int]:
        """A training run of the planned network (from the frozen prefix's cached
        activations when there are any), the network, and its trainable parameters."""
        net, trainable = self.build_net(plan, seed)
        model, splits = self._inputs(net)
        settings = self.settings(plan, restore_best)
        params = net.trainable_parameters()
        run = TrainingRun(model, params, splits["train"], splits["val"], settings, seed)
        return run, net, trainable

    def _inputs(self, net: TransferNet) -> tuple[torch.nn.Module, dict[str, Batches]]:
        """The model to train and its data: from the frozen prefix's cached activations
        when there are any, else the whole net on the data."""
        start = net.frozen_prefix() if self.cache is not None else 0
        same = net.stage_names[:start] == self.template.stage_names[:start]
        cached = self.cache.get(start) if start > 0 and same else None
        if cached is None:
            return net, self.splits
        return Suffix(net, start), cached

    def settings(self, plan: Plan, restore_best: bool = False) -> TrainSettings:
        f = self.fitness
        return TrainSettings(
            epochs=f.epochs,
            batch_size=plan.batch_size,
            lr=plan.lr,
            optimizer=f.optimizer,
            momentum=f.momentum,
            weight_decay=plan.weight_decay,
            patience=f.patience,
            restore_best=restore_best,
            eval_batch_size=self.eval_batch,
            precision=f.precision,
        )

    # -- after the search ---------------------------------------------------------------

    def baseline_genomes(self, budget: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """`default`: the config's own settings (every block kept, nothing frozen),
        moved into the gene ranges where they fall outside."""
        out = {}
        if "default" in self.options.baselines:
            out["default"] = encode(self.space, self.defaults)[None, :]
        return out

    def test_metrics(self, genome: np.ndarray, seed: int) -> dict[str, float]:
        """Retrain a genome with the full budget, then measure it on the test split."""
        run, net, _ = self.start_run(self.plan(genome), seed)
        run.advance(self.fitness.epochs)
        metrics: dict[str, float] = {"val_loss": run.result().best_val_loss}
        return metrics | test_split_metrics(
            net, self.splits, self.eval_batch, self.fitness.precision
        )

    def export(
        self, genome: np.ndarray, seed: int, path: Path, epochs: int | None, source: dict
    ) -> dict[str, Any]:
        """Retrain with the best epoch's weights kept, test, and save a `file:` model
        (loadable again with `model.backbone: file:PATH`) plus a JSON description."""
        plan = self.plan(genome)
        run, net, trainable = self.start_run(plan, seed, restore_best=True)
        run.advance(epochs or self.fitness.epochs)
        result = run.finish()
        metrics: dict[str, Any] = {
            "val_loss": result.best_val_loss,
            "val_accuracy": result.best_val_accuracy,
            "trainable_params": trainable,
            "epochs": result.epochs_run,
        }
        metrics |= test_split_metrics(net, self.splits, self.eval_batch, self.fitness.precision)
        meta = {
            "hparams": self.space.to_json(genome),
            "plan": plan.describe(),
            "metrics": metrics,
            "classes": self.data.classes,
            **source,
        }
        export_model(copy.deepcopy(net).cpu(), path, meta)
        return metrics

    def describe(self) -> dict[str, Any]:
        return {
            "task": self.name,
            "model": self.template.describe(),
            "data": self.data.describe(),
            "genes": self.space.describe()["genes"],
            "schedule": self.fitness.schedule,
            "rungs": self.budgets,
        }


def _frozen_stages(net: TransferNet, frozen: int) -> int:
    """Stages before the end of the `frozen`-th block (0: none)."""
    if frozen <= 0:
        return 0
    blocks = [i for i, kind in enumerate(net.stage_kinds) if kind == "block"]
    return blocks[min(frozen, len(blocks)) - 1] + 1
