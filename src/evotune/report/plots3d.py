"""A 3-D view of a three-objective run: every evaluated genome and the Pareto front."""

from __future__ import annotations

from pathlib import Path

from evotune.report.plots import _figure, _save, evaluated_points, pareto_points
from evotune.report.rundata import RunData


def plot_pareto_3d(run: RunData, path: Path) -> Path | None:
    """None unless the run has exactly three objectives and something to show."""
    if len(run.objectives) != 3:
        return None
    points, _ = evaluated_points(run)
    front = pareto_points(run)
    if len(points) == 0 and len(front) == 0:
        return None
    fig = _figure(6.4, 5.6)
    ax = fig.add_subplot(projection="3d")
    if len(points):
        ax.scatter(*points.T, s=8, color="0.6", alpha=0.5, label="evaluated")
    if len(front):
        ax.scatter(*front.T, s=36, color="crimson", depthshade=False, label="Pareto front")
    labels = run.objective_labels
    ax.set_xlabel(labels[0], fontsize="small")
    ax.set_ylabel(labels[1], fontsize="small")
    ax.set_zlabel(labels[2], fontsize="small")
    ax.tick_params(labelsize="x-small")
    ax.legend(fontsize="small", loc="upper left")
    ax.set_title(f"{run.summary['task']}: Pareto front in 3-D")
    return _save(fig, path)
