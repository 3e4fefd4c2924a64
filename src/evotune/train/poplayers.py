"""Population-batched fine-tuning: several TransferNets of one architecture trained at once.

Task `layers` (`task.batch`) trains the genomes of a call together. Their networks
differ only in values (a fresh head per seed) and in what trains (the freeze mask), so
they stack: every parameter and buffer becomes one (P, ...) tensor (as
`torch.func.stack_module_state` makes them, but with per-member `requires_grad`) and one
`vmap` of `functional_call` runs every member on its own inputs. What keeps members apart:

- data: each member shuffles with its own seeded generator, exactly as `fit` does, and
  its batches are gathered per member into one (P, B, ...) input;
- what trains: the loss is the sum of the members' losses (each member gets exactly its
  own gradient), a stacked parameter's gradient is zeroed for members that freeze it,
  and the optimizers (Adam, SGD, Adadelta) act element by element; with weight decay
  the frozen members' values are also put back after each step;
- batch norm: each batch norm becomes a `MemberBatchNorm` with a per-member flag, read
  from the member's own net after `.train()` (so `model.batchnorm` frozen_eval, eval
  and train keep their meaning): flagged members normalise with the batch statistics
  and update their running statistics, the others use (and keep) their running ones;
- early stopping: each member keeps its own counters; a stopped member keeps training
  with the others (its later epochs are ignored) until every member has stopped.

Members start from stage 0 (no frozen-prefix cache), and a stacked kernel (grouped
convolution, batched matmul) sums in another order than one member's: a member's
fitness equals one-at-a-time training to a tolerance, not bit for bit (tests say
which). It is bit for bit independent of its companions (tested: alone, in other
stacks, in other positions), so a resumed generation split differently journals the
same values: a lone member is stacked with a copy of itself, and no batch norm picks a
shortcut from its companions' modes (`_set_stack_modes`). Nets with dropout or
stochastic depth (random draws shared by the stack) or batch norms without running
statistics are not batchable (`batchable`).
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, vmap
from torch.nn.modules.batchnorm import _BatchNorm

from evotune.data.dataset import Split
from evotune.models import TransferNet
from evotune.train.device import autocast
from evotune.train.finetune import TrainResult, TrainSettings, make_optimizer
from evotune.train.halving import Reached
from evotune.train.schedule import Outcome, repeat_seeds

# `task.batch: auto`: members per stack on a GPU; 1 on a CPU, where a stack of 16 small
# ResNets trained no faster than one at a time with one thread (BENCHMARKS.md)
AUTO_BATCH = {"cuda": 16, "cpu": 1}
FLAG = "member_train"  # the per-member batch-norm mode buffer of a MemberBatchNorm


class MemberBatchNorm(nn.Module):
    """Batch norm whose mode is a per-member buffer (`member_train`, 1.0 = training
    mode): under `vmap` each member normalises as its own net would. `stack_mode` is
    how the stack runs it ("train", "eval", or "mixed": both normalisations, then a
    per-member pick), fixed by the net's batch-norm policy, never by the companions."""

    def __init__(self, bn: _BatchNorm) -> None:
        super().__init__()
        self.eps, self.momentum = bn.eps, bn.momentum
        self.weight, self.bias = bn.weight, bn.bias
        self.register_buffer("running_mean", bn.running_mean)
        self.register_buffer("running_var", bn.running_var)
        self.register_buffer("num_batches_tracked", bn.num_batches_tracked)
        self.register_buffer(FLAG, torch.tensor(float(bn.training)))
        self.stack_mode = "mixed"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.stack_mode == "eval":
            return self._normalise(x, self.running_mean, self.running_var, False)
        if self.stack_mode == "train":
            return self._normalise(x, self.running_mean, self.running_var, True)
        mean, var = self.running_mean.clone(), self.running_var.clone()
        trained = self._normalise(x, mean, var, True)  # updates mean and var
        old = self.running_mean.clone(), self.running_var.clone()  # kept for backward
        frozen = self._normalise(x, *old, False)
        on = self.member_train > 0.5
        self.running_mean.copy_(torch.where(on, mean, self.running_mean))
        self.running_var.copy_(torch.where(on, var, self.running_var))
        return torch.where(on, trained, frozen)

    def _normalise(
        self, x: torch.Tensor, mean: torch.Tensor, var: torch.Tensor, training: bool
    ) -> torch.Tensor:
        return nn.functional.batch_norm(
            x, mean, var, self.weight, self.bias, training, self.momentum, self.eps
        )


def _set_stack_modes(base: nn.Module, buffers: dict[str, torch.Tensor], policy: str) -> None:
    """Each MemberBatchNorm's `stack_mode`. Under `model.batchnorm: frozen_eval` a batch
    norm's mode depends on the member's genome: always "mixed", so that a member's
    numbers do not depend on whether its companions happen to share its modes."""
    for name, module in base.named_modules():
        if isinstance(module, MemberBatchNorm):
            flags = buffers[f"{name}.{FLAG}" if name else FLAG]
            same = "train" if bool(flags.all()) else "eval" if not bool(flags.any()) else None
            module.stack_mode = "mixed" if policy == "frozen_eval" or same is None else same


def batchable(net: TransferNet, train: object, settings: TrainSettings) -> str | None:
    """Why `net` cannot be trained in a stack (None: it can)."""
    if settings.precision == "fp16":
        return "fp16 needs a loss scaler per member (bf16 and fp32 batch)"
    if not isinstance(train, Split):
        return "the training data is streamed from disk"
    for name, module in net.named_modules():
        kind = type(module).__name__
        if isinstance(module, nn.modules.dropout._DropoutNd) or kind == "StochasticDepth":
            return f"{name} ({kind}) draws random numbers"
        if isinstance(module, _BatchNorm) and not (
            module.affine and module.track_running_stats and module.momentum is not None
        ):
            return f"batch norm {name} has no running statistics, affine or momentum"
    return None


def _stack_template(net: TransferNet) -> nn.Module:
    """A copy of `net` with every batch norm replaced by a MemberBatchNorm: the module
    `functional_call` runs (its own tensors are never used)."""
    base = copy.deepcopy(net)
    for name, module in list(base.named_modules()):
        if isinstance(module, _BatchNorm):
            parent, _, child = name.rpartition(".")
            setattr(base.get_submodule(parent) if parent else base, child, MemberBatchNorm(module))
    return base


def _member_buffers(net: TransferNet) -> dict[str, torch.Tensor]:
    """The net's buffers plus each batch norm's mode flag, read after `.train()`."""
    net.train()
    buffers = {k: v.detach().clone() for k, v in net.named_buffers()}
    device = next(net.parameters()).device  # the flags go where the statistics are
    for name, module in net.named_modules():
        if isinstance(module, _BatchNorm):
            flag = torch.tensor(float(module.training), device=device)
            buffers[f"{name}.{FLAG}" if name else FLAG] = flag
    return buffers


@dataclass
class _Member:
    """One member's early-stopping bookkeeping (as `finetune.TrainingRun` keeps it)."""

    settings: TrainSettings
    generator: torch.Generator
    best_loss: float = math.inf
    best_acc: float = 0.0
    waited: int = 0
    stopped: bool = False
    history: list[dict[str, float]] = field(default_factory=list)

    def record(self, train_loss: float, val_loss: float, val_acc: float) -> None:
        if self.stopped:
            return  # it stopped early: later epochs are not its own
        self.history.append(
            {
                "epoch": len(self.history),
                "train_loss": train_loss,
                "val_loss": val_loss,
                "val_accuracy": val_acc,
            }
        )
        self.best_acc = max(self.best_acc, val_acc)
        watched = val_loss if self.settings.monitor == "val_loss" else train_loss
        if watched < self.best_loss:
            self.best_loss, self.waited = watched, 0
        else:
            self.waited += 1
            if self.settings.patience is not None and self.waited >= self.settings.patience:
                self.stopped = True

    seconds: float = 0.0  # its share of the stack's time

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def result(self) -> TrainResult:
        """As `TrainingRun.result()`: best validation loss and accuracy so far."""
        losses = [h["val_loss"] for h in self.history if not math.isnan(h["val_loss"])]
        best = min(losses, default=math.inf)
        return TrainResult(self.best_acc, best, self.epochs_run, self.seconds, list(self.history))


class PopulationTrainer:
    """Members (nets of one architecture, each already under its freeze mask) trained
    as one stack; `fit()` returns one TrainResult per member, in order."""

    def __init__(
        self,
        nets: list[TransferNet],
        train: Split,
        val: Split,
        settings: TrainSettings,
        seeds: list[int],
    ) -> None:
        if settings.restore_best:
            raise ValueError("restore_best is not supported by population training")
        self.base = _stack_template(nets[0])
        self.train_data, self.val_data, self.settings = train, val, settings
        named = [dict(net.named_parameters()) for net in nets]
        self.params = {k: torch.stack([m[k].detach() for m in named]) for k in named[0]}
        self.buffers = stack_buffers(nets)
        _set_stack_modes(self.base, self.buffers, nets[0].batchnorm)
        masks = {k: torch.tensor([m[k].requires_grad for m in named]) for k in named[0]}
        self.masks: dict[str, torch.Tensor] = {}
        for name, on in masks.items():
            if on.any():
                self.params[name].requires_grad_(True)
                if not on.all():
                    shape = (len(nets),) + (1,) * (self.params[name].dim() - 1)
                    self.masks[name] = on.to(self.params[name].device).view(shape)
        trainable = [p for p in self.params.values() if p.requires_grad]
        self.optimizer = make_optimizer(trainable, settings) if trainable else None
        self.members = [_Member(settings, torch.Generator().manual_seed(int(s))) for s in seeds]

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        def one(params, buffers, inputs):
            return functional_call(self.base, (params, buffers), (inputs,))

        with autocast(x.device, self.settings.precision):
            return vmap(one)(self.params, self.buffers, x).float()

    def _train_epoch(self) -> list[float]:
        nn.Module.train(self.base, True)  # not TransferNet.train: flags decide the modes
        n, size = len(self.train_data), self.settings.batch_size
        device = self.train_data.x.device
        orders = torch.stack([torch.randperm(n, generator=m.generator) for m in self.members])
        orders = orders.to(device)
        totals = [0.0] * len(self.members)
        for start in range(0, n, size):
            rows = orders[:, start : start + size]
            x = self.train_data.x[rows]
            y = self.train_data.y[rows.to(self.train_data.y.device)]
            logits = self._forward(x)
            losses = (
                nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none")
                .view(y.shape)
                .mean(dim=1)
            )
            self._step(losses)
            for i, value in enumerate(losses.detach().tolist()):
                totals[i] += value * y.shape[1]
        return [t / max(1, n) for t in totals]

    def _step(self, losses: torch.Tensor) -> None:
        if self.optimizer is None:
            return
        self.optimizer.zero_grad(set_to_none=True)
        losses.sum().backward()
        kept = {}
        for name, mask in self.masks.items():
            grad = self.params[name].grad
            if grad is not None:
                grad.mul_(mask)
            if self.settings.weight_decay > 0:  # decay would move the frozen members
                kept[name] = self.params[name].detach().clone()
        self.optimizer.step()
        with torch.no_grad():
            for name, old in kept.items():
                self.params[name].copy_(torch.where(self.masks[name], self.params[name], old))

    @torch.no_grad()
    def _validate(self) -> tuple[list[float], list[float]]:
        self.base.eval()
        p = len(self.members)
        loss_sum, correct = [0.0] * p, [0] * p
        for x, y in self.val_data.batches(None, self.settings.eval_batch_size):
            logits = self._forward(x.expand(p, *x.shape))
            losses = (
                nn.functional.cross_entropy(logits.flatten(0, 1), y.repeat(p), reduction="none")
                .view(p, -1)
                .sum(dim=1)
            )
            hits = (logits.argmax(dim=2) == y).sum(dim=1)
            for i, (value, hit) in enumerate(zip(losses.tolist(), hits.tolist())):
                loss_sum[i] += value
                correct[i] += hit
        n = max(1, len(self.val_data))
        return [s / n for s in loss_sum], [c / n for c in correct]

    def fit(self) -> list[_Member]:
        """Train for `settings.epochs` (or until every member stopped); the members,
        each with `result()` and `epochs_run` as a finished `TrainingRun` has."""
        began = time.perf_counter()
        for _ in range(self.settings.epochs):
            if all(m.stopped for m in self.members):
                break
            train_losses = (
                self._train_epoch() if self.optimizer is not None else [0.0] * len(self.members)
            )
            val_losses, val_accs = self._validate()
            for member, tl, vl, va in zip(self.members, train_losses, val_losses, val_accs):
                member.record(tl, vl, va)
        for member in self.members:
            member.seconds = (time.perf_counter() - began) / len(self.members)
        return self.members


def stack_buffers(nets: list[TransferNet]) -> dict[str, torch.Tensor]:
    """Every member's buffers (and batch-norm mode flags), stacked (P, ...)."""
    per_member = [_member_buffers(net) for net in nets]
    return {k: torch.stack([b[k] for b in per_member]) for k in per_member[0]}


def train_population(
    nets: list[TransferNet],
    train: Split,
    val: Split,
    settings: TrainSettings,
    seeds: list[int],
) -> list[TrainResult]:
    """Train every net (each under its own freeze mask) from its own seed's shuffling,
    all in one stack; one TrainResult per net, as `finetune.fit` would give (to a
    tolerance: see the module's docstring)."""
    return [m.result() for m in PopulationTrainer(nets, train, val, settings, seeds).fit()]


MakeNet = Callable[[np.ndarray, int], tuple[TransferNet, int]]


class PopulationBatches:
    """A task's genomes trained in stacks of `size` members (one member per genome and
    repeat seed); `train` returns the same `Outcome`s as `Schedule.train` under the full
    budget. A lone member is stacked with a copy of itself: a stack of one runs other
    kernels than a stack of several, and a member's value must not depend on how many
    companions it had (a resumed generation is split differently)."""

    def __init__(
        self,
        make_net: MakeNet,
        train: Split,
        val: Split,
        settings: TrainSettings,
        size: int,
        repeats: int = 1,
    ) -> None:
        self.make_net, self.train_data, self.val_data = make_net, train, val
        self.settings, self.size, self.repeats = settings, size, repeats

    def train(self, genomes: np.ndarray, seeds: np.ndarray) -> list[Outcome]:
        jobs = [
            (i, s) for i, seed in enumerate(seeds) for s in repeat_seeds(int(seed), self.repeats)
        ]
        runs: list[list[_Member]] = [[] for _ in genomes]
        extra: list[int] = [0] * len(genomes)
        for start in range(0, len(jobs), self.size):
            stack = jobs[start : start + self.size]
            padded = stack * 2 if len(stack) == 1 else stack
            built = [self.make_net(genomes[i], s) for i, s in padded]
            members = PopulationTrainer(
                [net for net, _ in built],
                self.train_data,
                self.val_data,
                self.settings,
                [s for _, s in padded],
            ).fit()
            for (i, _), member, (_, trainable) in zip(stack, members, built):
                runs[i].append(member)
                extra[i] = trainable
        done = Reached(0, self.settings.epochs, True)
        return [Outcome(r, e, done) for r, e in zip(runs, extra)]  # type: ignore[arg-type]


def population_batches(
    batch: int | str,
    device: torch.device,
    template: TransferNet,
    train: object,
    settings: TrainSettings,
    halving: bool,
) -> tuple[int, str | None]:
    """Stack size for `task.batch` (`auto`: AUTO_BATCH by device type) and why it falls
    back to one genome at a time (None: it does not)."""
    size = AUTO_BATCH.get(device.type, 1) if batch == "auto" else int(batch)
    if size <= 1:
        return 1, None
    if halving:
        return 1, "successive halving trains genome by genome"
    why = batchable(template, train, settings)
    return (1, why) if why else (size, None)
