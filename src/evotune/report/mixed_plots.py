"""Plots of mixed genomes (e.g. the `hparams` task): every evaluated genome on parallel
coordinates, and how much of the fitness each gene explains on its own.

Gene importance is a first-order variance split (the first term of fANOVA, without a
model): genomes are grouped by the gene's value (categories, or quantile bins of a
numeric gene) and the importance is the share of the variance of the fitness *ranks*
that the group means explain, corrected for the share k groups explain by chance
(epsilon squared: 0 on average for a gene that does not matter). Ranks, because a few
diverged trainings (validation loss in the hundreds) would otherwise own all the
variance. Under successive halving, only full-fidelity values are used when there are
enough of them.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from evotune.engine.genome_store import is_reference
from evotune.report.plots import _figure, _save
from evotune.report.rundata import RunData, floats

MIN_GENOMES = 8
BINS = 5


def mixed_entries(run: RunData) -> list[dict[str, Any]]:
    """Journal entries with a mapping genome and a finite first objective, not cached.

    A large genome journaled as a file reference (`{"file", "genes"}`, task `weights`)
    is a mapping too, but not of genes: it has no per-gene values to plot.
    """
    out = []
    for entry in run.journal:
        fitness = floats(entry.get("fitness"))
        genome = entry.get("genome")
        if entry.get("cached") or not isinstance(genome, dict) or is_reference(genome):
            continue
        if fitness and math.isfinite(fitness[0]):
            out.append(entry)
    return out


def _full_fidelity(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    full = [e for e in entries if (e.get("metrics") or {}).get("fidelity", 1.0) >= 1.0]
    return full if len(full) >= 2 * MIN_GENOMES else entries


def gene_axis(values: list[Any]) -> tuple[np.ndarray, list[str], bool]:
    """Values of one gene mapped to [0, 1], tick labels (for categories), log scale?"""
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in values):
        x = np.array(values, dtype=float)
        log = bool(np.all(x > 0) and x.max() / x.min() >= 100)
        x = np.log10(x) if log else x
        span = x.max() - x.min()
        return (x - x.min()) / span if span > 0 else np.full(len(x), 0.5), [], log
    labels = sorted({str(v) for v in values})
    index = {label: i for i, label in enumerate(labels)}
    x = np.array([index[str(v)] for v in values], dtype=float)
    return x / max(1, len(labels) - 1), labels, False


def plot_parallel(run: RunData, path: Path) -> Path | None:
    """One line per evaluated genome across its genes, coloured by the first objective
    (bright = better); the best drawn last, on top."""
    entries = mixed_entries(run)
    if len(entries) < 2:
        return None
    names = list(entries[0]["genome"])
    fitness = np.array([floats(e["fitness"])[0] for e in entries])
    better_high = run.objectives[0]["direction"] == "max"
    order = np.argsort(fitness if better_high else -fitness)  # worst first
    columns = [gene_axis([e["genome"].get(n) for e in entries]) for n in names]
    fig = _figure(1.3 * len(names) + 2.4, 4.4)
    ax = fig.add_subplot()
    from matplotlib import colormaps
    from matplotlib.colors import Normalize

    cmap = colormaps["viridis" if better_high else "viridis_r"]
    norm = Normalize(*np.percentile(fitness, [5, 95]))  # outliers must not flatten it
    ys = np.stack([c[0] for c in columns], axis=1)
    for i in order:
        ax.plot(range(len(names)), ys[i], color=cmap(norm(fitness[i])), alpha=0.6, lw=1.2)
    _axis_labels(ax, names, columns, entries)
    fig.colorbar(_mappable(cmap, norm), ax=ax, label=run.objective_labels[0])
    ax.set_title(f"{run.summary['task']}: {len(entries)} evaluated genomes")
    return _save(fig, path)


def _mappable(cmap: Any, norm: Any) -> Any:
    from matplotlib.cm import ScalarMappable

    return ScalarMappable(norm=norm, cmap=cmap)


def _axis_labels(ax: Any, names: list[str], columns: list, entries: list) -> None:
    ax.set_xticks(range(len(names)))
    ax.set_ylim(-0.05, 1.05)  # the axes' span, even when no gene varied (all at 0.5)
    ax.set_xticklabels([f"{n}\n(log)" if c[2] else n for n, c in zip(names, columns)])
    ax.set_yticks([])
    for i, (name, (_, labels, _)) in enumerate(zip(names, columns)):
        ax.axvline(i, color="0.5", lw=0.8)
        if labels:
            for j, label in enumerate(labels):
                ax.text(i, j / max(1, len(labels) - 1), f" {label}", fontsize="x-small")
        else:
            values = [e["genome"][name] for e in entries]
            for y, v in ((0.0, min(values)), (1.0, max(values))):
                ax.text(i, y, f" {v:.3g}", fontsize="x-small", va="top" if y == 0 else "bottom")


def gene_importance(run: RunData) -> dict[str, float]:
    """Gene -> share of the fitness-rank variance its value explains alone (0..1)."""
    entries = _full_fidelity(mixed_entries(run))
    if len(entries) < MIN_GENOMES:
        return {}
    fitness = np.array([floats(e["fitness"])[0] for e in entries])
    ranks = np.argsort(np.argsort(fitness)).astype(float)
    total = float(np.sum((ranks - ranks.mean()) ** 2))
    if total == 0:
        return {}
    out = {}
    for name in entries[0]["genome"]:
        groups = _groups([e["genome"].get(name) for e in entries])
        labels = np.unique(groups)
        between = sum(
            len(ranks[groups == g]) * (ranks[groups == g].mean() - ranks.mean()) ** 2
            for g in labels
        )
        within = (total - between) / max(1, len(ranks) - len(labels))
        out[name] = float(max(0.0, between - (len(labels) - 1) * within) / total)
    return out


def _groups(values: list[Any]) -> np.ndarray:
    """Group id per value: the category, or the quantile bin of a numeric gene."""
    x, labels, _ = gene_axis(values)
    if labels or len(np.unique(x)) <= BINS:
        return np.round(x, 9)
    edges = np.quantile(x, np.linspace(0, 1, BINS + 1)[1:-1])
    return np.searchsorted(edges, x, side="right").astype(float)


def plot_gene_importance(run: RunData, path: Path) -> Path | None:
    """Horizontal bars: each gene's share of the fitness-rank variance."""
    importance = gene_importance(run)
    if not importance:
        return None
    names = sorted(importance, key=importance.get)
    fig = _figure(6.0, 1.2 + 0.35 * len(names))
    ax = fig.add_subplot()
    ax.barh(names, [importance[n] for n in names], color="C0")
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of fitness-rank variance explained by the gene alone")
    ax.grid(axis="x", alpha=0.3)
    count = len(_full_fidelity(mixed_entries(run)))
    ax.set_title(f"{run.summary['task']}: gene importance ({count} genomes)")
    return _save(fig, path)
