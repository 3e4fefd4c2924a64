"""Plots of what the search chose, for binary genomes (e.g. the `layers` task):
the layer map and fitness against trainable parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

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


MAX_TICKS = 60  # gene labels on the layer map's axis; more are thinned out


def _section(run: RunData, name: str) -> dict:
    """A config section as a mapping (`task: onemax` is a name alone)."""
    value = run.config.get(name)
    return value if isinstance(value, dict) else {}


def gene_meaning(run: RunData) -> str:
    """What a 1 in a bit genome means, by task: the layer map's legend and caption."""
    task = run.summary.get("task")
    if task == "layers":
        return "trainable layers"
    if task == "prune":
        mode = _section(run, "task").get("mode", "features")
        return {
            "features": "kept input features",
            "neurons": "kept hidden neurons",
        }.get(mode, "kept input features, then kept hidden neurons")
    return "genes set to 1"


def plot_layer_map(run: RunData, path: Path) -> Path | None:
    """Rows = genes (layer names when the run recorded them, input side at the top),
    columns = generations, dark = 1 in the generation's best genome. Bit genomes only."""
    fig = layer_map_figure(run)
    return None if fig is None else _save(fig, path)


def layer_map_figure(run: RunData) -> Figure | None:
    grid = layer_map_grid(run)
    if grid is None:
        return None
    n_gens, n_genes = grid.shape
    names = run.gene_names(n_genes)
    # named rows need room for their labels; numbered ones only for a few ticks
    fig = _figure(7.0, min(12.0, 1.6 + 0.16 * n_genes) if names else min(7.0, 2.2 + 0.06 * n_genes))
    ax = fig.add_subplot()
    ax.imshow(
        grid.T,
        aspect="auto",
        cmap="Greys",
        vmin=0,
        vmax=1,
        interpolation="nearest",
        extent=(-0.5, n_gens - 0.5, n_genes - 0.5, -0.5),
    )
    shown = np.arange(0, n_genes, max(1, -(-n_genes // MAX_TICKS)))
    ax.set_yticks(shown, labels=[names[i] for i in shown] if names else [str(i) for i in shown])
    ax.tick_params(axis="y", labelsize="x-small" if n_genes > 20 else "small")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if n_genes <= MAX_TICKS:  # a thin line between genes, so each row reads as one
        ax.set_yticks(np.arange(n_genes + 1) - 0.5, minor=True)
        ax.tick_params(axis="y", which="minor", length=0)
        ax.grid(which="minor", axis="y", color="0.75", linewidth=0.5)
    _mark_prune_sides(ax, run, n_genes, n_gens)
    ax.set_ylabel(_gene_axis(run, names is not None))
    ax.set_xlabel("generation")
    meaning = gene_meaning(run)
    ax.set_title(f"{run.summary['task']}: {meaning} of each generation's best (dark)")
    return fig


def _gene_axis(run: RunData, named: bool) -> str:
    if named or run.summary.get("task") == "layers":
        return "layer (input side at the top)"
    if run.summary.get("task") == "prune":
        return "neuron" if _section(run, "task").get("mode") == "neurons" else "feature"
    return "gene"


def _mark_prune_sides(ax: Axes, run: RunData, n_genes: int, n_gens: int) -> None:
    """prune with mode `both`: features first, then hidden neurons; a line between."""
    hidden = _section(run, "fitness").get("hidden")
    mode = _section(run, "task").get("mode")
    if run.summary.get("task") == "prune" and mode == "both" and isinstance(hidden, int):
        if 0 < hidden < n_genes:
            ax.axhline(n_genes - hidden - 0.5, color="crimson", linewidth=1.2)
            ax.text(n_gens - 0.5, n_genes - hidden - 0.5, "neurons ", color="crimson",
                    ha="right", va="top", fontsize="small")  # fmt: skip


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
    for name, base in run.baselines.items():
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
