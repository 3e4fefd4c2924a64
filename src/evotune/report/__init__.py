"""Turn a run directory into `report.html` + `plots/*.png`.

    from evotune.report import write_report
    write_report(Path("runs/demo"))  # -> runs/demo/report.html

Called by `evotune report RUN_DIR` and at the end of every run. Reads only the run
directory's files (see `rundata.py`), so it works on a copy of a run from another machine.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from evotune.report.genome_plots import plot_fitness_vs_params, plot_layer_map
from evotune.report.html import write_html
from evotune.report.mixed_plots import plot_gene_importance, plot_parallel
from evotune.report.plots import plot_fitness, plot_hypervolume, plot_pareto
from evotune.report.plots3d import plot_pareto_3d
from evotune.report.rundata import RunData, load_run

__all__ = ["RunData", "load_run", "write_report"]

# name -> plot function; the order is the order of the figures in report.html
PLOTS: dict[str, Callable[[RunData, Path], Path | None]] = {
    "fitness": plot_fitness,
    "hypervolume": plot_hypervolume,
    "pareto": plot_pareto,
    "pareto_3d": plot_pareto_3d,
    "layer_map": plot_layer_map,
    "fitness_vs_params": plot_fitness_vs_params,
    "parallel": plot_parallel,
    "gene_importance": plot_gene_importance,
}


def write_report(run_dir: Path | str) -> Path:
    """Write RUN_DIR/plots/*.png and RUN_DIR/report.html; returns the report's path.

    Raises `UserError` (naming the file) when summary.json or generations.jsonl is
    missing or malformed.
    """
    from evotune.report.comparison import is_comparison, write_comparison_report

    if is_comparison(Path(run_dir)):  # search.compare: one run per algorithm inside
        return write_comparison_report(Path(run_dir))
    run = load_run(run_dir)
    plots_dir = run.run_dir / "plots"
    plots_dir.mkdir(exist_ok=True)
    written = {}
    for name, plot in PLOTS.items():
        path = plots_dir / f"{name}.png"
        written[name] = plot(run, path)
        if written[name] is None:
            # a stale plot from an earlier report of this directory would contradict this one
            path.unlink(missing_ok=True)
    return write_html(run, written, run.run_dir / "report.html")
