"""Out-of-distribution inputs: other datasets, shaped like the in-distribution data and
sized like its validation and test sets (as MOEvoPruneDeepTL sizes its OOD set)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from evotune.data import Dataset
from evotune.errors import UserError


def match_inputs(x: torch.Tensor, shape: tuple[int, int, int], where: str) -> torch.Tensor:
    """x (N, C, H, W) resized (bilinear) to shape's H, W and mapped to its channels
    (gray -> repeated, colour -> mean), so the same backbone and adapter take it."""
    channels, height, width = shape
    if tuple(x.shape[-2:]) != (height, width):
        x = F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)
    if x.shape[1] != channels:
        if x.shape[1] == 1:
            x = x.repeat(1, channels, 1, 1)
        elif channels == 1:
            x = x.mean(dim=1, keepdim=True)
        else:
            raise UserError(
                f"{where}: {x.shape[1]}-channel inputs cannot be matched to the "
                f"{channels}-channel in-distribution data"
            )
    return x.contiguous()


def match_range(x: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """x mapped linearly so that its 1st-99th percentiles fall on the reference's: a
    spectrogram in dB and an image in [0, 1] then reach the backbone on one scale, as
    every dataset in MOEvoPruneDeepTL goes through the same image preprocessing."""
    q = torch.tensor([0.01, 0.99])
    lo, hi = torch.quantile(_sample(x), q)
    ref_lo, ref_hi = torch.quantile(_sample(reference), q)
    return (x - lo) / (hi - lo).clamp_min(1e-12) * (ref_hi - ref_lo) + ref_lo


def to_range(splits: dict[str, torch.Tensor], low: float, high: float) -> dict[str, torch.Tensor]:
    """Every split mapped by the affine map taking the training inputs' 1st-99th
    percentiles to [low, high] (a frozen image backbone expects its own input range;
    a log-mel spectrogram in dB is far outside it)."""
    lo, scale = range_map(splits["train"], low, high)
    return {k: (v - lo) * scale + low for k, v in splits.items()}


def range_map(train: torch.Tensor, low: float, high: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(lo, scale) of `to_range`: x' = (x - lo) * scale + low (an exported model
    records them, so that new data is mapped exactly as the run's was)."""
    lo, hi = torch.quantile(_sample(train), torch.tensor([0.01, 0.99]))
    return lo, (high - low) / (hi - lo).clamp_min(1e-12)


def _sample(x: torch.Tensor, n: int = 1_000_000) -> torch.Tensor:
    flat = x.flatten().float()
    return flat[:: max(1, len(flat) // n)]  # quantile() refuses huge inputs


def ood_inputs(
    datasets: list[Dataset],
    shape: tuple[int, int, int],
    n_val: int,
    n_test: int,
    reference: torch.Tensor | None = None,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(validation, test) OOD inputs: every split of every dataset pooled, drawn in turn
    from each dataset (so several sources are mixed evenly), n_val then n_test of them;
    a pool too small is shared out in the same proportions. With `reference` (the
    in-distribution inputs), each dataset is first mapped to its value range."""
    pools = [
        match_inputs(torch.cat([s.x for s in d.splits().values()]), shape, f"task.ood[{i}]")
        for i, d in enumerate(datasets)
    ]
    if reference is not None:
        pools = [match_range(p, reference) for p in pools]
    rng = np.random.default_rng(seed)
    picks = [(rng.permutation(len(p)), i) for i, p in enumerate(pools)]
    # round robin: the k-th example of every source, then the (k+1)-th, ...
    order = sorted(
        ((k, i, int(j)) for perm, i in picks for k, j in enumerate(perm)),
        key=lambda t: (t[0], t[1]),
    )
    total = len(order)
    if total < n_val + n_test:
        n_val = round(total * n_val / max(1, n_val + n_test))
        n_test = total - n_val
    chosen = [pools[i][j] for _, i, j in order[: n_val + n_test]]
    stacked = torch.stack(chosen) if chosen else torch.zeros(0, *shape)
    return stacked[:n_val], stacked[n_val:]
