"""What task `weights`'s two kinds (weights_ae.py: the layer-wise autoencoder,
weights_module.py: any small module) share: config sections, run files, and the base
class (data, fitness subset, stage seeds, export). weights.py picks the kind.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from pydantic import Field

from evotune.data import DataConfig, Dataset, load_data
from evotune.data.pipeline import record_pipeline
from evotune.engine.problem import Objective
from evotune.engine.state import atomic_write_bytes
from evotune.errors import UserError
from evotune.sections import Section, threads_field
from evotune.tasks.base import Task
from evotune.train.device import resolve_device
from evotune.train.finetune import TrainSettings

Mode = Literal["ga", "ga_assisted", "sgd", "layerwise_sgd"]
GA_MODES = ("ga", "ga_assisted")
MODEL_FILE, SVM_FILE = "model.safetensors", "svm.npz"
FORMAT = "evotune-weights"  # the header entry of the model file (and of its export)


class SvmOptions(Section):
    c: float = Field(1.0, gt=0, description="the SVM's C")
    gamma: float | Literal["scale", "auto"] = Field("scale", description="RBF gamma")
    max_train: int | None = Field(None, ge=2, description="cap on the SVM's training codes")


class WeightsOptions(Section):
    mode: Mode = "ga_assisted"
    sizes: list[int] = Field(
        [784, 500, 250, 100, 50], min_length=2, description="autoencoder layer widths"
    )
    output: Literal["linear", "tanh", "sigmoid"] = Field(
        "linear", description="activation of the final reconstruction (ReLU elsewhere)"
    )
    target: Literal["codes", "input"] = Field(
        "codes",
        description="layer k reconstructs layer k-1's codes, or the input through the "
        "frozen layers (the seed's code)",
    )
    init_std: float | None = Field(None, gt=0, description="default: Xavier's per layer")
    svm: SvmOptions = SvmOptions()


class WeightsFitness(Section):
    examples: int | None = Field(
        1024, ge=1, description="training examples each fitness is measured on (null: all)"
    )
    steps_per_generation: int = Field(
        10, ge=1, description="ga_assisted: gradient steps per kept member and generation"
    )
    optimizer: Literal["adadelta", "adam", "sgd"] = "adadelta"
    lr: float = Field(1.0, gt=0)
    batch_size: int = Field(32, ge=1, description="examples per gradient step")
    epochs: int = Field(
        3, ge=1, description="sgd/layerwise_sgd: passes over the training data (per layer)"
    )
    steps: int | None = Field(
        None, ge=1, description="sgd/layerwise_sgd: gradient steps (per layer) instead of epochs"
    )
    objective: Literal["loss", "accuracy"] = Field("loss", description="model.kind module")
    device: str = "auto"
    threads: int | None = threads_field()

    def settings(self) -> TrainSettings:
        return TrainSettings(optimizer=self.optimizer, lr=self.lr, batch_size=self.batch_size)


class WeightsModel(Section):
    kind: Literal["autoencoder", "module"] = "autoencoder"
    module: str = Field("mlp", description="kind module: 'mlp' or 'package.module:factory'")
    hidden: list[int] = Field([64], description="mlp: hidden layer widths")
    args: dict[str, Any] = Field({}, description="keyword arguments of the factory")


class WeightsBase(Task):
    """What both kinds share: the config sections, data, fitness subset and seeds."""

    name = "weights"
    description = "the weights themselves: layer-wise GA autoencoder, or any small module"
    genome_kind = "real"
    Options = WeightsOptions
    Fitness = WeightsFitness
    Data = DataConfig
    Model = WeightsModel
    seed_preset = "genetic-ae"
    genomes_per_call = None  # a call's members in one batched computation

    @classmethod
    def objectives_for(cls, config: Any) -> tuple[Objective, ...]:
        if config.model.kind == "module":
            objective = config.fitness.objective
            return (Objective(objective, "min" if objective == "loss" else "max"),)
        return (Objective("inv_rmse", "max"),)

    @classmethod
    def from_config(cls, config: Any) -> WeightsBase:
        data = load_data(config.data)
        device = resolve_device(config.fitness.device)
        return cls(data, config, device)

    def __init__(self, data: Dataset, config: Any, device: torch.device) -> None:
        self.data, self.device = data, device
        self.options: WeightsOptions = config.task
        self.fitness: WeightsFitness = config.fitness
        self.model_config: WeightsModel = config.model
        self.seed = config.search.seed
        self.objectives = self.objectives_for(config)
        self.settings = self.fitness.settings()
        self.x = torch.cat([data.train.x, data.val.x]).to(device)
        self.y = torch.cat([data.train.y, data.val.y]).to(device)
        self.subset = self._fitness_subset(len(self.x))
        self.test = None if data.test is None else (data.test.x.to(device), data.test.y.to(device))
        self.refine = self._refine if self.options.mode == "ga_assisted" else None
        if self.refine is not None:
            check_refinable(config.search)

    @staticmethod
    def export_run(
        run_dir: Path, out: Path, best: dict[str, Any], data: DataConfig
    ) -> dict[str, Any]:
        """`evotune export`: the run already saved its model. One self-contained file:
        the model's tensors, the SVM's arrays (`svm.<name>`, autoencoder) and, in the
        header, the spec with the input pipeline of `data`."""
        from safetensors.torch import save

        source = Path(run_dir) / MODEL_FILE
        if not source.is_file():
            raise UserError(f"{source} not found: the run has not finished")
        spec, tensors = read_model(source)
        svm = Path(run_dir) / SVM_FILE
        if svm.is_file():
            with np.load(svm, allow_pickle=False) as arrays:
                for name in arrays.files:
                    tensors[f"svm.{name}"] = torch.from_numpy(arrays[name].copy())  # 0-d stays 0-d
        spec["pipeline"] = record_pipeline(data, spec["classes"], spec["input_shape"])
        atomic_write_bytes(Path(out), save(tensors, metadata={FORMAT: json.dumps(spec)}))
        numbers = {k: v for k, v in best["metrics"].items() if isinstance(v, float)}
        return {"path": str(out), "metrics": numbers}

    def _fitness_subset(self, n: int) -> torch.Tensor:
        """The training examples every fitness is measured on: the same for all genomes
        (a genome's fitness must not depend on when it is evaluated)."""
        count = n if self.fitness.examples is None else min(n, self.fitness.examples)
        order = np.random.default_rng([self.seed, 0x5EED]).permutation(n)[:count]
        return torch.from_numpy(np.sort(order)).to(self.device)

    def stage_seed(self, name: str) -> int:
        """The seed of a gradient-trained stage: from the run seed and the stage."""
        digest = hashlib.blake2b(f"{self.seed}:{name}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big") % 2**63

    def gradient_steps(self, n: int) -> int:
        """Steps of a gradient-trained stage over n examples: fitness.steps or epochs."""
        batch = min(self.fitness.batch_size, n)
        return self.fitness.steps or self.fitness.epochs * -(-n // batch)


def epoch_logger(
    log: Callable[[dict[str, Any]], None], objective: str
) -> Callable[[float, dict[str, float]], None]:
    """A generations.jsonl record per epoch of a gradient-trained stage."""
    began = time.monotonic()
    state = {"epoch": 0}

    def record(fitness: float, metrics: dict[str, float]) -> None:
        log(
            {
                "generation": state["epoch"],
                "best": [fitness],
                "mean": [fitness],
                "best_hash": None,
                "hypervolume": None,
                "evaluations": 0,
                "cached": 0,
                "seconds": round(time.monotonic() - began, 6),
                "metrics": {objective: fitness, **metrics},
            }
        )
        state["epoch"] += 1

    return record


def check_refinable(search: Any) -> None:
    """ga_assisted refines the GA's elites: it needs the GA and at least one elite."""
    if (search.algorithm or "ga") != "ga":
        raise UserError(
            f"task.mode: ga_assisted refines the GA's kept members; search.algorithm "
            f"{search.algorithm!r} has none: use ga (or task.mode: ga)"
        )
    if search.elitism == 0:
        raise UserError("task.mode: ga_assisted needs search.elitism >= 1 (preset seed: 5)")


def check_mode(mode: str, allowed: tuple[str, ...], kind: str) -> None:
    if mode not in allowed:
        raise UserError(
            f"task.mode: {mode!r} does not apply to model.kind {kind!r}; "
            f"choose one of {', '.join(allowed)}"
        )


def read_model(path: Path) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The spec in the header and the tensors of a `weights` model file (a run's
    model.safetensors, or its export)."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise UserError(f"{path} not found: is {path.parent} a finished `weights` run?")
    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
            tensors = {key: handle.get_tensor(key) for key in handle.keys()}  # noqa: SIM118
    except (SafetensorError, OSError) as err:
        raise UserError(f"{path}: not a safetensors file ({err})") from None
    if FORMAT not in meta:
        raise UserError(f"{path}: not a model written by the `weights` task")
    return json.loads(meta[FORMAT]), tensors
