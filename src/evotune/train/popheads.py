"""Population-batched masked heads: every genome's head trains in the same pass.

A head is input(D) -> dense(H, ReLU, no bias) -> dense(C). A genome masks the first
layer's inputs (`features` mode: one bit per feature), its hidden units (`neurons`
mode) or both. All P heads are stacked: W1 (P, D, H), W2 (P, H, C), b2 (P, C), and a
step is one batched matmul chain. Each member draws its own initial weights and its own
minibatch order from its own seed, and members never mix, so a genome's result does not
depend on which other genomes share its batch. Members stop early on their own (on the
training loss, as MOEvoPruneDeepTL does) and then stop updating.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch

Mode = Literal["features", "neurons", "both"]


@dataclass(frozen=True)
class HeadSettings:
    hidden: int = 512
    epochs: int = 600  # cap; early stopping usually ends sooner
    batch_size: int = 32
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    patience: int = 10  # epochs without a lower training loss
    min_delta: float = 0.0


@dataclass
class PopulationHeads:
    """Stacked weights of P heads and their masks."""

    w1: torch.Tensor  # (P, D, H)
    w2: torch.Tensor  # (P, H, C)
    b2: torch.Tensor  # (P, C)
    feature_mask: torch.Tensor  # (P, D) float 0/1
    neuron_mask: torch.Tensor  # (P, H) float 0/1

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: (P, B, D), or (B, D) shared by all members -> (P, B, C)."""
        if x.dim() == 2:
            x = x.expand(self.w1.shape[0], -1, -1)
        # Masking the inputs, not W1: the same product and gradients (masked rows of W1
        # get none), at B x D instead of D x H elements per member and step.
        hidden = torch.bmm(x * self.feature_mask[:, None, :], self.w1)
        hidden = torch.relu(hidden) * self.neuron_mask[:, None, :]
        return torch.baddbmm(self.b2[:, None, :], hidden, self.w2)


def split_masks(
    genomes: torch.Tensor, mode: Mode, n_features: int, hidden: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Genome bits -> (feature mask, neuron mask); the unmasked side is all ones."""
    p = genomes.shape[0]
    ones_f = torch.ones(p, n_features, device=genomes.device)
    ones_h = torch.ones(p, hidden, device=genomes.device)
    bits = genomes.float()
    if mode == "features":
        return bits, ones_h
    if mode == "neurons":
        return ones_f, bits
    return bits[:, :n_features], bits[:, n_features:]


def init_heads(
    genomes: torch.Tensor,
    seeds: list[int],
    n_features: int,
    n_classes: int,
    settings: HeadSettings,
    mode: Mode,
) -> PopulationHeads:
    """Kaiming-uniform weights like nn.Linear's, drawn per member from its own seed."""
    w1, w2, b2 = [], [], []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed))
        bound1 = 1.0 / math.sqrt(n_features)
        bound2 = 1.0 / math.sqrt(settings.hidden)
        w1.append((torch.rand(n_features, settings.hidden, generator=gen) * 2 - 1) * bound1)
        w2.append((torch.rand(settings.hidden, n_classes, generator=gen) * 2 - 1) * bound2)
        b2.append((torch.rand(n_classes, generator=gen) * 2 - 1) * bound2)
    device = genomes.device
    fmask, nmask = split_masks(genomes, mode, n_features, settings.hidden)
    return PopulationHeads(
        torch.stack(w1).to(device),
        torch.stack(w2).to(device),
        torch.stack(b2).to(device),
        fmask,
        nmask,
    )


def _member_orders(seeds: list[int], n: int, epoch: int, device: torch.device) -> torch.Tensor:
    """(P, n) minibatch order of every member for one epoch, from the member's seed."""
    orders = []
    for seed in seeds:
        gen = torch.Generator().manual_seed(int(seed) * 1_000_003 + epoch)
        orders.append(torch.randperm(n, generator=gen))
    return torch.stack(orders).to(device)


class _StackedSGD:
    """SGD with (Nesterov) momentum, the same update as torch.optim.SGD, in place on
    stacked member tensors (no temporaries: the update is memory-bound)."""

    def __init__(self, params: list[torch.Tensor], settings: HeadSettings) -> None:
        self.params, self.settings = params, settings
        self.velocity = [torch.zeros_like(p) for p in params]

    @torch.no_grad()
    def step(self) -> None:
        s = self.settings
        for param, vel in zip(self.params, self.velocity):
            vel.mul_(s.momentum).add_(param.grad)
            if s.nesterov:  # p -= lr * (g + m * v)
                param.add_(param.grad, alpha=-s.lr).add_(vel, alpha=-s.lr * s.momentum)
            else:
                param.add_(vel, alpha=-s.lr)
            param.grad = None

    def keep(self, members: torch.Tensor) -> None:
        self.velocity = [v[members] for v in self.velocity]


def _select(heads: PopulationHeads, members: torch.Tensor) -> PopulationHeads:
    """The sub-population `members`, as fresh leaf tensors that require gradients."""
    return PopulationHeads(
        heads.w1[members].detach().requires_grad_(True),
        heads.w2[members].detach().requires_grad_(True),
        heads.b2[members].detach().requires_grad_(True),
        heads.feature_mask[members],
        heads.neuron_mask[members],
    )


@torch.no_grad()
def _write_back(out: PopulationHeads, part: PopulationHeads, rows: torch.Tensor, which) -> None:
    out.w1[rows] = part.w1[which]
    out.w2[rows] = part.w2[which]
    out.b2[rows] = part.b2[which]


def train_heads(
    heads: PopulationHeads,
    x: torch.Tensor,
    y: torch.Tensor,
    seeds: list[int],
    settings: HeadSettings,
) -> dict[str, torch.Tensor]:
    """Train all members, writing the result into `heads`; returns per-member `epochs`
    and best `train_loss`. Members that stop leave the batch, so the cost of an epoch
    shrinks with the number of members still training."""
    p, n = heads.w1.shape[0], len(x)
    alive = torch.arange(p)
    part = _select(heads, alive)
    optimizer = _StackedSGD([part.w1, part.w2, part.b2], settings)
    best = torch.full((p,), math.inf)
    waited = torch.zeros(p, dtype=torch.long)
    epochs = torch.zeros(p, dtype=torch.long)
    for epoch in range(settings.epochs):
        member_seeds = [seeds[i] for i in alive.tolist()]
        orders = _member_orders(member_seeds, n, epoch, x.device)
        losses = _train_epoch(part, optimizer, x, y, orders, settings.batch_size).cpu()
        epochs[alive] += 1
        improved = losses < best[alive] - settings.min_delta
        best[alive] = torch.where(improved, losses, best[alive])
        waited[alive] = torch.where(improved, 0, waited[alive] + 1)
        going = waited[alive] < settings.patience
        if not going.all():
            _write_back(heads, part, alive[~going], (~going).nonzero().squeeze(1))
            alive, part = alive[going], _select(part, going.nonzero().squeeze(1))
            optimizer.keep(going.nonzero().squeeze(1).to(x.device))
            optimizer.params = [part.w1, part.w2, part.b2]
        if len(alive) == 0:
            break
    if len(alive):
        _write_back(heads, part, alive, torch.arange(len(alive)))
    return {"epochs": epochs, "train_loss": best}


def _train_epoch(
    heads: PopulationHeads,
    optimizer: _StackedSGD,
    x: torch.Tensor,
    y: torch.Tensor,
    orders: torch.Tensor,
    batch_size: int,
) -> torch.Tensor:
    """One epoch; returns each member's mean training loss (P,)."""
    p, n = orders.shape
    total = torch.zeros(p, device=x.device)
    for start in range(0, n, batch_size):
        idx = orders[:, start : start + batch_size]  # (P, B)
        logits = heads.logits(x[idx])  # (P, B, C)
        target = y[idx]
        loss = torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), target.reshape(-1), reduction="none"
        ).view(p, -1)
        # Sum of per-member means: each member's gradient is its own mean-loss gradient.
        loss.mean(dim=1).sum().backward()
        optimizer.step()
        total += loss.detach().sum(dim=1)
    return total / n


@torch.no_grad()
def predict(heads: PopulationHeads, x: torch.Tensor, batch_size: int = 4096) -> torch.Tensor:
    """Logits of every member on shared inputs: (P, N, C)."""
    parts = [heads.logits(x[s : s + batch_size]) for s in range(0, len(x), batch_size)]
    return torch.cat(parts, dim=1)
