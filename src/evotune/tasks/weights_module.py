"""`weights` with `model.kind: module`: every parameter of a small torch module is one
genome (float32, the module's parameters flattened in `named_parameters` order).

All members run in one `vmap` of `torch.func.functional_call` over the stacked
parameters. Fitness: mean cross-entropy (`loss`, minimised) or accuracy on the fitness
subset. One stage: `module` (modes ga, ga_assisted) or `sgd` (the gradient baseline).
The initial population is drawn around each parameter tensor's own initial spread.
"""

from __future__ import annotations

import importlib
import inspect
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from evotune.engine.problem import Evaluation
from evotune.engine.spaces import RealVectorSpace
from evotune.engine.state import atomic_write_bytes
from evotune.errors import UserError
from evotune.staged import Log, RunStage
from evotune.tasks.weights_base import (
    FORMAT,
    MODEL_FILE,
    WeightsBase,
    WeightsModel,
    check_mode,
    epoch_logger,
)
from evotune.train.autoencoder import minibatches
from evotune.train.popnets import PopulationModule, cross_entropy_and_accuracy, gradient_steps

CHUNK = 4096  # examples per batched forward pass


def build_module(config: WeightsModel, input_shape: tuple[int, ...], num_classes: int) -> nn.Module:
    """The builtin MLP, or `package.module:factory` called with `model.args` (and with
    `input_shape` / `num_classes` when the factory takes them)."""
    if config.module == "mlp":
        widths = [int(np.prod(input_shape)), *config.hidden, num_classes]
        layers: list[nn.Module] = [nn.Flatten()]
        for i in range(len(widths) - 1):
            layers.append(nn.Linear(widths[i], widths[i + 1]))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        return nn.Sequential(*layers)
    factory = _import_factory(config.module)
    known = {"input_shape": tuple(input_shape), "num_classes": num_classes}
    try:
        accepted = inspect.signature(factory).parameters
    except (TypeError, ValueError):  # some builtins have no signature
        accepted = {}
    extra = {k: v for k, v in known.items() if k in accepted and k not in config.args}
    try:
        module = factory(**config.args, **extra)
    except TypeError as err:
        raise UserError(f"model.module: {config.module}(**model.args) failed: {err}") from None
    if not isinstance(module, nn.Module):
        raise UserError(
            f"model.module: {config.module} returned {type(module).__name__}, expected a "
            "torch.nn.Module"
        )
    return module


def _import_factory(spec: str) -> Callable[..., Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise UserError(f"model.module: expected 'mlp' or 'package.module:factory', got {spec!r}")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as err:
        raise UserError(f"model.module: cannot import {spec!r}: {err}") from None


class ModuleTask(WeightsBase):
    def __init__(self, data: Any, config: Any, device: torch.device) -> None:
        super().__init__(data, config, device)
        check_mode(self.options.mode, ("ga", "ga_assisted", "sgd"), "module")
        with torch.random.fork_rng(devices=[]):  # the module's init, without touching ours
            torch.manual_seed(self.seed)
            module = build_module(config.model, data.input_shape, data.num_classes)
        self.net = PopulationModule(module.to(device))
        self.space = RealVectorSpace(
            self.net.n_genes, init_std=self.net.init_std().numpy(), dtype="float32"
        )
        self.result: np.ndarray | None = None

    # ---- stages ---------------------------------------------------------------------

    def stage_names(self) -> list[str]:
        return ["sgd"] if self.options.mode == "sgd" else ["module"]

    def enter_stage(self, name: str) -> RunStage:
        return RunStage(key="module", search=name == "module")

    def finish_stage(self, name: str, result: np.ndarray) -> None:
        self.result = np.asarray(result, dtype=np.float32)

    # ---- fitness --------------------------------------------------------------------

    def _params(self, genomes: np.ndarray) -> torch.Tensor:
        rows = np.ascontiguousarray(np.atleast_2d(genomes), dtype=np.float32)
        return torch.from_numpy(rows).to(self.device)

    @torch.no_grad()
    def measure(
        self, params: torch.Tensor, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean cross-entropy and accuracy of every member on (x, y), (P,) each."""
        loss = torch.zeros(params.shape[0], dtype=torch.float64, device=params.device)
        correct = torch.zeros_like(loss)
        for start in range(0, len(x), CHUNK):
            xb, yb = x[start : start + CHUNK], y[start : start + CHUNK]
            losses, accuracy = cross_entropy_and_accuracy(self.net.forward(params, xb), yb)
            loss += losses.double() * len(yb)
            correct += accuracy.double() * len(yb)
        return loss / max(1, len(x)), correct / max(1, len(x))

    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        fit_x, fit_y = self.x[self.subset], self.y[self.subset]
        loss, accuracy = self.measure(self._params(genomes), fit_x, fit_y)
        rows = zip(loss.tolist(), accuracy.tolist())
        pick = self.fitness.objective == "loss"
        return [Evaluation((lo if pick else ac,), {"loss": lo, "accuracy": ac}) for lo, ac in rows]

    def _member_losses(self, batches: torch.Tensor) -> Callable[[torch.Tensor, int], torch.Tensor]:
        def losses(params: torch.Tensor, step: int) -> torch.Tensor:
            idx = batches[:, step]
            return _per_member_ce(self.net.forward_each(params, self.x[idx]), self.y[idx])

        return losses

    def _train(
        self,
        params: torch.Tensor,
        steps: int,
        seeds: list[int],
        on_step: Callable[[int, torch.Tensor], None] | None = None,
    ) -> torch.Tensor:
        n, batch = len(self.x), self.fitness.batch_size
        batches = torch.stack([minibatches(n, batch, steps, s) for s in seeds]).to(self.device)
        s = self.settings
        return gradient_steps(
            params, self._member_losses(batches), steps, s.optimizer, s.lr, on_step
        )

    def _refine(self, genomes: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        steps = self.fitness.steps_per_generation
        trained = self._train(self._params(genomes), steps, [int(s) for s in seeds])
        return trained.cpu().numpy()

    # ---- the gradient baseline ----------------------------------------------------------

    def train_stage(self, log: Log) -> np.ndarray:
        record = epoch_logger(log, self.fitness.objective)
        steps = self.gradient_steps(len(self.x))
        per_epoch = -(-len(self.x) // min(self.fitness.batch_size, len(self.x)))
        fit_x, fit_y = self.x[self.subset], self.y[self.subset]

        def on_step(done: int, params: torch.Tensor) -> None:
            if done % per_epoch == 0 or done == steps:
                loss, accuracy = (float(v[0]) for v in self.measure(params, fit_x, fit_y))
                value = loss if self.fitness.objective == "loss" else accuracy
                record(value, {"loss": loss, "accuracy": accuracy, "steps": done})

        start = self.net.flatten()[None].to(self.device)
        return self._train(start, steps, [self.stage_seed("sgd")], on_step)[0].cpu().numpy()

    # ---- result ---------------------------------------------------------------------

    def final_summary(self, run_dir: Path) -> dict[str, Any]:
        params = self._params(self.result)
        loss, accuracy = (float(v[0]) for v in self.measure(params, self.x, self.y))
        metrics: dict[str, Any] = {"train_loss": loss, "train_accuracy": accuracy}
        if self.test is not None:
            test_loss, test_acc = self.measure(params, *self.test)
            metrics |= {"test_loss": float(test_loss[0]), "test_accuracy": float(test_acc[0])}
        self.save(run_dir)
        fitness = loss if self.fitness.objective == "loss" else accuracy
        return {
            "task": self.name,
            "algorithm": "sgd" if self.options.mode == "sgd" else "ga",
            "mode": self.options.mode,
            "objectives": [o.__dict__ for o in self.objectives],
            "seed": self.seed,
            "best": {
                "hash": self.space.hash(self.result),
                "genome": {"file": MODEL_FILE, "genes": int(self.result.size)},
                "fitness": [fitness],
                "metrics": metrics,
            },
        }

    def save(self, run_dir: Path) -> None:
        from safetensors.torch import save

        values = self.net.unflatten(self._params(self.result))
        tensors = {name: v[0].contiguous().cpu() for name, v in values.items()}
        spec = {
            "kind": "module",
            "module": self.model_config.model_dump(mode="json"),
            "input_shape": list(self.data.input_shape),
            "classes": self.data.classes,
        }
        atomic_write_bytes(run_dir / MODEL_FILE, save(tensors, metadata={FORMAT: json.dumps(spec)}))

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "genes": self.net.n_genes, "data": self.data.describe()}


def _per_member_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy per member: logits (P, B, C), y (P, B) -> (P,)."""
    p, b, c = logits.shape
    flat = nn.functional.cross_entropy(logits.reshape(p * b, c), y.reshape(-1), reduction="none")
    return flat.view(p, b).mean(dim=1)
