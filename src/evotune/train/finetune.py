"""Train and evaluate a classifier on in-memory tensors: the loop every torch task shares.

`fit` trains only the parameters it is given (frozen ones get no gradient and no
optimizer state), shuffles with its own seeded generator, stops early on validation
loss, and reports the best validation accuracy over the epochs (the first seed's
fitness) with the full history.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import nn


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


@torch.no_grad()
def evaluate(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int = 1024
) -> tuple[float, float]:
    """Mean cross-entropy and accuracy of `model` on (x, y), in inference mode."""
    was_training = model.training
    model.eval()
    loss_sum, correct = 0.0, 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        target = y[start : start + batch_size]
        loss_sum += nn.functional.cross_entropy(logits, target, reduction="sum").item()
        correct += (logits.argmax(dim=1) == target).sum().item()
    model.train(was_training)
    n = max(1, len(x))
    return loss_sum / n, correct / n


def _epoch(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    generator: torch.Generator,
) -> float:
    """One pass over shuffled training data; returns the mean training loss."""
    model.train()
    order = torch.randperm(len(x), generator=generator).to(x.device)
    total = 0.0
    for start in range(0, len(x), batch_size):
        batch = order[start : start + batch_size]
        loss = nn.functional.cross_entropy(model(x[batch]), y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(batch)
    return total / max(1, len(x))


def fit(
    model: nn.Module,
    params: list[nn.Parameter],
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    settings: TrainSettings,
    seed: int,
) -> TrainResult:
    """Train `params` of `model` on `train`, validating on `val` after every epoch."""
    began = time.perf_counter()
    generator = torch.Generator().manual_seed(seed)
    optimizer = make_optimizer(params, settings) if params else None
    best_loss, best_acc, waited, best_state = math.inf, 0.0, 0, None
    history: list[dict[str, float]] = []
    for epoch in range(settings.epochs):
        train_loss = (
            _epoch(model, optimizer, *train, settings.batch_size, generator) if optimizer else 0.0
        )
        val_loss, val_acc = evaluate(model, *val)
        history.append(
            {
                "epoch": epoch,
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
            }
        )
        best_acc = max(best_acc, val_acc)
        watched = val_loss if settings.monitor == "val_loss" else train_loss
        if watched < best_loss:
            best_loss, waited = watched, 0
            if settings.restore_best:
                best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if settings.patience is not None and waited >= settings.patience:
                break
    if best_state is not None:
        model.load_state_dict(best_state)
    best_val_loss = min(h["val_loss"] for h in history) if history else math.inf
    return TrainResult(best_acc, best_val_loss, len(history), time.perf_counter() - began, history)
