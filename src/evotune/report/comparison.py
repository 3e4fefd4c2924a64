"""The report of a comparison directory (`search.compare`, see `compare.py`): the best
fitness each algorithm had reached against wall time and evaluations, a table, and
links to each algorithm's own report.

Time axis: each finished evaluation is placed when its chunk ended (consecutive journal
lines of one generation with the same `seconds` came from one chunk: a batch evaluated
at once, e.g. a whole successive-halving generation), after that generation's own
overhead (asking, telling: its recorded time minus the evaluations' time). No
evaluation is credited before it finished. Values measured at a lower fidelity
(successive halving's early rungs) take time and count as evaluations, but never as the
best: they are losses of networks trained less, not comparable with full-budget ones.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from evotune.engine.state import atomic_write_text
from evotune.report.html import CSS, fmt, format_seconds
from evotune.report.plots import _figure, _save
from evotune.report.rundata import RunData, floats, load_run


def is_comparison(run_dir: Path) -> bool:
    """Whether RUN_DIR holds a comparison (its summary.json has a `comparison`)."""
    path = Path(run_dir) / "summary.json"
    try:
        return "comparison" in json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False  # not one: the ordinary report names what is wrong


def best_curve(run: RunData) -> np.ndarray:
    """(n, 3) rows of (seconds, evaluations, best first-objective value so far), one
    per evaluation, in natural units."""
    sign = -1.0 if run.objectives[0]["direction"] == "max" else 1.0
    rows, clock, count, best = [], 0.0, 0, np.inf
    for gen in run.generations:
        entries = [e for e in run.journal if e.get("generation") == gen["generation"]]
        fresh = [e for e in entries if not e.get("cached")]
        spent = sum(float(e.get("seconds") or 0.0) for e in fresh)
        clock += max(0.0, float(gen.get("seconds") or 0.0) - spent)
        for chunk in _chunks(fresh):
            clock += sum(float(e.get("seconds") or 0.0) for e in chunk)
            for entry in chunk:
                count += 1
                value = sign * floats(entry.get("fitness"))[0]
                if np.isfinite(value) and _full_fidelity(entry):
                    best = min(best, value)
                rows.append((clock, count, sign * best))
    return np.array(rows, dtype=float).reshape(-1, 3)


def _full_fidelity(entry: dict[str, Any]) -> bool:
    return float((entry.get("metrics") or {}).get("fidelity", 1.0)) >= 1.0


def _chunks(entries: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    chunks: list[list[dict[str, Any]]] = []
    for entry in entries:
        if chunks and chunks[-1][-1].get("seconds") == entry.get("seconds"):
            chunks[-1].append(entry)
        else:
            chunks.append([entry])
    return chunks


LINESTYLES = ("-", "--", "-.", ":")
MARKERS = ("o", "s", "^", "D", "v", "P", "X")


def plot_comparison(runs: dict[str, RunData], path: Path) -> Path | None:
    """Best-so-far against wall time (left) and against evaluations (right)."""
    fig = comparison_figure(runs)
    return None if fig is None else _save(fig, path)


def comparison_figure(runs: dict[str, RunData]) -> Figure | None:
    """Algorithms on one space often reach the same values (the same seed draws the
    same first population), so their curves coincide: each gets its own colour, dash
    and end marker, and the ones drawn first are drawn wider, so a curve that another
    covers still shows at its edges."""
    curves = {name: best_curve(run) for name, run in runs.items()}
    curves = {n: c for n, c in curves.items() if len(c) and np.isfinite(c[:, 2]).any()}
    if not curves:
        return None
    first = next(iter(runs.values()))
    fig = _figure(10.0, 4.2)
    left, right = fig.subplots(1, 2, sharey=True)
    widest = 1.4 + 1.2 * (len(curves) - 1)
    for i, (name, curve) in enumerate(curves.items()):
        style = {
            "color": f"C{i % 10}",
            "linestyle": LINESTYLES[i % len(LINESTYLES)],
            "linewidth": max(1.0, widest - 1.2 * i),
            "alpha": 0.85,
            "label": name,
            "zorder": 2 + i,
        }
        end = {"marker": MARKERS[i % len(MARKERS)], "color": style["color"], "zorder": 2 + i}
        for ax, column in ((left, 0), (right, 1)):
            ax.step(curve[:, column], curve[:, 2], where="post", **style)
            ax.plot(curve[-1:, column], curve[-1:, 2], markersize=7, linestyle="none", **end)
    left.set_xlabel("wall time (s)")
    right.set_xlabel("evaluations")
    left.set_ylabel(f"best {first.objective_labels[0]}")
    for ax in (left, right):
        ax.grid(alpha=0.3)
    left.legend(fontsize="small")
    fig.suptitle(f"{first.summary['task']}: algorithms on the same space, budget and seed")
    return fig


def write_comparison_report(run_dir: Path) -> Path:
    """RUN_DIR/plots/comparison.png and RUN_DIR/report.html for a comparison directory."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text(encoding="utf-8"))
    runs = {
        name: load_run(run_dir / entry["dir"])
        for name, entry in summary["comparison"].items()
        if (run_dir / entry["dir"] / "summary.json").is_file()
    }
    (run_dir / "plots").mkdir(exist_ok=True)
    plot = plot_comparison(runs, run_dir / "plots" / "comparison.png")
    path = run_dir / "report.html"
    atomic_write_text(path, _html(summary, plot, run_dir))
    return path


def _html(summary: dict[str, Any], plot: Path | None, run_dir: Path) -> str:
    title = f"evotune comparison: {summary['task']}"
    label = f"{summary['objectives'][0]['name']} ({summary['objectives'][0]['direction']})"
    head = ["algorithm", f"best {label}", "test accuracy", "evaluations", "wall time", "report"]
    rows = []
    for name, entry in summary["comparison"].items():
        best = entry.get("best") or {}
        test = (best.get("metrics") or {}).get("test_accuracy", "")
        link = f'<a href="{html.escape(entry["dir"])}/report.html">{html.escape(name)}</a>'
        cells = [fmt(floats(best.get("fitness"))[0]) if best else "-", fmt(test)]
        cells += [fmt(entry.get("evaluations")), format_seconds(entry.get("wall_seconds"))]
        rows.append(f"<tr><td>{html.escape(name)}</td>" + _cells(cells) + f"<td>{link}</td></tr>")
    figure = (
        '<figure><img src="plots/comparison.png" alt="comparison plot"><figcaption>Best '
        "value reached so far, against wall time and evaluations; a marker ends each "
        "algorithm's curve (curves that coincide are drawn over one another, the first "
        "algorithm widest).</figcaption></figure>"
        if plot
        else ""
    )
    table = '<div class="table-wrap"><table><tr>'
    table += "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
    return (
        f'<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{html.escape(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        f'<h1>{html.escape(title)}</h1>\n<p class="sub">{html.escape(str(run_dir))}</p>\n'
        f"{table}{''.join(rows)}</table></div>\n{figure}\n</body>\n</html>\n"
    )


def _cells(values: list[str]) -> str:
    return "".join(f'<td class="num">{html.escape(str(v))}</td>' for v in values)
