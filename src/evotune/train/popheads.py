"""Population-batched masked heads: a whole generation of genomes trains at once.

A head is input(D) -> dense(H, ReLU, no bias) -> dense(C, bias), the MOEvoPruneDeepTL
head (SEEDS.md §3). A genome masks the first layer's inputs (`features` mode), its
hidden units (`neurons`) or both. A masked input row or hidden column of the first
layer never affects the output and never receives a gradient, so each member keeps
only its active block: W1 is (d_p, h_p), and its share of the work and memory shrinks
with its active fraction.

Speed (the work is tiny per step: batch 32): members with equal padded blocks (a
fixed ladder of sizes: `popgroup.padded_size`) are stacked into groups whose weights,
momentum and gradient fit in the CPU cache (`group_mb`); zero padding stays exactly
zero (padded inputs are a zero column, padded hidden units have zero weights both
ways). A group runs all its epochs before the next starts; on a CPU, groups are built
and run on worker threads that each run single-threaded kernels (one GEMM per core
beats one GEMM split across cores at these sizes). On a GPU there is no cache budget
and a coarser ladder of block sizes, so groups are fewer and larger (still at most
popgroup.MAX_GROUP members) and run one after another in the calling thread. Forward
and backward are written out (no autograd) and the optimizer is torch's fused SGD
kernel, in place; `popgroup` says where the time goes.

Exactness: each member draws its initial weights and its minibatch orders from its own
seed, members never mix, and zero padding does not change any sum, so a member's
result does not depend on which other members share its group (tested bit for bit
on CPU): batched training equals training each genome alone.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import numpy as np
import torch

from evotune.train.maskedhead import Head, HeadSettings, Member
from evotune.train.popgroup import Group, plan_groups


def members_from_masks(
    feature_masks: np.ndarray, neuron_masks: np.ndarray, seeds: np.ndarray
) -> list[Member]:
    """One Member per row of the (P, D) and (P, H) 0/1 masks."""
    return [
        Member(int(s), _indices(f), _indices(h))
        for f, h, s in zip(feature_masks, neuron_masks, seeds)
    ]


def _indices(mask: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.flatnonzero(np.asarray(mask)).astype(np.int64))


def train_heads(
    members: list[Member],
    x: torch.Tensor,
    y: torch.Tensor,
    settings: HeadSettings,
    n_classes: int | None = None,
) -> list[Head]:
    """Train every member on (x, y) (x: (N, D) features, y: (N,) labels; `n_classes`
    defaults to max(y) + 1) with SGD, (Nesterov) momentum and early stopping on the
    training loss. Returns the heads in member order."""
    n_classes = n_classes or int(y.max().item()) + 1
    padded = torch.cat([x, x.new_zeros(len(x), 1)], dim=1)  # column D: the zero pad
    plan = plan_groups(members, len(x), settings, x.device)

    def train(chunk: list[int]) -> list[Head]:
        return Group([members[i] for i in chunk], padded, y, n_classes, settings).run()

    heads: list[Head | None] = [None] * len(members)
    for chunk, trained in zip(plan, _run(train, plan, settings, x.device)):
        for index, head in zip(chunk, trained):
            heads[index] = head
    return heads  # type: ignore[return-value]


def _run(
    train: Callable[[list[int]], list[Head]],
    plan: list[list[int]],
    settings: HeadSettings,
    device: torch.device,
) -> list[list[Head]]:
    """Build and train every group: in this thread on a GPU, else over worker threads
    (largest groups first, so the last ones to finish are short; a group draws its
    initial weights on its worker too)."""
    if device.type != "cpu":
        return [train(chunk) for chunk in plan]
    threads = min(settings.threads or torch.get_num_threads(), len(plan))
    with single_threaded():
        if threads <= 1:
            return [train(chunk) for chunk in plan]
        with ThreadPoolExecutor(threads) as pool:
            return list(pool.map(train, plan))


@contextmanager
def single_threaded():
    """Each worker thread runs its own single-threaded kernels: parallel over members,
    not within a GEMM. At these sizes a GEMM split over cores gains little, and with
    another process on a core every split op waits for it (measured: 35 s instead of
    1 s for one small head on a busy 2-core machine)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def predict(heads: list[Head], x: torch.Tensor, batch_size: int = 8192) -> torch.Tensor:
    """Logits of every head on shared feature rows: (P, N, C). One GEMM chain per head
    (no per-step overhead to amortise here)."""
    out = []
    for head in heads:
        parts = [head.logits(x[s : s + batch_size]) for s in range(0, len(x), batch_size)]
        out.append(torch.cat(parts) if parts else x.new_zeros(0, len(head.b2)))
    return torch.stack(out)
