"""The hot path of `popheads`: a group of members trained together, padded to one
block size, with forward, backward and Nesterov SGD written out in batched matmuls.

Per step and member the work is two GEMMs on W1's active block (forward, gradient),
one optimizer update of it, and about ten small ops on the hidden layer and W2. The
update is memory-bound (W1, its momentum and gradient are 6 MB at 1000 active inputs,
past a 2 MB L2), so it is torch's fused SGD kernel: each of the three read once, W1
and momentum written once, where three separate in-place passes streamed W1's size 9
times and took a third of the time (profiles before and after: BENCHMARKS.md, "Prune:
one generation of heads"). Inputs, labels and the loss gradient are gathered once per
span of steps, not per step, and nothing the size of W1 is allocated per step.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import torch

from evotune.train.maskedhead import Head, HeadSettings, Member, initial_block, member_seeds

MAX_GROUP = 64  # members per group, whatever the budget (GPU: the budget is large)
BYTES_PER_WEIGHT = 12  # W1, its momentum and its gradient, float32
GATHERED_MB = 64  # a group's inputs, column-gathered once, above which rows gather per span
SPAN_MB = 16  # inputs gathered for a span of steps (a whole epoch when it fits)
LINE = 16  # float32 per 64-byte line: each member's share of every parameter is whole lines


def padded_size(n: int, steps_per_octave: int) -> int:
    """A member's canonical block side: n rounded up on a fixed ladder (multiples of 8
    up to 64, then `steps_per_octave` sizes per doubling). The block depends on the
    member alone, and groups only hold equal blocks, so no GEMM ever sees a shape that
    depends on the other members (MKL's summation order changes with the shape)."""
    if n <= 64:
        return max(8, -(-n // 8) * 8)
    step = max(8, (1 << (n - 1).bit_length()) // (2 * steps_per_octave))
    return -(-n // step) * step


def plan_groups(
    members: list[Member], n_rows: int, settings: HeadSettings, device: torch.device
) -> list[list[int]]:
    """Member indices per group: equal blocks and equal numbers of training rows, at
    most MAX_GROUP members, and on a CPU a padded working set within `group_mb`.
    Largest blocks first, so that threads finish together."""
    cpu = device.type == "cpu"
    budget = settings.group_mb * 2**20 if cpu else math.inf
    keys: dict[tuple[int, int, int], list[int]] = {}
    for i, m in enumerate(members):
        d, h = block_shape(m, cpu)
        keys.setdefault((n_rows if m.rows is None else len(m.rows), d, h), []).append(i)
    groups = []
    for (_, d, h), indices in sorted(keys.items(), key=lambda kv: -kv[0][1] * kv[0][2]):
        size = int(max(1, min(MAX_GROUP, budget // (d * h * BYTES_PER_WEIGHT))))
        groups += [indices[i : i + size] for i in range(0, len(indices), size)]
    return groups


def block_shape(member: Member, cpu: bool = True) -> tuple[int, int]:
    """The member's padded W1 block (inputs x hidden units). A GPU takes a coarser
    ladder: fewer distinct blocks, larger groups, and padding is cheap there."""
    steps = 8 if cpu else 2
    return padded_size(len(member.inputs), steps), padded_size(len(member.hidden), steps)


class Group:
    """Stacked, zero-padded weights of members with equal blocks, trained together.
    Output classes are padded to whole lines (zero weights, bias -inf: probability 0),
    so that each member's share of W2 and b2 is too: the fused SGD kernel runs its
    vector loop over whole lines and a scalar loop over a tensor's tail, which round
    differently, and a member's result must not depend on where its share falls."""

    def __init__(
        self,
        members: list[Member],
        x_padded: torch.Tensor,
        y: torch.Tensor,
        n_classes: int,
        settings: HeadSettings,
    ) -> None:
        self.members, self.settings = list(members), settings
        self.x, self.y = x_padded, y
        device, n_features = x_padded.device, x_padded.shape[1] - 1
        dm, hm = block_shape(members[0], device.type == "cpu")
        self.n_classes, c_pad = n_classes, -(-n_classes // LINE) * LINE
        self.cols = torch.full((len(members), dm), n_features, dtype=torch.long)
        self.w1 = torch.zeros(len(members), dm, hm)
        self.w2 = torch.zeros(len(members), hm, c_pad)
        self.b2 = torch.full((len(members), c_pad), -math.inf)
        for g, m in enumerate(members):
            w1, w2, b2 = initial_block(m, n_features, settings.hidden, n_classes)
            d, h = len(m.inputs), len(m.hidden)
            self.cols[g, :d] = m.inputs
            self.w1[g, :d, :h] = w1
            self.w2[g, :h, :n_classes] = w2
            self.b2[g, :n_classes] = b2
        self.cols, self.w1, self.w2, self.b2 = (
            t.to(device) for t in (self.cols, self.w1, self.w2, self.b2)
        )
        every = torch.arange(len(x_padded), device=device)
        self.rows = torch.stack([every if m.rows is None else m.rows.to(device) for m in members])
        self.orders = [torch.Generator().manual_seed(member_seeds(m.seed)[1]) for m in members]
        self.v1, self.v2, self.vb = (torch.zeros_like(t) for t in (self.w1, self.w2, self.b2))
        self.gathered: torch.Tensor | None = None  # (G, N, dm) while running, if small
        self._views()

    def _views(self) -> None:
        """The gradient buffer, views of the weights (updated in place) and the update."""
        self.g1 = torch.empty_like(self.w1)
        self.w2t, self.b2rows = self.w2.transpose(1, 2), self.b2[:, None, :]
        params, velocities = [self.w1, self.w2, self.b2], [self.v1, self.v2, self.vb]
        self.update = optimizer(params, velocities, self.settings)

    # -- training ---------------------------------------------------------------------

    @torch.no_grad()
    def run(self) -> list[Head]:
        """Train until every member stopped; heads in the group's member order."""
        s = self.settings
        self._gather_inputs()
        alive = list(range(len(self.members)))
        heads: list[Head | None] = [None] * len(alive)
        history: list[list[float]] = [[] for _ in alive]
        best, waited = [math.inf] * len(alive), [0] * len(alive)
        for epoch in range(s.epochs):
            stopping = []
            for j, (pos, loss) in enumerate(zip(alive, self._epoch())):
                history[pos].append(loss)
                if loss < best[pos] - s.min_delta:
                    best[pos], waited[pos] = loss, 0
                else:
                    waited[pos] += 1
                last = epoch == s.epochs - 1
                if last or (s.patience is not None and waited[pos] >= s.patience):
                    stopping.append(j)
            for j in stopping:
                heads[alive[j]] = self._head(j, history[alive[j]])
            if stopping:
                keep = [j for j in range(len(alive)) if j not in stopping]
                alive = [alive[j] for j in keep]
                if not alive:
                    break
                self._keep(keep)
        self.gathered = None
        return heads  # type: ignore[return-value]

    def _epoch(self) -> list[float]:
        """One pass over each member's rows in its own order; mean loss per member.
        Inputs and targets are gathered a span of steps at a time (the whole epoch when
        it fits in SPAN_MB), so a step only slices them."""
        (g, n), b = self.rows.shape, self.settings.batch_size
        perms = torch.stack([torch.randperm(n, generator=gen) for gen in self.orders])
        perms = perms.to(self.rows.device)
        order = torch.gather(self.rows, 1, perms)
        picked = self.w1.new_empty(g, n, 1)  # log-probability of each example's label
        width = self.x.shape[1] if self.gathered is None else self.gathered.shape[2]
        span = max(1, SPAN_MB * 2**20 // (4 * g * width * b)) * b  # rows per gather
        for start in range(0, n, span):
            idx = order[:, start : start + span]
            inputs, (target, dloss) = self._inputs(idx), self._targets(idx, start, n)
            steps = zip(
                inputs.split(b, dim=1),
                inputs.transpose(1, 2).split(b, dim=2),
                target.split(b, dim=1),
                dloss.split(b, dim=1),
                picked[:, start : start + span].split(b, dim=1),
            )
            for xb, xbt, target_b, dloss_b, out in steps:
                self._step(xb, xbt, target_b, dloss_b, out)
        # summed in example order, not visit order: a loss that did not change does not
        # look like a change (early stopping compares these)
        by_row = torch.empty_like(picked).scatter_(1, perms[:, :, None], picked)
        return (by_row.sum(dim=(1, 2)).neg_() / max(n, 1)).tolist()

    def _step(
        self,
        xb: torch.Tensor,
        xbt: torch.Tensor,
        target: torch.Tensor,
        dloss: torch.Tensor,
        out: torch.Tensor,
    ) -> None:
        """One minibatch for every member: inputs xb (G, b, dm) and their transpose,
        labels (G, b, 1), dloss = d(mean CE)/d(log-probabilities) (G, b, C); writes the
        log-probabilities of the labels into out (G, b, 1)."""
        hidden = torch.bmm(xb, self.w1).relu_()
        logp = torch.log_softmax(torch.baddbmm(self.b2rows, hidden, self.w2), dim=2)
        torch.gather(logp, 2, target, out=out)
        dlogits = torch._log_softmax_backward_data(dloss, logp, 2, logp.dtype)
        dhidden = torch.ops.aten.threshold_backward(torch.bmm(dlogits, self.w2t), hidden, 0.0)
        g2 = torch.bmm(hidden.transpose(1, 2), dlogits)
        torch.bmm(xbt, dhidden, out=self.g1)
        self.update([self.g1, g2, dlogits.sum(dim=1)])

    def _gather_inputs(self) -> None:
        """Each member's active columns of x, once per run, when that is small enough:
        then a span copies whole rows instead of gathering columns."""
        g, dm = self.cols.shape
        if g * len(self.x) * dm * 4 <= GATHERED_MB * 2**20:
            picked = self.x.index_select(1, self.cols.flatten())  # (N, G * dm)
            self.gathered = picked.view(len(self.x), g, dm).transpose(0, 1).contiguous()

    def _inputs(self, idx: torch.Tensor) -> torch.Tensor:
        """(G, b, dm): each member's active columns of rows idx (G, b)."""
        g, b = idx.shape
        if self.gathered is not None:
            n = self.gathered.shape[1]
            flat = (idx + torch.arange(g, device=idx.device)[:, None] * n).flatten()
            return self.gathered.view(g * n, -1).index_select(0, flat).view(g, b, -1)
        rows = self.x.index_select(0, idx.flatten()).view(g, b, -1)
        return torch.gather(rows, 2, self.cols[:, None, :].expand(g, b, -1))

    def _targets(self, idx: torch.Tensor, start: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Labels (G, b, 1) and d(mean CE)/d(log-probabilities) (G, b, C) of rows idx
        (G, b) starting at `start` of the epoch's n: -1/batch at the label, else 0."""
        b = self.settings.batch_size
        target = self.y[idx][:, :, None]
        sizes = (n - torch.arange(start, start + idx.shape[1]) // b * b).clamp(max=b)
        minus = (-1.0 / sizes.to(self.w1)).expand(idx.shape)[:, :, None]
        dloss = torch.zeros(*idx.shape, self.w2.shape[2], device=idx.device)
        return target, dloss.scatter_(2, target, minus)

    # -- members leaving ----------------------------------------------------------------

    def _keep(self, keep: list[int]) -> None:
        """Drop the members that stopped."""
        index = torch.tensor(keep, device=self.w1.device)
        self.members = [self.members[j] for j in keep]
        self.orders = [self.orders[j] for j in keep]
        for name in ("cols", "rows", "w1", "v1", "w2", "v2", "b2", "vb"):
            setattr(self, name, getattr(self, name)[index])
        if self.gathered is not None:
            self.gathered = self.gathered[index]
        self._views()

    def _head(self, j: int, history: list[float]) -> Head:
        m = self.members[j]
        d, h, device = len(m.inputs), len(m.hidden), self.w1.device
        return Head(
            inputs=m.inputs.to(device),
            hidden=m.hidden.to(device),
            w1=self.w1[j, :d, :h].clone(),
            w2=self.w2[j, :h, : self.n_classes].clone(),
            b2=self.b2[j, : self.n_classes].clone(),
            epochs=len(history),
            train_loss=min(history) if history else math.nan,
            history=list(history),
        )


def optimizer(
    params: list[torch.Tensor], velocities: list[torch.Tensor], settings: HeadSettings
) -> Callable[[list[torch.Tensor]], None]:
    """update(grads): torch.optim.SGD's step (dampening 0, no weight decay) on params,
    in place. Velocities start at zero, so the first step's velocity is the gradient
    itself, as there. Fused (each parameter, gradient and velocity read once) where
    torch has the kernel, else three passes. The gradients are scratch."""
    s = settings
    # the fused kernel walks each tensor's memory as one flat run: views would be wrong
    assert all(t.is_contiguous() for t in params + velocities)
    if _has_fused_sgd(params[0].device.type):
        return functools.partial(
            torch._fused_sgd_, params, momentum_buffer_list=velocities if s.momentum else [],
            weight_decay=0.0, momentum=s.momentum, lr=s.lr, dampening=0.0,
            nesterov=s.nesterov, maximize=False, is_first_step=False,
        )  # fmt: skip
    return functools.partial(_sgd_passes, params, velocities=velocities, settings=s)


def _sgd_passes(
    params: list[torch.Tensor],
    grads: list[torch.Tensor],
    velocities: list[torch.Tensor],
    settings: HeadSettings,
) -> None:
    s = settings
    for param, grad, velocity in zip(params, grads, velocities):
        if s.momentum == 0:
            param.add_(grad, alpha=-s.lr)
            continue
        torch.add(grad, velocity, alpha=s.momentum, out=velocity)  # v = m v + g
        step = grad.add_(velocity, alpha=s.momentum) if s.nesterov else velocity
        param.add_(step, alpha=-s.lr)


@functools.cache
def _has_fused_sgd(device_type: str) -> bool:
    """torch's fused SGD kernel runs on this device type (CPU: torch >= 2.4)."""
    one = [torch.zeros(1, device=device_type)]
    try:
        torch._fused_sgd_(
            one, [torch.ones_like(one[0])], [torch.zeros_like(one[0])], weight_decay=0.0,
            momentum=0.9, lr=0.5, dampening=0.0, nesterov=True, maximize=False,
            is_first_step=False,
        )  # fmt: skip
    except (AttributeError, NotImplementedError, RuntimeError):
        return False
    return abs(one[0].item() + 0.5 * (1 + 0.9)) < 1e-6  # v = 1, p -= lr (g + m v)
