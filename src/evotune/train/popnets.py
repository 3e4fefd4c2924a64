"""Population-batched functional nets: every member of a population in one computation.

A population of P weight sets is one tensor (P x genes), never P modules: no deepcopy,
no state_dict loading per member. Two kinds:

- a tied autoencoder layer, W (P, out, in): encode relu(x W^T), decode x' = act(h W),
  as one GEMM over all members' encoders and one batched matmul for the decoders;
- any small torch module, through `torch.func.functional_call` + `vmap` over the
  stacked parameters (`PopulationModule`).

`gradient_steps` trains all members at once: the loss is the sum of the members'
losses, so each member gets exactly its own gradient, and the optimizers used here
(Adadelta, Adam, SGD) update element by element, so members never mix.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call, vmap

from evotune.train.finetune import TrainSettings, make_optimizer

OutputActivation = Literal["linear", "tanh", "sigmoid", "relu"]
CHUNK_ELEMENTS = 2**24  # floats per (members x examples x width) block: 64 MB


def activate(x: torch.Tensor, name: OutputActivation) -> torch.Tensor:
    if name == "relu":
        return torch.relu(x)
    if name == "tanh":
        return torch.tanh(x)
    if name == "sigmoid":
        return torch.sigmoid(x)
    return x


def tied_encode(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """x (B, in) shared or (P, B, in) per member, w (P, out, in) -> relu codes (P, B, out)."""
    if x.dim() == 2:  # one GEMM for all members' encoders: (B, in) x (in, P*out)
        p, out, width = w.shape
        h = (x @ w.reshape(p * out, width).T).view(x.shape[0], p, out).transpose(0, 1)
    else:
        h = torch.bmm(x, w.transpose(1, 2))
    return torch.relu(h)


def tied_reconstruct(
    x: torch.Tensor, w: torch.Tensor, output: OutputActivation = "linear"
) -> torch.Tensor:
    """Encode with W, decode with W^T (one parameter): (P, B, in)."""
    return activate(torch.matmul(tied_encode(x, w), w), output)


def decode_frozen(
    r: torch.Tensor, frozen: list[torch.Tensor], output: OutputActivation
) -> torch.Tensor:
    """Decode (P, B, width) through frozen tied layers (`frozen` in network order, the
    input-side layer first, so it is applied last): ReLU between, `output` at the end."""
    for i, w in enumerate(reversed(frozen)):
        r = activate(r @ w, output if i == len(frozen) - 1 else "relu")
    return r


def member_sse(
    x: torch.Tensor,
    w: torch.Tensor,
    target: torch.Tensor,
    output: OutputActivation = "linear",
    frozen: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Sum of squared reconstruction errors per member, (P,): differentiable.

    Layer W reconstructs `x` ((B, in) shared or (P, B, in)); with `frozen` (the layers
    below it, in network order) the reconstruction is decoded on through them and compared
    with `target` (the original input), as the seed's layer-wise training does."""
    frozen = frozen or []
    r = tied_reconstruct(x, w, "relu" if frozen else output)
    d = (decode_frozen(r, frozen, output) - target).flatten(1)
    # the sum of squares as a batched dot product: one pass over d, not three
    # (elementwise passes are what a busy 2-core machine runs slowest)
    return torch.bmm(d[:, None, :], d[:, :, None]).view(-1)


def population_sse(
    x: torch.Tensor,
    w: torch.Tensor,
    target: torch.Tensor,
    output: OutputActivation = "linear",
    frozen: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """`member_sse` on shared inputs (B, in), in chunks of examples; float64 sums."""
    widest = max(w.shape[2], target.shape[-1])
    chunk = max(1, CHUNK_ELEMENTS // (w.shape[0] * widest))
    total = torch.zeros(w.shape[0], dtype=torch.float64, device=w.device)
    for start in range(0, x.shape[0], chunk):
        end = start + chunk
        total += member_sse(x[start:end], w, target[start:end], output, frozen).double()
    return total


def population_rmse(
    x: torch.Tensor,
    w: torch.Tensor,
    target: torch.Tensor,
    output: OutputActivation = "linear",
    frozen: list[torch.Tensor] | None = None,
) -> torch.Tensor:
    """Root mean squared reconstruction error per member, (P,) float64."""
    sse = population_sse(x, w, target, output, frozen)
    return torch.sqrt(sse / (target.shape[0] * target.shape[1]))


def gradient_steps(
    params: torch.Tensor,
    member_losses: Callable[[torch.Tensor, int], torch.Tensor],
    steps: int,
    optimizer: Literal["adadelta", "adam", "sgd"] = "adadelta",
    lr: float = 1.0,
    on_step: Callable[[int, torch.Tensor], None] | None = None,
) -> torch.Tensor:
    """`steps` optimizer steps on every member at once; returns the new (detached)
    parameters. `member_losses(params, step)` -> (P,) losses; a fresh optimizer each
    call (the seed's fine-tuning restarts Adadelta every generation). `on_step(done,
    params)` is called after each step (for logging)."""
    p = params.detach().clone().requires_grad_(True)
    opt = make_optimizer([p], TrainSettings(optimizer=optimizer, lr=lr))
    for step in range(steps):
        opt.zero_grad(set_to_none=True)
        member_losses(p, step).sum().backward()
        opt.step()
        if on_step is not None:
            on_step(step + 1, p.detach())
    return p.detach()


class PopulationModule:
    """A torch module whose parameters come from population rows (P, genes).

    The module is used in eval mode (BatchNorm reads its running statistics) and its
    buffers are shared by all members."""

    def __init__(self, module: nn.Module) -> None:
        self.module = module.eval()
        named = list(module.named_parameters())
        if not named:
            raise ValueError(f"{type(module).__name__} has no parameters to evolve")
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.buffers = dict(module.named_buffers())
        self.n_genes = sum(self.sizes)

    def unflatten(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        """(P, genes) -> {name: (P, *shape)} views."""
        parts = torch.split(flat, self.sizes, dim=1)
        return {
            name: part.reshape(flat.shape[0], *shape)
            for name, part, shape in zip(self.names, parts, self.shapes)
        }

    def flatten(self) -> torch.Tensor:
        """The module's own parameters as one row (genes,)."""
        return torch.cat([p.detach().reshape(-1) for p in self.module.parameters()])

    def forward(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """All members on the same inputs: (P, genes), (B, ...) -> (P, B, ...)."""

        def one(params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.module, (params, self.buffers), (inputs,))

        return vmap(one, in_dims=(0, None))(self.unflatten(flat), x)

    def forward_each(self, flat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Member j on its own inputs x[j]: (P, genes), (P, B, ...) -> (P, B, ...)."""
        if flat.shape[0] == 1:  # one member (a gradient baseline): no vmap overhead
            params = {k: v[0] for k, v in self.unflatten(flat).items()}
            return functional_call(self.module, (params, self.buffers), (x[0],))[None]

        def one(params: dict[str, torch.Tensor], inputs: torch.Tensor) -> torch.Tensor:
            return functional_call(self.module, (params, self.buffers), (inputs,))

        return vmap(one, in_dims=(0, 0))(self.unflatten(flat), x)

    def init_std(self) -> torch.Tensor:
        """Per-gene standard deviation of the module's own initialisation, estimated per
        parameter tensor (PyTorch's defaults: uniform(-1/sqrt(fan_in), 1/sqrt(fan_in)))."""
        stds = []
        for (_, p), size in zip(self.module.named_parameters(), self.sizes):
            fan_in = p.shape[1:].numel() if p.dim() > 1 else max(1, size)
            spread = float(p.detach().std()) if p.numel() > 1 else 0.0
            std = spread if spread > 0 else 1.0 / math.sqrt(3 * fan_in)
            stds.append(torch.full((size,), std))
        return torch.cat(stds)


def cross_entropy_and_accuracy(
    logits: torch.Tensor, y: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-member mean cross-entropy and accuracy: logits (P, B, C), y (B,)."""
    p, b, c = logits.shape
    flat = logits.reshape(p * b, c)
    losses = nn.functional.cross_entropy(flat, y.repeat(p), reduction="none").view(p, b)
    correct = (logits.argmax(dim=2) == y).float()
    return losses.mean(dim=1), correct.mean(dim=1)
