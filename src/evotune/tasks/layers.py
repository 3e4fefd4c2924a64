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
from evotune.models import ModelConfig, TransferNet, build_model
from evotune.models.checkpoint import export_model
from evotune.sections import Section
from evotune.tasks.base import Task
from evotune.train.device import resolve_device
from evotune.train.finetune import (
    TrainResult,
    TrainSettings,
    eval_batch_size,
    fit,
    test_split_metrics,
)
from evotune.train.prefix_cache import PrefixCache, Suffix

BASELINES = ("full", "head", "last_k", "random")


class LayersOptions(Section):
    frozen_prefix: int = Field(0, ge=0, description="leading genes always frozen")
    objectives: list[Literal["accuracy", "trainable_params"]] = ["accuracy"]
    train_adapter: bool = Field(
        True, description="train the input adapter; false lets frozen prefixes be cached"
    )
    baselines: list[Literal["full", "head", "last_k", "random"]] = list(BASELINES)
    last_k: list[int] | None = Field(None, description="k values for the last-k sweep")


class LayersFitness(Section):
    epochs: int = Field(5, ge=1)
    batch_size: int = Field(256, ge=1)
    lr: float = Field(1e-4, gt=0)
    optimizer: Literal["adam", "sgd"] = "adam"
    momentum: float = Field(0.0, ge=0, lt=1)
    weight_decay: float = Field(0.0, ge=0)
    patience: int | None = Field(5, ge=1, description="early stopping on validation loss")
    device: str = "auto"
    cache: bool = Field(True, description="cache frozen-prefix activations")
    cache_gb: float = Field(
        2.0, gt=0, description="memory budget of the prefix cache; larger entries spill to disk"
    )
    threads: int | None = Field(
        None,
        ge=1,
        description="torch CPU threads of every evaluation, wherever it runs (local, Ray, "
        "baselines, export): a genome's value depends on it; null: resolved into "
        "config.yaml as half the cores (at most 8), or executor.num_cpus on Ray",
    )

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
        )


def _objectives(options: LayersOptions) -> tuple[Objective, ...]:
    directions = {"accuracy": "max", "trainable_params": "min"}
    return tuple(Objective(name, directions[name]) for name in options.objectives)


class LayersTask(Task):
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
    genomes_per_call = 1

    def __init__(
        self,
        template: TransferNet,
        data: Dataset,
        options: LayersOptions,
        fitness: LayersFitness,
        device: torch.device,
    ) -> None:
        self.template = template.to(device).eval()
        self.data, self.options, self.fitness, self.device = data, options, fitness, device
        n_genes = len(template.genes)
        if options.frozen_prefix >= n_genes:
            raise UserError(
                f"task.frozen_prefix: {options.frozen_prefix} >= the backbone's {n_genes} genes"
            )
        self.space = BinarySpace(n_genes, frozen_prefix=options.frozen_prefix)
        self.objectives = _objectives(options)
        self.splits = {name: split.to(device) for name, split in data.splits().items()}
        self.eval_batch = eval_batch_size(data.input_shape)
        inputs = {k: self.splits[k] for k in ("train", "val")}
        budget, chunk = fitness.cache_gb * 2**30, min(512, self.eval_batch)
        self.cache = PrefixCache(template, inputs, budget, chunk) if fitness.cache else None

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
        return [self._evaluation(g, int(s)) for g, s in zip(genomes, seeds)]

    def _evaluation(self, genome: np.ndarray, seed: int) -> Evaluation:
        net, result, trainable = self.train_genome(genome, seed)
        fitness = {"accuracy": result.best_val_accuracy, "trainable_params": float(trainable)}
        return Evaluation(
            tuple(fitness[o] for o in self.options.objectives),
            {
                "val_accuracy": result.best_val_accuracy,
                "val_loss": result.best_val_loss,
                "trainable_params": trainable,
                "trainable_genes": int(np.sum(genome)),
                "epochs": result.epochs_run,
                "train_seconds": round(result.seconds, 3),
            },
        )

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
        """Train one genome's network from `seed`; the frozen prefix comes from the cache
        when it can (the trained net's own prefix weights are the template's anyway)."""
        settings = dataclasses.replace(
            settings or self.fitness.train_settings(), eval_batch_size=self.eval_batch
        )
        net = self.fresh_net(seed)
        trainable = net.set_trainable(genome.astype(bool), adapter=self.options.train_adapter)
        start = net.frozen_prefix() if (self.cache and use_cache) else 0
        cached = self.cache.get(start) if start > 0 else None
        model, splits = (net, self.splits) if cached is None else (Suffix(net, start), cached)
        params = net.trainable_parameters()
        result = fit(model, params, splits["train"], splits["val"], settings, seed)
        return net, result, trainable

    def test_metrics(self, genome: np.ndarray, seed: int) -> dict[str, float]:
        """Retrain a genome exactly as in the search, then measure it on the test split."""
        net, result, trainable = self.train_genome(genome, seed)
        metrics = {"val_accuracy": result.best_val_accuracy, "trainable_params": trainable}
        return metrics | test_split_metrics(net, self.splits, self.eval_batch)

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
        metrics |= test_split_metrics(net, self.splits, self.eval_batch)
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
            else:
                out[name] = self.space.sample(max(1, budget), rng)
        return out

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
