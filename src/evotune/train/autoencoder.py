"""The tied autoencoder stack (SEEDS.md §4) and its gradient baselines.

Layer i has one weight W_i (out_i, in_i), no bias: the encoder is relu(x W_i^T), the
decoder reuses W_i (x' = h W_i). ReLU follows every layer except the final
reconstruction (`output`: linear, or tanh / sigmoid). Layer-wise training fits W_1 with
its mirror, freezes it, then W_2 on W_1's codes (`target: codes`) or, as the seed's
code does, on the image decoded back through the frozen layers (`target: input`).

The baselines train with gradients only: `sgd` all layers end to end, `layerwise_sgd`
one layer at a time as above. Both draw minibatches from their own seeded generator.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from evotune.train.finetune import TrainSettings, make_optimizer
from evotune.train.popnets import (
    OutputActivation,
    activate,
    gradient_steps,
    member_sse,
)

Target = Literal["codes", "input"]


@dataclass
class TiedStack:
    """Trained (frozen) layers, in network order: weights[0] is (sizes[1], sizes[0])."""

    weights: list[torch.Tensor]
    output: OutputActivation = "linear"

    def encode(self, x: torch.Tensor, depth: int | None = None) -> torch.Tensor:
        """Codes after the first `depth` layers (default all): relu after each."""
        for w in self.weights[:depth]:
            x = torch.relu(x @ w.T)
        return x

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        for i, w in enumerate(reversed(self.weights)):
            h = activate(h @ w, self.output if i == len(self.weights) - 1 else "relu")
        return h

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
        return torch.cat([self.decode(self.encode(part)) for part in x.split(batch)])

    @torch.no_grad()
    def rmse(self, x: torch.Tensor, batch: int = 4096) -> float:
        """Root mean squared error of the full reconstruction of x (N, sizes[0])."""
        sse = sum(float((self.reconstruct(p) - p).double().pow(2).sum()) for p in x.split(batch))
        return math.sqrt(sse / max(1, x.numel()))


def xavier_std(fan_in: int, fan_out: int) -> float:
    """Xavier/Glorot's std (the seed initialises with xavier_uniform_, same variance)."""
    return math.sqrt(2.0 / (fan_in + fan_out))


def minibatches(n: int, batch_size: int, steps: int, seed: int) -> torch.Tensor:
    """(steps, batch) example indices: successive shuffled epochs cut into batches."""
    generator = torch.Generator().manual_seed(int(seed) % 2**63)
    batch_size = min(batch_size, n)
    epochs = math.ceil(steps * batch_size / n)
    order = torch.cat([torch.randperm(n, generator=generator) for _ in range(epochs)])
    return order[: steps * batch_size].view(steps, batch_size)


def steps_for(n: int, batch_size: int, epochs: int, steps: int | None) -> int:
    """Gradient steps: `steps` when given, else `epochs` passes over `n` examples."""
    return steps if steps is not None else epochs * math.ceil(n / min(batch_size, n))


def layer_losses(
    inputs: torch.Tensor,
    targets: torch.Tensor,
    frozen: list[torch.Tensor],
    output: OutputActivation,
    batches: torch.Tensor,
) -> Callable[[torch.Tensor, int], torch.Tensor]:
    """Per-member mean squared error of one layer, member j on minibatch batches[j, step]."""

    def losses(w: torch.Tensor, step: int) -> torch.Tensor:
        idx = batches[:, step]  # (P, B)
        target = targets[idx]
        return member_sse(inputs[idx], w, target, output, frozen) / target[0].numel()

    return losses


def train_layer(
    w: torch.Tensor,
    inputs: torch.Tensor,
    targets: torch.Tensor,
    frozen: list[torch.Tensor],
    output: OutputActivation,
    settings: TrainSettings,
    steps: int,
    seeds: list[int],
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """`steps` gradient steps on each of P layer weights w (P, out, in) at once, member
    j on its own minibatches (seeds[j]); returns the trained weights."""
    batches = torch.stack([minibatches(len(inputs), settings.batch_size, steps, s) for s in seeds])
    batches = batches.to(inputs.device)
    losses = layer_losses(inputs, targets, frozen, output, batches)
    return gradient_steps(w, losses, steps, settings.optimizer, settings.lr, on_step)


def train_end_to_end(
    weights: list[torch.Tensor],
    x: torch.Tensor,
    output: OutputActivation,
    settings: TrainSettings,
    steps: int,
    seed: int,
    on_epoch: Callable[[int, list[torch.Tensor]], None] | None = None,
) -> list[torch.Tensor]:
    """The `sgd` baseline: every layer trained together on the full reconstruction.
    `on_epoch(step, weights)` is called about once per pass over `x`."""
    params = [w.detach().clone().requires_grad_(True) for w in weights]
    optimizer = make_optimizer(params, settings)
    batches = minibatches(len(x), settings.batch_size, steps, seed).to(x.device)
    per_epoch = max(1, math.ceil(len(x) / batches.shape[1]))
    stack = TiedStack(params, output)
    for step in range(steps):
        part = x[batches[step]]
        loss = (stack.decode(stack.encode(part)) - part).pow(2).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if on_epoch is not None and ((step + 1) % per_epoch == 0 or step + 1 == steps):
            on_epoch(step + 1, [p.detach() for p in params])
    return [p.detach() for p in params]
