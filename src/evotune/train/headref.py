"""The plain way to train one masked head: an nn.Module, autograd and torch.optim.SGD,
one genome at a time. `popheads` is tested for equality against it and benchmarked
against it (benchmarks/prune_speed.py); the search never uses it.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from evotune.train.finetune import train_in_order
from evotune.train.maskedhead import Head, HeadSettings, Member, initial_weights, member_seeds


class MaskedHead(nn.Module):
    """input(D) -> masked dense(H, ReLU, no bias) -> dense(C), masks as buffers."""

    def __init__(
        self, member: Member, n_features: int, n_classes: int, settings: HeadSettings
    ) -> None:
        super().__init__()
        w1, w2, b2 = initial_weights(member.seed, n_features, settings.hidden, n_classes)
        self.fc1 = nn.Linear(n_features, settings.hidden, bias=False)
        self.fc2 = nn.Linear(settings.hidden, n_classes)
        with torch.no_grad():
            self.fc1.weight.copy_(w1.t())
            self.fc2.weight.copy_(w2.t())
            self.fc2.bias.copy_(b2)
        self.register_buffer("feature_mask", _mask(member.inputs, n_features))
        self.register_buffer("neuron_mask", _mask(member.hidden, settings.hidden))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = torch.relu(self.fc1(x * self.feature_mask)) * self.neuron_mask
        return self.fc2(hidden)


def _mask(indices: torch.Tensor, size: int) -> torch.Tensor:
    mask = torch.zeros(size)
    mask[indices] = 1.0
    return mask


def train_reference(
    member: Member,
    x: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    settings: HeadSettings,
) -> tuple[MaskedHead, Head]:
    """Train one member the plain way, with the same initial weights, minibatch orders
    and early stopping as `train_heads`; returns the module and its pruned Head."""
    model = MaskedHead(member, x.shape[1], n_classes, settings).to(x.device)
    optimizer = torch.optim.SGD(
        model.parameters(), lr=settings.lr, momentum=settings.momentum, nesterov=settings.nesterov
    )
    rows = torch.arange(len(x)) if member.rows is None else member.rows.cpu()
    order_gen = torch.Generator().manual_seed(member_seeds(member.seed)[1])
    history: list[float] = []
    best, waited = math.inf, 0
    for _ in range(settings.epochs):
        order = rows[torch.randperm(len(rows), generator=order_gen)].to(x.device)
        history.append(train_in_order(model, optimizer, (x, y), order, settings.batch_size))
        if history[-1] < best - settings.min_delta:
            best, waited = history[-1], 0
        else:
            waited += 1
            if settings.patience is not None and waited >= settings.patience:
                break
    return model, _as_head(model, member, history)


def _as_head(model: MaskedHead, member: Member, history: list[float]) -> Head:
    w1 = model.fc1.weight.detach().t()
    return Head(
        inputs=member.inputs,
        hidden=member.hidden,
        w1=w1[member.inputs][:, member.hidden].clone(),
        w2=model.fc2.weight.detach().t()[member.hidden].clone(),
        b2=model.fc2.bias.detach().clone(),
        epochs=len(history),
        train_loss=min(history) if history else math.nan,
        history=history,
    )
