"""Explanations of the front: how often each feature (or neuron) is kept across it, the
most frequent ones, and Grad-CAM++ maps of those features on sample inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from evotune.models import TransferNet
from evotune.prune.gradcam import conv_stages, grad_cam_pp
from evotune.report.plots import _figure, _save


def frequency(masks: np.ndarray) -> np.ndarray:
    """Fraction of the front's members that keep each bit: (P, L) -> (L,)."""
    return np.asarray(masks, dtype=float).mean(axis=0) if len(masks) else np.zeros(0)


def top(freq: np.ndarray, k: int) -> list[int]:
    """The k most frequent indices (ties: lower index first)."""
    order = np.lexsort((np.arange(len(freq)), -freq))
    return [int(i) for i in order[:k]]


def plot_frequency(freq: np.ndarray, chosen: list[int], what: str, path: Path) -> Path:
    fig = _figure(7.0, 3.4)
    ax = fig.add_subplot()
    ax.bar(np.arange(len(freq)), freq, width=1.0, color="0.55")
    ax.bar(chosen, freq[chosen], width=1.0, color="crimson", label=f"top {len(chosen)}")
    ax.set_xlabel(f"{what} index")
    ax.set_ylabel("fraction of the front keeping it")
    ax.set_xlim(-0.5, len(freq) - 0.5)
    ax.legend(fontsize="small")
    ax.set_title(f"How often each {what} is active across the Pareto front")
    return _save(fig, path)


def plot_gradcam(
    net: TransferNet, images: torch.Tensor, chosen: list[int], stage: int, path: Path
) -> Path | None:
    """Rows: the chosen features; columns: sample images with the map overlaid."""
    if not conv_stages(net) or len(images) == 0:
        return None
    device = next(net.parameters()).device
    heat = grad_cam_pp(net, images.to(device), chosen, stage).cpu().numpy()
    shown = images[:, 0].cpu().numpy()  # first channel, as a grey background
    rows, cols = len(chosen), len(images)
    fig = _figure(1.5 * cols + 0.8, 1.5 * rows + 0.6)
    axes = fig.subplots(rows, cols, squeeze=False)
    for r, feature in enumerate(chosen):
        for c in range(cols):
            ax = axes[r, c]
            ax.imshow(shown[c], cmap="gray")
            ax.imshow(heat[r, c], cmap="jet", alpha=0.45, vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(f"feature {feature}", fontsize="small")
    fig.suptitle("Grad-CAM++ of the most frequent features (rows) on test inputs")
    return _save(fig, path)
