"""Ensembles of the front, as MOEvoPruneDeepTL builds them: members grouped by windows
of accuracy percentiles ((50, 60), (55, 65) ... (85, 95)), each window voting by
majority, compared with the window's best single member; and the same on windows of
OOD AUROC, where the ensemble's OOD score is the members' mean score."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from evotune.train.ood import auroc


@dataclass
class Outputs:
    """The front's members on the evaluation (test) set."""

    logits: torch.Tensor  # (P, N, C)
    labels: torch.Tensor  # (N,)
    id_scores: torch.Tensor | None  # (P, N) OOD scores of the in-distribution inputs
    ood_scores: torch.Tensor | None  # (P, M) OOD scores of the OOD inputs

    def accuracy(self, members: np.ndarray) -> np.ndarray:
        right = self.logits[members].argmax(dim=2) == self.labels
        return right.double().mean(dim=1).cpu().numpy()

    def member_auroc(self, members: np.ndarray) -> np.ndarray:
        return auroc(self.id_scores[members], self.ood_scores[members]).cpu().numpy()


def window_members(values: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Indices whose value lies between the window's two percentiles of `values`."""
    low, high = np.percentile(values, window)
    return np.flatnonzero((values >= low) & (values <= high))


def majority_vote(logits: torch.Tensor) -> torch.Tensor:
    """(k, N, C) -> (N,) the most voted class; ties go to the higher mean probability."""
    votes = torch.nn.functional.one_hot(logits.argmax(dim=2), logits.shape[2]).sum(dim=0)
    mean_prob = torch.softmax(logits.double(), dim=2).mean(dim=0)
    return (votes + 0.5 * mean_prob).argmax(dim=1)  # mean_prob < 1: never outvotes a vote


def accuracy_windows(
    selection: np.ndarray, out: Outputs, windows: list[tuple[float, float]]
) -> list[dict]:
    """One row per window of the selection metric (validation accuracy)."""
    rows = []
    for window in windows:
        members = window_members(selection, window)
        if len(members) == 0:
            continue
        vote = majority_vote(out.logits[members])
        best = members[int(np.argmax(selection[members]))]
        rows.append(
            {
                "window": f"({window[0]:g}, {window[1]:g})",
                "members": len(members),
                "vote_accuracy": float((vote == out.labels).double().mean()),
                "best_member_accuracy": float(out.accuracy(np.array([best]))[0]),
                "mean_member_accuracy": float(out.accuracy(members).mean()),
            }
        )
    return rows


def auroc_windows(
    selection: np.ndarray, out: Outputs, windows: list[tuple[float, float]]
) -> list[dict]:
    """One row per window of validation AUROC: the mean score's AUROC vs the best's."""
    rows = []
    for window in windows:
        members = window_members(selection, window)
        if len(members) == 0:
            continue
        mean_in = out.id_scores[members].mean(dim=0, keepdim=True)
        mean_out = out.ood_scores[members].mean(dim=0, keepdim=True)
        best = members[int(np.argmax(selection[members]))]
        vote = majority_vote(out.logits[members])
        rows.append(
            {
                "window": f"({window[0]:g}, {window[1]:g})",
                "members": len(members),
                "ensemble_auroc": float(auroc(mean_in, mean_out)[0]),
                "best_member_auroc": float(out.member_auroc(np.array([best]))[0]),
                "mean_member_auroc": float(out.member_auroc(members).mean()),
                "vote_accuracy": float((vote == out.labels).double().mean()),
            }
        )
    return rows
