"""Auto-RGN (Lee et al., "Surgical fine-tuning improves adaptation to distribution
shifts", ICLR 2023): every layer trains, each parameter tensor at its own learning rate,
scaled by its relative gradient norm ||g|| / ||w|| normalised to [0, 1] across tensors
(divided by the largest), so the layers the data pulls on hardest train fastest.

Here the scales are set once per epoch (the paper sets them every step), from the
gradient of one probe batch: the first `batch_size` training examples in their stored
order, with the model in eval mode (no dropout draw, no batch-norm statistics update),
so the run's shuffling and random streams are exactly those of a plain `TrainingRun`.
"""

from __future__ import annotations

import torch
from torch import nn

from evotune.train.finetune import TrainingRun

EPS = 1e-12


def relative_gradient_norms(
    params: list[nn.Parameter], grads: list[torch.Tensor | None]
) -> list[float]:
    """||g|| / ||w|| per tensor (0 for a tensor without gradient)."""
    return [
        0.0 if g is None else float(g.norm() / (w.detach().norm() + EPS))
        for w, g in zip(params, grads)
    ]


def normalised(ratios: list[float]) -> list[float]:
    """Ratios divided by the largest: [0, 1], the largest 1 (all 1 when none is > 0)."""
    top = max(ratios, default=0.0)
    return [r / top for r in ratios] if top > 0 else [1.0 for _ in ratios]


class AutoRgnRun(TrainingRun):
    """A `TrainingRun` whose optimizer holds one parameter group per tensor, each
    group's learning rate rescaled before every epoch."""

    def param_groups(self, params: list[nn.Parameter]) -> list[dict[str, list[nn.Parameter]]]:
        return [{"params": [p]} for p in params]

    @property
    def params(self) -> list[nn.Parameter]:
        """The trained tensors, in the optimizer's group order."""
        return [group["params"][0] for group in self.optimizer.param_groups]

    def _one_epoch(self) -> None:
        if self.optimizer is not None:
            self.rescale()
        super()._one_epoch()

    def rescale(self) -> None:
        scales = normalised(relative_gradient_norms(self.params, self._probe_gradients()))
        for group, scale in zip(self.optimizer.param_groups, scales):
            group["lr"] = self.settings.lr * scale

    def _probe_gradients(self) -> list[torch.Tensor | None]:
        was_training = self.model.training
        self.model.eval()
        try:
            n = min(len(self.train_data), self.settings.batch_size)
            x, y = next(iter(self.train_data.batches(torch.arange(n), n)))
            loss = nn.functional.cross_entropy(self.model(x), y)
            return list(torch.autograd.grad(loss, self.params, allow_unused=True))
        finally:
            self.model.train(was_training)
