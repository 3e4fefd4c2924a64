"""OOD scores from the features a head sees, for a whole population of feature masks.

Logit scores (`ood.py`: ODIN, MSP, energy) ask how confident a head is; when the OOD set
resembles the backbone's own source data (MNIST digits through an MNIST-pretrained
backbone) a head can be more confident on it than on its own task, and the AUROC falls
below 0.5. These two ask instead how far an input lies from the training data in the
space of the features a genome keeps:

- `mahalanobis` (Lee et al. 2018): class means and one shared covariance, fitted on the
  training features; score = minus the smallest Mahalanobis distance to a class mean.
- `knn` (Sun et al. 2022): features L2-normalised; score = minus the distance to the
  k-th nearest training example.

Both are fitted once on all features: a mask's statistics are sub-blocks of them (the
covariance of some features is the covariance's sub-block), so a genome needs no fit of
its own. Genomes are processed a few at a time in float64 with the same shapes whatever
the others (masked-out features are zeroed, and their covariance rows replaced by the
identity), so a genome's scores do not depend on its companions. Higher = more
in-distribution, as for the logit scores.
"""

from __future__ import annotations

from typing import Literal

import torch

FeatureScore = Literal["mahalanobis", "knn"]
FEATURE_SCORES: tuple[str, ...] = ("mahalanobis", "knn")
CHUNK_BYTES = 256 * 2**20  # working memory per chunk of genomes


class FeatureReference:
    """The training features the scores are measured against."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, n_classes: int, k: int = 50) -> None:
        if k > len(x):
            raise ValueError(f"k = {k} is larger than the {len(x)} training examples")
        self.x, self.k = x.double(), k
        self.means = torch.stack([self.x[y == c].mean(dim=0) for c in range(n_classes)])
        centred = self.x - self.means[y]
        self.cov = centred.T @ centred / len(x)
        # a small ridge keeps constant or collinear features invertible
        self.ridge = 1e-6 * float(self.cov.diagonal().mean()) + 1e-12

    def scores(self, kind: str, masks: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(P, D) masks (1 = kept) and (N, D) inputs -> (P, N) float64 scores."""
        if kind not in FEATURE_SCORES:
            raise ValueError(f"unknown feature OOD score {kind!r}; expected {FEATURE_SCORES}")
        score = self._mahalanobis if kind == "mahalanobis" else self._knn
        masks, x = masks.double(), x.double()
        d, n, t = x.shape[1], len(x), len(self.x)
        per = max(1, CHUNK_BYTES // (8 * (d * d + d * (n + t) + n * t)))
        return torch.cat([score(masks[i : i + per], x) for i in range(0, len(masks), per)])

    def _mahalanobis(self, masks: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        d = self.cov.shape[0]
        eye = torch.eye(d, dtype=torch.float64, device=x.device)
        pair = masks[:, :, None] * masks[:, None, :]
        cov = self.cov * pair + torch.diag_embed(1 - masks) + self.ridge * eye
        lower = torch.linalg.cholesky(cov)  # (p, d, d)
        zx = torch.linalg.solve_triangular(lower, (masks[:, None, :] * x).mT, upper=False)
        zm = torch.linalg.solve_triangular(lower, (masks[:, None, :] * self.means).mT, upper=False)
        # |zx - zm|^2 = |zx|^2 - 2 zx.zm + |zm|^2, without an (n, classes, d) tensor
        squared = (
            (zx * zx).sum(dim=1)[:, :, None] - 2 * zx.mT @ zm + (zm * zm).sum(dim=1)[:, None, :]
        )
        return -squared.clamp_min(0).amin(dim=2).sqrt()

    def _knn(self, masks: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        queries = _unit(masks[:, None, :] * x)
        train = _unit(masks[:, None, :] * self.x)
        squared = (2 - 2 * queries @ train.mT).clamp_min(0)  # unit vectors
        kth = torch.kthvalue(squared, self.k, dim=2).values
        return -kth.sqrt()


def _unit(v: torch.Tensor) -> torch.Tensor:
    """Rows scaled to length 1 (an all-zero row stays zero)."""
    return v / v.norm(dim=-1, keepdim=True).clamp_min(1e-12)
