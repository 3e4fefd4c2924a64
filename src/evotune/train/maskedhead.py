"""The masked head (SEEDS.md §3): its training settings, a member to train (its seed,
active inputs and hidden units, examples), a trained head, and a member's seeds and
initial weights. Shared by `popheads` (the batched trainer), `popgroup` (its hot path)
and `headref` (the one-genome-at-a-time reference).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch


@dataclass(frozen=True)
class HeadSettings:
    hidden: int = 512
    epochs: int = 600  # cap; early stopping usually ends sooner
    batch_size: int = 32
    lr: float = 1e-3
    momentum: float = 0.9
    nesterov: bool = True
    patience: int | None = 10  # epochs without a lower training loss; None: never stop
    min_delta: float = 0.0
    group_mb: float = 8.0  # a group's W1 + momentum + gradient, to stay in cache (CPU)
    threads: int | None = None  # CPU worker threads; None: torch.get_num_threads()


@dataclass
class Member:
    """One head to train: its seed, its active inputs and hidden units, its examples."""

    seed: int
    inputs: torch.Tensor  # active feature indices, int64, ascending
    hidden: torch.Tensor  # active hidden-unit indices, int64, ascending
    rows: torch.Tensor | None = None  # training examples (indices into x); None: all


@dataclass
class Head:
    """A trained head, physically pruned: only the active block of W1 is stored."""

    inputs: torch.Tensor  # (d,) feature indices
    hidden: torch.Tensor  # (h,) hidden-unit indices
    w1: torch.Tensor  # (d, h)
    w2: torch.Tensor  # (h, C)
    b2: torch.Tensor  # (C,)
    epochs: int = 0
    train_loss: float = math.nan
    history: list[float] = field(default_factory=list)  # training loss per epoch

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, D) full feature rows -> (N, C)."""
        hidden = torch.relu(x[:, self.inputs] @ self.w1)
        return torch.addmm(self.b2, hidden, self.w2)

    @property
    def n_params(self) -> int:
        return self.w1.numel() + self.w2.numel() + self.b2.numel()


def member_seeds(seed: int) -> tuple[int, int]:
    """(initial weights, minibatch orders) seeds of a member: two separate streams."""
    state = np.random.SeedSequence(int(seed) % 2**63).generate_state(4, dtype=np.uint32)
    return int(state[0]) << 31 | int(state[1]) >> 1, int(state[2]) << 31 | int(state[3]) >> 1


def initial_weights(
    seed: int, n_features: int, hidden: int, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The full unmasked head's weights drawn from `seed`, uniform like nn.Linear's
    default (bound 1/sqrt(fan_in)); a member keeps its active block of W1."""
    every = Member(seed, torch.arange(n_features), torch.arange(hidden))
    return initial_block(every, n_features, hidden, n_classes)


def initial_block(
    member: Member, n_features: int, hidden: int, n_classes: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The member's share of `initial_weights` (W1's active block, W2's active rows,
    b2), equal to it bit for bit: the same draws, scaled only where they are kept."""
    gen = torch.Generator().manual_seed(member_seeds(member.seed)[0])
    w1 = torch.rand(n_features, hidden, generator=gen)
    w2 = torch.rand(hidden, n_classes, generator=gen)
    b2 = torch.rand(n_classes, generator=gen)
    return (
        (w1.index_select(0, member.inputs).index_select(1, member.hidden) * 2 - 1)
        / math.sqrt(n_features),
        (w2.index_select(0, member.hidden) * 2 - 1) / math.sqrt(hidden),
        (b2 * 2 - 1) / math.sqrt(hidden),
    )
