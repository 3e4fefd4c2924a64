"""Train and evaluate a classifier: the loop every torch task shares.

`fit` trains only the parameters it is given (frozen ones get no gradient and no
optimizer state), shuffles with its own seeded generator, stops early on validation
loss, and reports the best validation accuracy over the epochs (the first seed's
fitness) with the full history. Data comes as `Batches` (a split in memory, one read
from disk, or cached activations: the same batches for the same order) or as an
(x, y) pair of tensors.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from torch import nn

from evotune.data.dataset import Batches, Split
from evotune.train.device import Precision, autocast, grad_scaler

Data = Batches | tuple[torch.Tensor, torch.Tensor]
EVAL_BATCH_BYTES = 2**27  # inputs per evaluation batch: 128 MB (1,024 examples at most)


@dataclass(frozen=True)
class TrainSettings:
    epochs: int = 5
    batch_size: int = 256
    lr: float = 1e-4
    optimizer: Literal["adam", "sgd", "adadelta"] = "adam"
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    patience: int | None = 5  # epochs without a better validation loss; None: never stop
    monitor: Literal["val_loss", "train_loss"] = "val_loss"
    restore_best: bool = False  # load the best epoch's weights at the end (for export)
    eval_batch_size: int = 1024  # examples per validation forward pass (`eval_batch_size`)
    precision: Precision = "fp32"  # forward passes under autocast (bf16, fp16) or not


@dataclass
class TrainResult:
    best_val_accuracy: float
    best_val_loss: float
    epochs_run: int
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


def make_optimizer(params: list[nn.Parameter], settings: TrainSettings) -> torch.optim.Optimizer:
    if settings.optimizer == "adam":
        return torch.optim.Adam(params, lr=settings.lr, weight_decay=settings.weight_decay)
    if settings.optimizer == "adadelta":
        return torch.optim.Adadelta(params, lr=settings.lr, weight_decay=settings.weight_decay)
    return torch.optim.SGD(
        params,
        lr=settings.lr,
        momentum=settings.momentum,
        nesterov=settings.nesterov,
        weight_decay=settings.weight_decay,
    )


def as_batches(data: Data) -> Batches:
    """`Batches` as they are; an (x, y) pair of tensors as an in-memory `Split`."""
    return Split(*data) if isinstance(data, tuple) else data


def eval_batch_size(input_shape: tuple[int, ...], most: int = 1024) -> int:
    """Examples per evaluation batch for inputs of `input_shape`: `most`, fewer when
    their inputs would pass 128 MB (224 x 224 RGB: 222). Tasks take it from the data's
    input shape, so that it is the same with and without the prefix cache."""
    per_example = 4 * max(1, math.prod(input_shape))
    return max(1, min(most, EVAL_BATCH_BYTES // per_example))


@torch.no_grad()
def evaluate(
    model: nn.Module, data: Data, batch_size: int = 1024, precision: Precision = "fp32"
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on `data`, in inference mode (the
    forward passes in `precision`, the loss summed in float32)."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    data = as_batches(data)
    for x, target in data.batches(None, batch_size):
        with autocast(x.device, precision):
            logits = model(x)
        logits = logits.float()
        loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(dim=1) == target).sum().item()
    model.train(was_training)
    n = max(1, len(data))
    return loss_sum / n, correct / n


def test_split_metrics(
    model: nn.Module, splits: dict[str, Any], batch_size: int = 1024, precision: Precision = "fp32"
) -> dict[str, float]:
    """test_loss and test_accuracy when `splits` has a test split, else nothing."""
    if "test" not in splits:
        return {}
    loss, accuracy = evaluate(model, splits["test"], batch_size, precision)
    return {"test_accuracy": accuracy, "test_loss": loss}


def _epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Batches,
    batch_size: int,
    generator: torch.Generator,
    precision: Precision = "fp32",
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One pass over shuffled training data; returns the mean training loss."""
    model.train()
    order = torch.randperm(len(train), generator=generator)
    return train_in_order(model, optimizer, train, order, batch_size, precision, scaler)


def train_in_order(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    train: Data,
    order: torch.Tensor,
    batch_size: int,
    precision: Precision = "fp32",
    scaler: torch.amp.GradScaler | None = None,
) -> float:
    """One cross-entropy step per batch of `order` (indices into `train`); returns the
    mean training loss over the examples seen. The forward pass runs under autocast in
    `precision` (the backward follows its dtypes); fp16 scales the loss (`scaler`)."""
    total = 0.0
    for x, y in as_batches(train).batches(order, batch_size):
        with autocast(x.device, precision):
            loss = nn.functional.cross_entropy(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        if scaler is None:
            loss.backward()
            optimizer.step()
        else:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        total += loss.item() * len(y)
    return total / max(1, len(order))


def fit(
    model: nn.Module,
    params: list[nn.Parameter],
    train: Data,
    val: Data,
    settings: TrainSettings,
    seed: int,
) -> TrainResult:
    """Train `params` of `model` on `train`, validating on `val` after every epoch."""
    run = TrainingRun(model, params, train, val, settings, seed)
    run.advance(settings.epochs)
    return run.finish()


class TrainingRun:
    """`fit` that can stop after any epoch and go on later with the same result as one
    call (successive halving trains many of these in turns).

    Between calls it keeps the optimizer state, the shuffling generator, the early
    stopping counters and its own copy of torch's global generator (dropout draws from
    it), so runs advanced in any interleaving give the same numbers as each run alone.
    """

    def __init__(
        self,
        model: nn.Module,
        params: list[nn.Parameter],
        train: Data,
        val: Data,
        settings: TrainSettings,
        seed: int,
    ) -> None:
        self.model, self.train_data, self.val_data = model, as_batches(train), as_batches(val)
        self.settings = settings
        self.generator = torch.Generator().manual_seed(seed)
        self.optimizer = make_optimizer(self.param_groups(params), settings) if params else None
        self.best_loss, self.best_acc, self.waited = math.inf, 0.0, 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []
        self.stopped = False  # early stopping ended it: later advances do nothing
        self.seconds = 0.0
        self.device = params[0].device if params else torch.device("cpu")
        self.rng_state = _rng_state(self.device)  # whatever the caller seeded
        self.scaler = grad_scaler(self.device, settings.precision)

    def param_groups(self, params: list[nn.Parameter]) -> list[Any]:
        """What the optimizer is built on: the parameters (one group); a subclass may
        split them into groups (Auto-RGN: one per tensor)."""
        return params

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def advance(self, epochs: int) -> None:
        """Train until `epochs` epochs in all have run (or early stopping ends it)."""
        began = time.perf_counter()
        outer = _rng_state(self.device)
        _set_rng_state(self.device, self.rng_state)
        try:
            while not self.stopped and self.epochs_run < epochs:
                self._one_epoch()
        finally:
            self.rng_state = _rng_state(self.device)
            _set_rng_state(self.device, outer)
            self.seconds += time.perf_counter() - began

    def _one_epoch(self) -> None:
        settings, optimizer = self.settings, self.optimizer
        train_loss = 0.0
        if optimizer is not None:
            train_loss = _epoch(
                self.model,
                optimizer,
                self.train_data,
                settings.batch_size,
                self.generator,
                settings.precision,
                self.scaler,
            )
        val_loss, val_acc = evaluate(
            self.model, self.val_data, settings.eval_batch_size, settings.precision
        )
        self.history.append(
            {
                "epoch": self.epochs_run,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
            }
        )
        self.best_acc = max(self.best_acc, val_acc)
        watched = val_loss if settings.monitor == "val_loss" else train_loss
        if watched < self.best_loss:
            self.best_loss, self.waited = watched, 0
            if settings.restore_best:
                self.best_state = copy.deepcopy(self.model.state_dict())
        else:
            self.waited += 1
            if settings.patience is not None and self.waited >= settings.patience:
                self.stopped = True

    def result(self) -> TrainResult:
        """The outcome so far (best validation loss and accuracy over the epochs run)."""
        # a diverged epoch (NaN loss) never counts as the best one
        losses = [h["val_loss"] for h in self.history if not math.isnan(h["val_loss"])]
        best_val_loss = min(losses, default=math.inf)
        return TrainResult(
            self.best_acc, best_val_loss, self.epochs_run, self.seconds, list(self.history)
        )

    def finish(self) -> TrainResult:
        """The outcome; with `restore_best`, the model now holds the best epoch's weights."""
        if self.best_state is not None:
            self.model.load_state_dict(self.best_state)
        return self.result()

    def release(self) -> None:
        """Drop the model, optimizer state and saved weights: the run will not go on
        (`result()` still works)."""
        self.model = self.optimizer = self.best_state = None  # type: ignore[assignment]
        self.stopped = True


def _rng_state(device: torch.device) -> tuple[torch.Tensor, torch.Tensor | None]:
    """torch's global generator state, and the GPU's when training runs on one (dropout
    on a GPU draws from the GPU's generator)."""
    gpu = torch.cuda.get_rng_state(device) if device.type == "cuda" else None
    return torch.get_rng_state(), gpu


def _set_rng_state(device: torch.device, state: tuple[torch.Tensor, torch.Tensor | None]) -> None:
    torch.set_rng_state(state[0])
    if state[1] is not None:
        torch.cuda.set_rng_state(state[1], device)
