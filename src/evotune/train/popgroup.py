"""The hot path of `popheads`: a group of members trained together, padded to one
block size, with forward, backward and Nesterov SGD written out in batched matmuls.

Per step and member the work is two GEMMs on W1's active block (forward, gradient)
plus three in-place passes over it (momentum, Nesterov correction, update), and small
ones on W2. The gradient of W1 is computed into one preallocated buffer; nothing the
size of W1 is allocated per step.
"""

from __future__ import annotations

import math

import torch

from evotune.train.maskedhead import Head, HeadSettings, Member, initial_weights, member_seeds

MAX_GROUP = 64  # members per group, whatever the budget (GPU: the budget is large)
BYTES_PER_WEIGHT = 12  # W1, its momentum and its gradient, float32
GATHERED_MB = 64  # a group's inputs, column-gathered once, above which rows gather per step


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
    """Stacked, zero-padded weights of members with equal blocks, trained together."""

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
        self.cols = torch.full((len(members), dm), n_features, dtype=torch.long)
        self.w1 = torch.zeros(len(members), dm, hm)
        self.w2 = torch.zeros(len(members), hm, n_classes)
        self.b2 = torch.zeros(len(members), n_classes)
        for g, m in enumerate(members):
            w1, w2, b2 = initial_weights(m.seed, n_features, settings.hidden, n_classes)
            d, h = len(m.inputs), len(m.hidden)
            self.cols[g, :d] = m.inputs
            self.w1[g, :d, :h] = w1[m.inputs][:, m.hidden]
            self.w2[g, :h] = w2[m.hidden]
            self.b2[g] = b2
        self.cols, self.w1, self.w2, self.b2 = (
            t.to(device) for t in (self.cols, self.w1, self.w2, self.b2)
        )
        every = torch.arange(len(x_padded), device=device)
        self.rows = torch.stack([every if m.rows is None else m.rows.to(device) for m in members])
        self.orders = [torch.Generator().manual_seed(member_seeds(m.seed)[1]) for m in members]
        self.v1, self.v2, self.vb = (torch.zeros_like(t) for t in (self.w1, self.w2, self.b2))
        self.g1 = torch.empty_like(self.w1)
        self.gathered: torch.Tensor | None = None  # (G, N, dm) while running, if small

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
        """One pass over each member's rows in its own order; mean loss per member."""
        n = self.rows.shape[1]
        perms = torch.stack([torch.randperm(n, generator=g) for g in self.orders])
        order = torch.gather(self.rows, 1, perms.to(self.rows.device))
        total = torch.zeros(len(self.orders), device=self.rows.device)
        for start in range(0, n, self.settings.batch_size):
            total += self._step(order[:, start : start + self.settings.batch_size])
        return (total / max(n, 1)).tolist()

    def _step(self, idx: torch.Tensor) -> torch.Tensor:
        """One minibatch for every member (idx: (G, b) rows); returns summed losses."""
        b = idx.shape[1]
        xb = self._inputs(idx)  # (G, b, dm): each member's active columns
        target = self.y[idx][:, :, None]  # (G, b, 1)
        hidden = torch.bmm(xb, self.w1).relu_()
        logp = torch.log_softmax(torch.baddbmm(self.b2[:, None, :], hidden, self.w2), dim=2)
        loss = logp.gather(2, target).sum(dim=(1, 2)).neg_()
        # d(mean CE)/d logits = (softmax - onehot) / b
        dlogits = logp.exp_().scatter_add_(2, target, _minus_ones(target)).mul_(1.0 / b)
        dhidden = torch.ops.aten.threshold_backward(
            torch.bmm(dlogits, self.w2.transpose(1, 2)), hidden, 0.0
        )
        g2 = torch.bmm(hidden.transpose(1, 2), dlogits)
        gb = dlogits.sum(dim=1)
        g1 = torch.bmm(xb.transpose(1, 2), dhidden, out=self.g1)
        self._sgd(self.w1, self.v1, g1)
        self._sgd(self.w2, self.v2, g2)
        self._sgd(self.b2, self.vb, gb)
        return loss

    def _gather_inputs(self) -> None:
        """Each member's active columns of x, once per run, when that is small enough:
        then a step copies whole rows instead of gathering columns."""
        g, dm = self.cols.shape
        if g * len(self.x) * dm * 4 <= GATHERED_MB * 2**20:
            picked = self.x.index_select(1, self.cols.flatten())  # (N, G * dm)
            self.gathered = picked.view(len(self.x), g, dm).transpose(0, 1).contiguous()

    def _inputs(self, idx: torch.Tensor) -> torch.Tensor:
        g, b = idx.shape
        if self.gathered is not None:
            n = self.gathered.shape[1]
            flat = (idx + torch.arange(g, device=idx.device)[:, None] * n).flatten()
            return self.gathered.view(g * n, -1).index_select(0, flat).view(g, b, -1)
        rows = self.x.index_select(0, idx.flatten()).view(g, b, -1)
        return torch.gather(rows, 2, self.cols[:, None, :].expand(g, b, -1))

    def _sgd(self, param: torch.Tensor, velocity: torch.Tensor, grad: torch.Tensor) -> None:
        """torch.optim.SGD's update (dampening 0, no weight decay), in place; the first
        step's velocity is the gradient itself, as there (it starts at zero here)."""
        s = self.settings
        if s.momentum == 0:
            param.add_(grad, alpha=-s.lr)
            return
        torch.add(grad, velocity, alpha=s.momentum, out=velocity)  # v = m v + g
        if s.nesterov:
            param.add_(grad.add_(velocity, alpha=s.momentum), alpha=-s.lr)
        else:
            param.add_(velocity, alpha=-s.lr)

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
        self.g1 = torch.empty_like(self.w1)

    def _head(self, j: int, history: list[float]) -> Head:
        m = self.members[j]
        d, h, device = len(m.inputs), len(m.hidden), self.w1.device
        return Head(
            inputs=m.inputs.to(device),
            hidden=m.hidden.to(device),
            w1=self.w1[j, :d, :h].clone(),
            w2=self.w2[j, :h].clone(),
            b2=self.b2[j].clone(),
            epochs=len(history),
            train_loss=min(history) if history else math.nan,
            history=list(history),
        )


def _minus_ones(target: torch.Tensor) -> torch.Tensor:
    return torch.full(target.shape, -1.0, device=target.device)
