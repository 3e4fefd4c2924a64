"""The report's plots, one function each: `plot_X(run, path) -> path | None`.

Figures are built with `matplotlib.figure.Figure` + `FigureCanvasAgg`, never pyplot:
pyplot keeps global figure state and picks a backend for the whole process, which
would leak into a user's notebook or fail on a headless machine. A function returns
None when its plot does not apply to the run (e.g. no hypervolume was recorded).
Non-finite fitness (failed evaluations) is dropped before plotting.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from evotune.engine.state import atomic_write_bytes
from evotune.report.rundata import RunData, floats

DPI = 110
FRONT_STYLE = {"facecolor": "none", "edgecolor": "crimson", "linewidths": 1.6, "s": 70}


def plot_fitness(run: RunData, path: Path) -> Path | None:
    """Best and mean fitness per generation, one subplot per objective, + baselines;
    a staged run's stages as separate curves between marked boundaries."""
    fig = fitness_figure(run)
    return None if fig is None else _save(fig, path)


def fitness_figure(run: RunData) -> Figure | None:
    if not run.generations:
        return None
    gens = np.array([g["generation"] for g in run.generations], dtype=float)
    best, mean = _per_generation(run, "best"), _per_generation(run, "mean")
    spans = run.stage_spans()
    n_obj = len(run.objectives)
    fig = _figure(6.4, 2.2 + 1.8 * n_obj)
    for k, ax in enumerate(fig.subplots(n_obj, 1, sharex=True, squeeze=False)[:, 0]):
        # a stage's fitness is its own layer's: never join one stage's curve to the next
        for i, part in enumerate(_stage_masks(gens, spans)):
            labels = ("best", "mean") if i == 0 else (None, None)
            ax.plot(gens[part], best[part, k], "o-", ms=3, color="C0", label=labels[0])
            ax.plot(gens[part], mean[part, k], "--", color="C1", label=labels[1])
        _draw_baselines(ax, run.baselines, k)
        _mark_stages(ax, spans, top=k == 0)
        ax.set_ylabel(run.objective_labels[k])
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small", loc="best")
    trained = any(s.get("stopped_by") == "epochs" for s in _stages(run))
    ax.set_xlabel("generation (epoch, in a gradient-trained stage)" if trained else "generation")
    fig.suptitle(f"{run.summary['task']}: fitness per generation")
    return fig


def plot_hypervolume(run: RunData, path: Path) -> Path | None:
    """Hypervolume per generation; None when no generation recorded a finite one."""
    pairs = [(g["generation"], floats(g.get("hypervolume"))[0]) for g in run.generations]
    pairs = [(x, y) for x, y in pairs if np.isfinite(y)]
    if not pairs:
        return None
    fig = _figure(6.4, 3.6)
    ax = fig.add_subplot()
    x, y = zip(*pairs, strict=True)
    ax.plot(x, y, marker="o", markersize=3)
    ax.set_xlabel("generation")
    ax.set_ylabel("hypervolume")
    ax.grid(alpha=0.3)
    ax.set_title(f"{run.summary['task']}: hypervolume per generation")
    return _save(fig, path)


def plot_pareto(run: RunData, path: Path) -> Path | None:
    """Every evaluated point coloured by generation, the Pareto front circled.

    2 objectives: one scatter. 3+: a scatter matrix (histograms on the diagonal).
    None for a single objective or when nothing finite was evaluated.
    """
    n_obj = len(run.objectives)
    if n_obj < 2:
        return None
    points, gens = evaluated_points(run)
    front = pareto_points(run)
    if len(points) == 0 and len(front) == 0:
        return None
    if n_obj == 2:
        fig = _figure(6.4, 5.0)
        scatter = _scatter_pair(fig.add_subplot(), points, gens, front, (0, 1))
        ax = fig.axes[0]
        ax.set_xlabel(run.objective_labels[0])
        ax.set_ylabel(run.objective_labels[1])
        ax.legend(fontsize="small", loc="best")
    else:
        fig = _figure(2.3 * n_obj + 1.2, 2.3 * n_obj)
        scatter = _scatter_matrix(fig, points, gens, front, run)
    if scatter is not None:
        fig.colorbar(scatter, ax=fig.axes, label="generation")
    fig.suptitle(f"{run.summary['task']}: evaluated points and Pareto front")
    return _save(fig, path)


def evaluated_points(run: RunData) -> tuple[np.ndarray, np.ndarray]:
    """(fitness rows, generations) of non-cached journal entries with all-finite fitness.

    Cached entries are repeats of an earlier evaluation; plotting them again would
    overweight genomes the search kept re-proposing.
    """
    n_obj = len(run.objectives)
    rows, gens = [], []
    for entry in run.journal:
        fit = floats(entry.get("fitness"))
        if entry.get("cached") or len(fit) != n_obj or not np.all(np.isfinite(fit)):
            continue
        rows.append(fit)
        gens.append(floats(entry.get("generation"))[0])
    return np.array(rows, dtype=float).reshape(-1, n_obj), np.array(gens, dtype=float)


def pareto_points(run: RunData) -> np.ndarray:
    """Finite fitness rows of the summary's Pareto front."""
    n_obj = len(run.objectives)
    rows = [floats(p.get("fitness")) for p in run.summary.get("pareto") or []]
    rows = [r for r in rows if len(r) == n_obj and np.all(np.isfinite(r))]
    return np.array(rows, dtype=float).reshape(-1, n_obj)


def _per_generation(run: RunData, key: str) -> np.ndarray:
    """(generations x objectives) of generations.jsonl's `key`, non-finite -> NaN (a gap)."""
    n_obj = len(run.objectives)
    out = np.full((len(run.generations), n_obj), np.nan)
    for i, gen in enumerate(run.generations):
        row = floats(gen.get(key))[:n_obj]
        out[i, : len(row)] = row
    # inf would wreck the autoscaled axis; a gap in the line says "failed" just as well
    out[~np.isfinite(out)] = np.nan
    return out


def _stages(run: RunData) -> list[dict[str, Any]]:
    stages = run.summary.get("stages")
    return [s for s in stages.values() if isinstance(s, dict)] if isinstance(stages, dict) else []


def _stage_masks(gens: np.ndarray, spans: list[tuple[str, int, int]]) -> list[np.ndarray]:
    if not spans:
        return [np.ones(len(gens), dtype=bool)]
    return [(gens >= first) & (gens <= last) for _, first, last in spans]


def _mark_stages(ax: Axes, spans: list[tuple[str, int, int]], top: bool) -> None:
    """A vertical line at each stage boundary, alternate stages shaded, names on top."""
    for i, (_, first, last) in enumerate(spans):
        if i > 0:
            ax.axvline(first - 0.5, color="0.3", linewidth=1.2)
        if i % 2:
            ax.axvspan(first - 0.5, last + 0.5, color="0.92", zorder=0)
    if top and spans:
        names = ax.secondary_xaxis("top")
        names.set_xticks(
            [(first + last) / 2 for _, first, last in spans],
            labels=[name for name, _, _ in spans],
        )
        names.tick_params(length=0, labelsize="small")


def _draw_baselines(ax: Axes, baselines: dict[str, Any], k: int) -> None:
    """One labelled horizontal line per baseline that has a finite value for objective k."""
    for i, (name, baseline) in enumerate(sorted(baselines.items())):
        values = floats((baseline or {}).get("fitness"))
        if k < len(values) and np.isfinite(values[k]):
            ax.axhline(values[k], color=f"C{i + 2}", linestyle=":", label=f"baseline: {name}")


def _scatter_pair(
    ax: Axes,
    points: np.ndarray,
    gens: np.ndarray,
    front: np.ndarray,
    pair: tuple[int, int],
) -> Any:
    """Scatter objective pair[0] (x) against pair[1] (y); returns the colour mappable."""
    i, j = pair
    scatter = None
    if len(points):
        vmax = max(float(gens.max()), 1.0)
        scatter = ax.scatter(
            points[:, i],
            points[:, j],
            c=gens,
            cmap="viridis",
            vmin=0,
            vmax=vmax,
            s=14,
            alpha=0.75,
            label="evaluated",
        )
    if len(front):
        ax.scatter(front[:, i], front[:, j], label="Pareto front", **FRONT_STYLE)
    ax.grid(alpha=0.3)
    return scatter


def _scatter_matrix(
    fig: Figure, points: np.ndarray, gens: np.ndarray, front: np.ndarray, run: RunData
) -> Any:
    """Pairwise scatters below and above the diagonal, histograms on it."""
    n_obj = len(run.objectives)
    axes = fig.subplots(n_obj, n_obj, squeeze=False)
    scatter = None
    for r in range(n_obj):
        for c in range(n_obj):
            ax = axes[r, c]
            if r == c:
                _histogram(ax, points, front, r)
            else:
                scatter = _scatter_pair(ax, points, gens, front, (c, r)) or scatter
            _label_outer(ax, r, c, n_obj, run.objective_labels)
    axes[0, 1].legend(fontsize="x-small", loc="best")
    return scatter


def _histogram(ax: Axes, points: np.ndarray, front: np.ndarray, k: int) -> None:
    values = points[:, k] if len(points) else front[:, k]
    ax.hist(values, bins=20, color="0.6")
    for value in front[:, k]:
        # short ticks along the bottom: where the front lies in this objective's range
        ax.axvline(value, ymax=0.08, color="crimson", linewidth=1)


def _label_outer(ax: Axes, r: int, c: int, n: int, labels: list[str]) -> None:
    """Axis labels only on the matrix's left column and bottom row, to stay readable."""
    ax.tick_params(labelsize="x-small")
    if r == n - 1:
        ax.set_xlabel(labels[c], fontsize="small")
    if c == 0:
        ax.set_ylabel("count" if r == 0 else labels[r], fontsize="small")


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=DPI, layout="constrained")
    FigureCanvasAgg(fig)  # attaches itself to fig: rendering stays Agg, whatever pyplot uses
    return fig


def _save(fig: Figure, path: Path) -> Path:
    """Write the PNG atomically, so a half-written file never replaces a good one."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    atomic_write_bytes(Path(path), buffer.getvalue())
    return Path(path)
