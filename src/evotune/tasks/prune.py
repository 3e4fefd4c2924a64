"""Task `prune`: which input features (or hidden neurons) of a transfer head to keep,
trading accuracy against size and OOD robustness (MOEvoPruneDeepTL, SEEDS.md §3).

The backbone is frozen: its features are extracted once (and cached on disk). A genome
has one bit per input feature (`features`), per hidden unit (`neurons`) or both; each
generation's heads train together (`train/popheads.py`). Objectives: validation
accuracy (max), fraction of active bits (min), AUROC of telling the validation set
from OOD inputs (max), each optional.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from pydantic import Field, model_validator

from evotune.data import DataConfig, load_data
from evotune.engine.problem import Evaluation, Objective
from evotune.engine.spaces import BinarySpace
from evotune.engine.state import atomic_write_json
from evotune.errors import UserError
from evotune.models import ModelConfig, TransferNet, build_model
from evotune.prune.featureset import FeatureSet, build_features
from evotune.prune.oodset import range_map, to_range
from evotune.sections import Section
from evotune.tasks.base import Task
from evotune.train.device import resolve_device
from evotune.train.feature_ood import FEATURE_SCORES, FeatureReference
from evotune.train.maskedhead import Head, HeadSettings, Member
from evotune.train.ood import auroc, ood_scores
from evotune.train.popheads import predict, train_heads

DIRECTIONS = {"accuracy": "max", "active_fraction": "min", "auroc": "max"}
SEED_WINDOWS = [(50, 60), (55, 65), (60, 70), (65, 75), (70, 80), (75, 85), (80, 90), (85, 95)]
RANDOM_BASELINES = 30  # random masks evaluated for the `random` baseline, at most


class ExplainOptions(Section):
    top: int = Field(10, ge=1, description="most frequent features explained")
    samples: int = Field(4, ge=1, description="test images per Grad-CAM++ row")
    stage: int = Field(-1, description="backbone stage of the Grad-CAM++ maps (-1: last)")


OodScore = Literal["odin", "msp", "energy", "mahalanobis", "knn"]
DEFAULT_OOD_SCORE = "mahalanobis"  # see BENCHMARKS.md: ranks OOD right where odin inverts


class PruneOptions(Section):
    mode: Literal["features", "neurons", "both"] = Field(
        "features", description="one bit per input feature | per hidden unit | both"
    )
    objectives: list[Literal["accuracy", "active_fraction", "auroc"]] | None = Field(
        None, description="default: accuracy, active_fraction, and auroc when ood is given"
    )
    ood: list[DataConfig] = Field([], description="OOD datasets (data: sections)")
    ood_match_range: bool = Field(
        True, description="map each OOD dataset onto the in-distribution value range"
    )
    input_range: tuple[float, float] | None = Field(
        None, description="map the inputs (1st-99th percentile) onto [low, high] first"
    )
    ood_score: OodScore = Field(
        DEFAULT_OOD_SCORE,
        description="the auroc objective's score: logit scores odin | msp | energy, or "
        "feature scores mahalanobis | knn (preset seed: odin, the seed's)",
    )
    ood_scores: list[OodScore] = Field(
        [], description="more scores whose AUROC is recorded in the metrics (auroc_<name>)"
    )
    knn_k: int = Field(50, ge=1, description="knn: the neighbour whose distance scores")
    temperature: float | None = Field(None, gt=0, description="default 1000 odin, 1 others")
    baselines: list[Literal["full", "random"]] = ["full"]
    analysis: bool = Field(True, description="ensembles and explanations after the search")
    windows: list[tuple[float, float]] = Field(
        SEED_WINDOWS, description="accuracy (and AUROC) percentile windows of the ensembles"
    )
    explain: ExplainOptions = ExplainOptions()

    @model_validator(mode="after")
    def _objectives(self) -> PruneOptions:
        if self.objectives is None:
            self.objectives = ["accuracy", "active_fraction"] + (["auroc"] if self.ood else [])
        if not self.objectives or len(set(self.objectives)) != len(self.objectives):
            raise ValueError(f"objectives must be distinct and not empty, got {self.objectives}")
        if "auroc" in self.objectives and not self.ood:
            raise ValueError(
                "the auroc objective needs OOD data: add ood: [{source: digits}] (any data: "
                "sections) or drop auroc from objectives"
            )
        return self


class PruneFitness(Section):
    hidden: int = Field(512, ge=1, description="hidden ReLU units of the head")
    epochs: int = Field(600, ge=1, description="cap; early stopping usually ends sooner")
    batch_size: int = Field(32, ge=1)
    lr: float = Field(1e-3, gt=0)
    momentum: float = Field(0.9, ge=0, lt=1)
    nesterov: bool = True
    patience: int | None = Field(10, ge=1, description="early stopping on the training loss")
    min_delta: float = Field(0.0, ge=0)
    folds: int | None = Field(None, ge=2, description="k-fold averaged fitness")
    device: str = "auto"
    threads: int | None = Field(
        None,
        ge=1,
        description="CPU threads (feature extraction; worker threads over groups of heads, "
        "whose results do not depend on it); null: resolved into config.yaml as half the "
        "cores (at most 8), or executor.num_cpus on Ray",
    )
    group_mb: float = Field(8.0, gt=0, description="cache budget of a group of heads")
    extract_batch: int = Field(256, ge=1, description="batch size of feature extraction")
    cache: bool = Field(True, description="keep extracted features on disk")

    def head_settings(self) -> HeadSettings:
        return HeadSettings(
            hidden=self.hidden,
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            momentum=self.momentum,
            nesterov=self.nesterov,
            patience=self.patience,
            min_delta=self.min_delta,
            group_mb=self.group_mb,
            threads=self.threads,
        )


def _objectives(options: PruneOptions) -> tuple[Objective, ...]:
    return tuple(Objective(name, DIRECTIONS[name]) for name in options.objectives or [])


class PruneTask(Task):
    name = "prune"
    description = "which head features/neurons to keep: accuracy, size, OOD AUROC"
    genome_kind = "binary"
    Options = PruneOptions
    Fitness = PruneFitness
    Data = DataConfig
    Model = ModelConfig
    seed_preset = "moevoprune"
    # SEEDS.md §3: ImageNet ResNet-50, average pooled (2048 features). The head and its
    # training (512 hidden, SGD 1e-3 Nesterov, batch 32, 600 epochs, patience 10 on the
    # training loss) are already the defaults of `fitness`.
    seed_defaults: ClassVar[dict[str, dict[str, Any]]] = {
        "model": {"backbone": "torchvision:resnet50", "weights": "DEFAULT"},
        "task": {"ood_score": "odin"},
    }
    genomes_per_call = None  # a call's heads train at once

    def __init__(
        self,
        features: FeatureSet,
        options: PruneOptions,
        fitness: PruneFitness,
        device: torch.device,
        net: TransferNet | None = None,
        images: torch.Tensor | None = None,
        split_seed: int = 0,
    ) -> None:
        self.feats = features.to(device)
        self.options, self.fitness, self.device = options, fitness, device
        # for explanations and export: the backbone and the test (else validation) inputs
        self.net, self.images = net, images
        self.samples = None if images is None else images[: options.explain.samples]
        self.settings = fitness.head_settings()
        n_bits = {"features": features.n_features, "neurons": fitness.hidden}
        self.n_bits = n_bits.get(options.mode, features.n_features + fitness.hidden)
        self.space = BinarySpace(self.n_bits, ones_fraction="uniform")
        self.objectives = _objectives(options)
        self.fold_rows = features.folds(fitness.folds, split_seed) if fitness.folds else None
        self._reference: FeatureReference | None = None
        if features.ood_val is not None and uses_feature_scores(options):
            self.reference  # noqa: B018 - fitted now: a bad knn_k is refused before the search

    @classmethod
    def objectives_for(cls, config: Any) -> tuple[Objective, ...]:
        return _objectives(config.task)

    @classmethod
    def from_config(cls, config: Any) -> PruneTask:
        data = load_data(config.data)
        ood = [load_data(c) for c in config.task.ood]
        device = resolve_device(config.fitness.device)
        # the features cache is keyed by the backbone's tensors: any seed is safe
        net = build_model(config.model, data.input_shape, data.num_classes, seed=config.search.seed)
        f = config.fitness
        options = config.task
        input_map = None  # recorded by export: new data is mapped as this run's was
        if options.input_range is not None:
            lo, scale = range_map(data.train.x, *options.input_range)
            input_map = {"subtract": float(lo), "multiply": float(scale)}
            input_map["add"] = float(options.input_range[0])
            mapped = to_range({k: s.x for k, s in data.splits().items()}, *options.input_range)
            for name, split in data.splits().items():
                split.x = mapped[name]
        features = build_features(
            net, data, ood, device, f.extract_batch, f.cache, options.ood_match_range
        )
        images = (data.test or data.val).x
        task = cls(features, config.task, f, device, net, images, config.data.split.seed)
        task.notes = data.notes + [
            f"task.ood[{i}]: {n}" for i, d in enumerate(ood) for n in d.notes
        ]
        task.classes, task.input_map = data.classes, input_map
        return task

    def data_notes(self) -> list[str]:
        return list(getattr(self, "notes", []))

    # -- genomes -> heads ---------------------------------------------------------------

    def masks(self, genomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(feature masks (P, D), neuron masks (P, H)); the side a mode ignores is all on."""
        g = np.asarray(genomes, dtype=np.uint8).reshape(len(genomes), -1)
        d, h = self.feats.n_features, self.fitness.hidden
        ones_f, ones_h = np.ones((len(g), d), np.uint8), np.ones((len(g), h), np.uint8)
        if self.options.mode == "features":
            return g, ones_h
        if self.options.mode == "neurons":
            return ones_f, g
        return g[:, :d], g[:, d:]

    def members(self, genomes: np.ndarray, seeds: np.ndarray, rows=None) -> list[Member]:
        fm, nm = self.masks(genomes)
        return [
            Member(int(s), _on(f, self.device), _on(h, self.device), rows)
            for f, h, s in zip(fm, nm, seeds)
        ]

    def train(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Head]:
        """Heads trained on the training split (the search's models when folds is off)."""
        members = self.members(genomes, seeds)
        return train_heads(
            members, self.feats.train_x, self.feats.train_y, self.settings, self.feats.n_classes
        )

    # -- fitness ------------------------------------------------------------------------

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        """Every genome's objectives; one that keeps no feature (or no hidden unit) is no
        classifier at all: NaN in every objective, so it ranks last and is never on the
        front (its zero size would otherwise make it a member)."""
        empty = self.empty(genomes)
        score = self._scored_folds if self.fold_rows else self._scored
        kept = score(genomes[~empty], seeds[~empty]) if (~empty).any() else []
        scored = iter(kept)
        out = []
        for genome, is_empty in zip(genomes, empty):
            metrics = {"empty": True} if is_empty else next(scored)
            metrics["active_fraction"] = float(np.mean(genome))
            nan = float("nan")
            fitness = tuple(nan if is_empty else float(metrics[o.name]) for o in self.objectives)
            out.append(Evaluation(fitness, metrics))
        return out

    def empty(self, genomes: np.ndarray) -> np.ndarray:
        """Which genomes keep no input feature or no hidden unit."""
        features, neurons = self.masks(genomes)
        return (features.sum(axis=1) == 0) | (neurons.sum(axis=1) == 0)

    def _scored(self, genomes: np.ndarray, seeds: np.ndarray) -> list[dict[str, Any]]:
        heads = self.train(genomes, seeds)
        scores = self.score(heads, self.feats.val_x, self.feats.val_y, self.feats.ood_val)
        return [_describe(h) | s for h, s in zip(heads, scores)]

    def _scored_folds(self, genomes: np.ndarray, seeds: np.ndarray) -> list[dict[str, Any]]:
        """Mean metrics over k folds of the pooled training + validation features."""
        x, y = self.feats.pooled()
        members = []
        for train_rows, _ in self.fold_rows:
            members += self.members(genomes, seeds, train_rows.to(self.device))
        heads = train_heads(members, x, y, self.settings, self.feats.n_classes)
        p = len(genomes)
        per_fold = [
            self.score(heads[f * p : (f + 1) * p], x[held], y[held], self.feats.ood_val)
            for f, (_, held) in enumerate(self.fold_rows)
        ]
        return [
            _describe(heads[i]) | _mean([fold[i] for fold in per_fold]) | {"folds": len(per_fold)}
            for i in range(p)
        ]

    def score(
        self, heads: list[Head], x: torch.Tensor, y: torch.Tensor, ood: torch.Tensor | None
    ) -> list[dict[str, float]]:
        """Accuracy and (with OOD data) AUROC of every head on one labelled set: `auroc`
        by `task.ood_score`, `auroc_<name>` by each of `task.ood_scores`."""
        logits = predict(heads, x)
        accuracy = (logits.argmax(dim=2) == y).double().mean(dim=1)
        out = [{"accuracy": float(a)} for a in accuracy]
        if ood is None or not len(ood):
            return out
        inputs = _Inputs(self, heads, x, logits)
        outputs = _Inputs(self, heads, ood)
        names = [self.options.ood_score, *self.options.ood_scores]
        for i, name in enumerate(dict.fromkeys(names)):
            roc = auroc(inputs.scores(name), outputs.scores(name))
            for row, value in zip(out, roc):
                row["auroc" if i == 0 else f"auroc_{name}"] = float(value)
        return out

    def ood_objective_scores(
        self, heads: list[Head], x: torch.Tensor, logits: torch.Tensor | None = None
    ) -> torch.Tensor:
        """(P, N) scores of `task.ood_score` (higher = more in-distribution)."""
        return _Inputs(self, heads, x, logits).scores(self.options.ood_score)

    def feature_masks(self, heads: list[Head]) -> torch.Tensor:
        """(P, D) float masks of the features each head reads."""
        masks = torch.zeros(len(heads), self.feats.n_features, dtype=torch.float64)
        for row, head in zip(masks, heads):
            row[head.inputs.cpu()] = 1.0
        return masks.to(self.device)

    @property
    def reference(self) -> FeatureReference:
        """The training features the feature scores measure against (fitted once)."""
        if self._reference is None:
            f, k = self.feats, self.options.knn_k
            if k > len(f.train_x):
                raise UserError(
                    f"task.knn_k: {k} is larger than the training split's {len(f.train_x)} "
                    "examples; lower it"
                )
            self._reference = FeatureReference(f.train_x, f.train_y, f.n_classes, k)
        return self._reference

    def reference_point(self) -> tuple[float, ...]:
        """The worst natural values: accuracy 0, every bit active, AUROC 0."""
        worst = {"accuracy": 0.0, "active_fraction": 1.0, "auroc": 0.0}
        return tuple(worst[o.name] for o in self.objectives)

    # -- test metrics, baselines, export, analysis --------------------------------------

    def test_metrics(self, genome: np.ndarray, seed: int) -> dict[str, float]:
        """Retrain on the training split (as the search did, without folds) and measure
        on the test split and the OOD test inputs."""
        head = self.train(genome[None, :], np.array([seed]))[0]
        if self.feats.test_x is None:
            return {}
        row = self.score([head], self.feats.test_x, self.feats.test_y, self.feats.ood_test)[0]
        return {f"test_{k}": v for k, v in row.items()}

    def baseline_genomes(self, budget: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        out = {}
        if "full" in self.options.baselines:
            out["full"] = np.ones((1, self.n_bits), dtype=np.uint8)
        if "random" in self.options.baselines:
            out["random"] = self.space.sample(max(1, min(budget, RANDOM_BASELINES)), rng)
        return out

    def export(
        self, genome: np.ndarray, seed: int, path: Path, epochs: int | None, source: dict
    ) -> dict[str, Any]:
        from evotune.prune.export import export_member

        return export_member(self, genome, seed, Path(path), epochs, source)

    def after_search(self, run_dir: Path, summary: dict[str, Any]) -> dict[str, Any]:
        """pareto.csv, ensembles and explanations of the front (analysis.json, plots/)."""
        from evotune.prune.analysis import analyse

        summary = analyse(self, Path(run_dir), summary)
        warning = self.inversion_warning(summary)
        if warning is not None:
            print(f"warning: {warning}", file=sys.stderr)
            summary["warnings"] = [*summary.get("warnings", []), warning]
            atomic_write_json(Path(run_dir) / "summary.json", summary)
        return summary

    def inversion_warning(self, summary: dict[str, Any]) -> str | None:
        """A sentence when the most accurate front member's AUROC is below 0.5: its OOD
        score ranks the OOD set as MORE in-distribution, so the objective rewards the
        wrong heads (seen with logit scores when the OOD data resembles the backbone's
        source data)."""
        front = [e for e in summary.get("pareto", []) if "auroc" in e["metrics"]]
        if not front:
            return None
        top = max(front, key=lambda e: e["metrics"]["accuracy"])
        value = top["metrics"]["auroc"]
        if value >= 0.5:
            return self._recorded_inversion(top["metrics"])
        others = [n for n in ("mahalanobis", "knn", "energy") if n != self.options.ood_score]
        return (
            f"the most accurate front member's OOD AUROC is {value:.3f} (< 0.5): the "
            f"{self.options.ood_score} score ranks the OOD set as more in-distribution than "
            "the task's own data. Logit scores measure confidence, and a small head can be "
            "more confident on inputs unlike its training data (an OOD set resembling the "
            "backbone's source data makes it likely); the feature scores measure distance "
            f"to the training data instead: try task.ood_score: {' or '.join(others)} "
            "(task.ood_scores records several to compare)"
        )

    def _recorded_inversion(self, metrics: dict[str, Any]) -> str | None:
        """A sentence when a score recorded beside the objective's (`task.ood_scores`)
        inverts on the most accurate member while the objective's does not."""
        recorded = {n: metrics.get(f"auroc_{n}") for n in self.options.ood_scores}
        inverted = {n: v for n, v in recorded.items() if v is not None and v < 0.5}
        if not inverted:
            return None
        listed = ", ".join(f"{n} {v:.3f}" for n, v in inverted.items())
        return (
            f"on the most accurate front member, the recorded OOD score(s) {listed} rank "
            "the OOD set as more in-distribution than the task's own data (AUROC < 0.5); "
            f"the objective's {self.options.ood_score} does not "
            f"({metrics['auroc']:.3f}): do not use {' or '.join(inverted)} as task.ood_score here"
        )

    def describe(self) -> dict[str, Any]:
        f = self.feats
        return {
            "task": self.name,
            "mode": self.options.mode,
            "features": f.n_features,
            "hidden": self.fitness.hidden,
            "examples": {"train": len(f.train_x), "val": len(f.val_x)},
            "ood": 0 if f.ood_val is None else len(f.ood_val),
            "features_from_cache": f.from_cache,
        }


def uses_feature_scores(options: PruneOptions) -> bool:
    return any(name in FEATURE_SCORES for name in [options.ood_score, *options.ood_scores])


class _Inputs:
    """One set of inputs seen by a population of heads, scored by any OOD score (logits
    computed once, feature masks built once)."""

    def __init__(self, task: PruneTask, heads: list[Head], x: torch.Tensor, logits=None) -> None:
        self.task, self.heads, self.x, self.logits, self.masks = task, heads, x, logits, None

    def scores(self, name: str) -> torch.Tensor:
        if name in FEATURE_SCORES:
            if self.masks is None:
                self.masks = self.task.feature_masks(self.heads)
            return self.task.reference.scores(name, self.masks, self.x)
        if self.logits is None:
            self.logits = predict(self.heads, self.x)
        return ood_scores(self.logits, name, self.task.options.temperature)


def _on(mask: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.flatnonzero(mask).astype(np.int64)).to(device)


def _describe(head: Head) -> dict[str, Any]:
    return {
        "active_features": len(head.inputs),
        "active_neurons": len(head.hidden),
        "head_params": head.n_params,
        "epochs": head.epochs,
        "train_loss": round(head.train_loss, 6),
    }


def _mean(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in rows])) for k in rows[0]}
