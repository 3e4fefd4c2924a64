"""Plots of what the search chose, for binary genomes (e.g. the `layers` task):
the layer map and fitness against trainable parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from evotune.report.plots import _figure, _save
from evotune.report.rundata import RunData


def _is_bits(genome: object) -> bool:
    return isinstance(genome, str) and set(genome) <= {"0", "1"} and len(genome) > 0


def layer_map_grid(run: RunData) -> np.ndarray | None:
    """(generations, genes) 0/1 grid of each generation's best genome, or None when the
    genomes are not bit strings."""
    genomes = {e["hash"]: e["genome"] for e in run.journal if _is_bits(e.get("genome"))}
    rows = [genomes.get(g.get("best_hash")) for g in run.generations]
    if not rows or any(r is None for r in rows):
        return None
    return np.array([[c == "1" for c in r] for r in rows], dtype=float)


def plot_layer_map(run: RunData, path: Path) -> Path | None:
    """Rows = generations, columns = genes, dark = trainable in the generation's best
    genome (as the selective-tuning paper draws it). Binary genomes only."""
    grid = layer_map_grid(run)
    if grid is None:
        return None
    fig = _figure(7.0, 1.8 + min(6.0, 0.18 * len(grid)))
    ax = fig.add_subplot()
    ax.imshow(grid, aspect="auto", cmap="Greys", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xlabel(f"gene (0 = input side, {grid.shape[1] - 1} = head side)")
    ax.set_ylabel("generation")
    ax.set_title(
        f"{run.summary['task']}: trainable genes of each generation's best (dark = trainable)"
    )
    return _save(fig, path)


def plot_fitness_vs_params(run: RunData, path: Path) -> Path | None:
    """First objective of every evaluated genome against its trainable parameters."""
    pairs = [
        (e["metrics"]["trainable_params"], e["fitness"][0], e["generation"])
        for e in run.journal
        if not e.get("cached")
        and isinstance(e.get("metrics"), dict)
        and "trainable_params" in e["metrics"]
        and e.get("fitness")
    ]
    pairs = [p for p in pairs if np.isfinite(p[1])]
    if not pairs:
        return None
    params, fitness, gens = (np.array(v, dtype=float) for v in zip(*pairs))
    fig = _figure(6.4, 4.4)
    ax = fig.add_subplot()
    points = ax.scatter(params, fitness, c=gens, cmap="viridis", s=18, alpha=0.8, label="evaluated")
    fig.colorbar(points, ax=ax, label="generation")
    for name, base in (run.summary.get("baselines") or {}).items():
        metrics = base.get("metrics") or {}
        if "trainable_params" in metrics and base.get("fitness"):
            ax.scatter(
                [metrics["trainable_params"]],
                [base["fitness"][0]],
                marker="*",
                s=160,
                edgecolor="black",
                label=f"baseline: {name}",
            )
    ax.set_xscale("symlog")
    ax.set_xlabel("trainable parameters")
    ax.set_ylabel(run.objective_labels[0])
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small")
    ax.set_title(f"{run.summary['task']}: {run.objectives[0]['name']} vs trainable parameters")
    return _save(fig, path)
