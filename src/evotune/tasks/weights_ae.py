"""`weights` with `model.kind: autoencoder`: the layer-wise genetic autoencoder.

Stages `layer1`, `layer2`, ...: the genome of stage k is W_k (sizes[k] x sizes[k-1],
float32, row-major), fitness 1/RMSE of its reconstruction on the fitness subset. Mode
`sgd` is a single stage `sgd` (all layers by gradient, end to end).
"""

from __future__ import annotations

import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from evotune.engine.problem import Evaluation
from evotune.engine.spaces import RealVectorSpace
from evotune.engine.state import atomic_write_bytes
from evotune.errors import UserError
from evotune.staged import Log, RunStage
from evotune.tasks.weights_base import (
    FORMAT,
    GA_MODES,
    MODEL_FILE,
    SVM_FILE,
    WeightsBase,
    epoch_logger,
)
from evotune.train.autoencoder import (
    TiedStack,
    train_end_to_end,
    train_layer,
    xavier_std,
)
from evotune.train.popnets import OutputActivation, population_rmse
from evotune.train.svm import fit_svm, svm_arrays, svm_predict


@dataclass
class Layer:
    """What stage k searches on: inputs (codes of the frozen layers) and targets."""

    index: int  # 1-based
    shape: tuple[int, int]  # (out, in)
    inputs: torch.Tensor  # (N, in), all training data
    targets: torch.Tensor  # (N, in) codes, or (N, sizes[0]) with target: input
    frozen: list[torch.Tensor]  # layers decoded through (target: input), else []
    output: OutputActivation
    fit_inputs: torch.Tensor  # the fitness subset of inputs / targets
    fit_targets: torch.Tensor


class AutoencoderTask(WeightsBase):
    def __init__(self, data: Any, config: Any, device: torch.device) -> None:
        super().__init__(data, config, device)
        self.x = self.x.flatten(1)
        sizes = self.options.sizes
        if sizes[0] != self.x.shape[1]:
            shape = "x".join(str(s) for s in data.input_shape)
            raise UserError(
                f"task.sizes: the first width is {sizes[0]}, but the data's inputs have "
                f"{self.x.shape[1]} values ({shape}); set task.sizes: [{self.x.shape[1]}, ...]"
            )
        self.stack = TiedStack([], self.options.output)
        self.layer: Layer | None = None
        self.space = RealVectorSpace(sizes[1] * sizes[0], dtype="float32")

    # ---- stages ---------------------------------------------------------------------

    def stage_names(self) -> list[str]:
        if self.options.mode == "sgd":
            return ["sgd"]
        return [f"layer{k}" for k in range(1, len(self.options.sizes))]

    def enter_stage(self, name: str) -> RunStage:
        if name == "sgd":
            self.stack.weights = []
            return RunStage(key="sgd", search=False)
        k = int(name.removeprefix("layer"))
        self.stack.weights = self.stack.weights[: k - 1]
        self.layer = self._layer(k)
        out, width = self.layer.shape
        std = self.options.init_std or xavier_std(width, out)
        self.space = RealVectorSpace(out * width, init_std=std, dtype="float32")
        return RunStage(key=weights_key(self.stack.weights), search=self.options.mode in GA_MODES)

    def _layer(self, k: int) -> Layer:
        sizes, to_input = self.options.sizes, self.options.target == "input"
        inputs = self.stack.encode(self.x, k - 1)
        targets = self.x if to_input else inputs
        outermost = k == 1 or to_input  # the reconstruction is the network's output
        return Layer(
            index=k,
            shape=(sizes[k], sizes[k - 1]),
            inputs=inputs,
            targets=targets,
            frozen=list(self.stack.weights) if to_input else [],
            output=self.options.output if outermost else "relu",
            fit_inputs=inputs[self.subset],
            fit_targets=targets[self.subset],
        )

    def finish_stage(self, name: str, result: np.ndarray) -> None:
        weights = torch.from_numpy(np.asarray(result, dtype=np.float32)).to(self.device)
        if name == "sgd":
            self.stack.weights = split_layers(weights, self.options.sizes)
        else:
            self.stack.weights.append(weights.view(self.layer.shape))

    # ---- fitness --------------------------------------------------------------------

    def _weights(self, genomes: np.ndarray) -> torch.Tensor:
        rows = torch.from_numpy(np.ascontiguousarray(genomes, dtype=np.float32))
        return rows.to(self.device).view(len(genomes), *self.layer.shape)

    @torch.no_grad()
    def evaluate(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Evaluation]:
        layer = self.layer
        rmse = population_rmse(
            layer.fit_inputs, self._weights(genomes), layer.fit_targets, layer.output, layer.frozen
        )
        return [Evaluation((1.0 / r,), {"rmse": r}) for r in rmse.tolist()]

    def _refine(self, genomes: np.ndarray, seeds: np.ndarray) -> np.ndarray:
        """ga_assisted: the kept members' gradient steps, all members at once."""
        layer = self.layer
        trained = train_layer(
            self._weights(genomes),
            layer.inputs,
            layer.targets,
            layer.frozen,
            layer.output,
            self.settings,
            self.fitness.steps_per_generation,
            [int(s) for s in seeds],
        )
        return trained.reshape(len(genomes), -1).cpu().numpy()

    # ---- gradient-trained stages ------------------------------------------------------

    def train_stage(self, log: Log) -> np.ndarray:
        record = epoch_logger(log, "inv_rmse")
        if self.options.mode == "sgd":
            return self._train_end_to_end(record)
        layer, name = self.layer, f"layer{self.layer.index}"
        generator = torch.Generator().manual_seed(self.stage_seed(name))
        std = self.options.init_std or xavier_std(layer.shape[1], layer.shape[0])
        w = (torch.randn(1, *layer.shape, generator=generator) * std).to(self.device)
        steps, per_epoch = self._schedule()

        def on_step(done: int, params: torch.Tensor) -> None:
            if done % per_epoch == 0 or done == steps:
                with torch.no_grad():
                    rmse = float(
                        population_rmse(
                            layer.fit_inputs, params, layer.fit_targets, layer.output, layer.frozen
                        )[0]
                    )
                record(1.0 / rmse, {"rmse": rmse, "steps": done})

        trained = train_layer(
            w,
            layer.inputs,
            layer.targets,
            layer.frozen,
            layer.output,
            self.settings,
            steps,
            [self.stage_seed(name)],
            on_step,
        )
        return trained.reshape(-1).cpu().numpy()

    def _schedule(self) -> tuple[int, int]:
        """(gradient steps, steps per epoch) of a gradient-trained stage."""
        per_epoch = -(-len(self.x) // min(self.fitness.batch_size, len(self.x)))
        return self.gradient_steps(len(self.x)), per_epoch

    def _train_end_to_end(self, record: Any) -> np.ndarray:
        sizes = self.options.sizes
        generator = torch.Generator().manual_seed(self.stage_seed("sgd"))
        weights = [
            (torch.randn(sizes[i + 1], sizes[i], generator=generator) * self._std(i)).to(
                self.device
            )
            for i in range(len(sizes) - 1)
        ]
        fit = self.x[self.subset]

        def on_epoch(done: int, params: list[torch.Tensor]) -> None:
            rmse = TiedStack(params, self.options.output).rmse(fit)
            record(1.0 / rmse, {"rmse": rmse, "steps": done})

        steps, _ = self._schedule()
        trained = train_end_to_end(
            weights,
            self.x,
            self.options.output,
            self.settings,
            steps,
            self.stage_seed("sgd"),
            on_epoch,
        )
        return torch.cat([w.reshape(-1) for w in trained]).cpu().numpy()

    def _std(self, i: int) -> float:
        sizes = self.options.sizes
        return self.options.init_std or xavier_std(sizes[i], sizes[i + 1])

    # ---- result ---------------------------------------------------------------------

    def final_summary(self, run_dir: Path) -> dict[str, Any]:
        """Test RMSE and SVM accuracy of the trained stack; writes model + SVM files."""
        metrics: dict[str, Any] = {"train_rmse": self.stack.rmse(self.x)}
        svm = self._fit_svm()
        if self.test is not None:
            x_test, y_test = self.test[0].flatten(1), self.test[1]
            metrics["test_rmse"] = self.stack.rmse(x_test)
            predicted = svm_predict(svm, self.codes(x_test))
            metrics["test_accuracy"] = float(np.mean(predicted == y_test.cpu().numpy()))
        metrics["svm_train_examples"] = int(svm["n_train"])
        metrics["svm_support_vectors"] = int(svm["support_vectors"].shape[0])
        self.save(run_dir, svm)
        genes = sum(w.numel() for w in self.stack.weights)
        return {
            "task": self.name,
            "algorithm": "ga" if self.options.mode in GA_MODES else self.options.mode,
            "mode": self.options.mode,
            "objectives": [o.__dict__ for o in self.objectives],
            "seed": self.seed,
            "best": {
                "hash": weights_key(self.stack.weights),
                "genome": {"file": MODEL_FILE, "genes": genes},
                "fitness": [1.0 / metrics["train_rmse"]],
                "metrics": metrics,
            },
        }

    @torch.no_grad()
    def codes(self, x: torch.Tensor) -> np.ndarray:
        return torch.cat([self.stack.encode(part) for part in x.split(4096)]).cpu().numpy()

    def _fit_svm(self) -> dict[str, np.ndarray]:
        """RBF SVM on the codes of the training data (all of it, or svm.max_train)."""
        options = self.options.svm
        codes, labels = self.codes(self.x), self.y.cpu().numpy()
        if options.max_train is not None and options.max_train < len(codes):
            keep = np.random.default_rng([self.seed, 0x5A]).permutation(len(codes))
            keep = np.sort(keep[: options.max_train])
            codes, labels = codes[keep], labels[keep]
        arrays = svm_arrays(fit_svm(codes, labels, options.c, options.gamma))
        return {**arrays, "n_train": np.asarray(len(codes))}

    def save(self, run_dir: Path, svm: dict[str, np.ndarray]) -> None:
        from safetensors.torch import save

        tensors = {f"layer{i + 1}": w.contiguous().cpu() for i, w in enumerate(self.stack.weights)}
        spec = {
            "kind": "autoencoder",
            "sizes": self.options.sizes,
            "output": self.options.output,
            "input_shape": list(self.data.input_shape),
            "classes": self.data.classes,
        }
        atomic_write_bytes(run_dir / MODEL_FILE, save(tensors, metadata={FORMAT: json.dumps(spec)}))
        buffer = io.BytesIO()
        np.savez(buffer, **svm)
        atomic_write_bytes(run_dir / SVM_FILE, buffer.getvalue())

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "sizes": self.options.sizes, "data": self.data.describe()}


def split_layers(flat: torch.Tensor, sizes: list[int]) -> list[torch.Tensor]:
    """A flat vector of all layers (row-major, layer 1 first) -> [W_1, W_2, ...]."""
    counts = [sizes[i + 1] * sizes[i] for i in range(len(sizes) - 1)]
    if flat.numel() != sum(counts):
        raise ValueError(f"expected {sum(counts)} weights for sizes {sizes}, got {flat.numel()}")
    parts = torch.split(flat.reshape(-1), counts)
    return [p.view(sizes[i + 1], sizes[i]) for i, p in enumerate(parts)]


def weights_key(weights: list[torch.Tensor]) -> str:
    """A hash of trained layers: what the next stage depends on."""
    digest = hashlib.blake2b(digest_size=8)
    for w in weights:
        digest.update(str(tuple(w.shape)).encode())
        digest.update(w.detach().contiguous().cpu().numpy().tobytes())
    return digest.hexdigest()
