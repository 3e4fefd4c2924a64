"""report.html: one page, inline CSS, no JavaScript, images as relative `plots/NAME.png`.

Every piece of run data goes through `html.escape`: task names, metric keys and genome
mappings come from user configs and must not be able to inject markup.
"""

from __future__ import annotations

import html
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from evotune.engine.state import atomic_write_text
from evotune.report.rundata import RunData, floats
from evotune.report.sections import render_sections

PARETO_ROWS = 50
BITS_SHOWN = 64
FLOATS_SHOWN = 8
PLOT_CAPTIONS = {
    "fitness": "Best and mean fitness per generation (dotted lines: baselines).",
    "hypervolume": "Hypervolume of the population's front per generation.",
    "pareto": "Every evaluated genome, coloured by generation; circled: the Pareto front.",
    "pareto_3d": "The three objectives in 3-D: grey, every evaluated genome; red, the front.",
    "layer_map": "Trainable genes (dark) of each generation's best genome.",
    "fitness_vs_params": "Each evaluated genome vs its trainable parameters; stars: baselines.",
    "parallel": "Every evaluated genome across its genes, coloured by fitness (bright: better).",
    "gene_importance": "Share of the fitness-rank variance each gene explains on its own.",
}

CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 64em;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; overflow-wrap: anywhere; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
code, pre { font-family: ui-monospace, monospace; font-size: 0.9em;
            overflow-wrap: anywhere; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
.note { color: #8a5a00; }
"""


def write_html(run: RunData, plots: dict[str, Path], path: Path) -> Path:
    """Render the page and write it atomically (temp file in the same dir, os.replace)."""
    atomic_write_text(Path(path), render_html(run, plots))
    return Path(path)


def render_html(run: RunData, plots: dict[str, Path]) -> str:
    """The whole page as a string; `plots` maps plot name -> written PNG path."""
    s = run.summary
    title = f"evotune report: {s['task']} ({s.get('algorithm', '?')})"
    body = [
        f"<h1>{_esc(title)}</h1>",
        f'<p class="sub">{_esc(str(run.run_dir))}</p>',
        _summary_section(run),
        _best_section(run),
        _baselines_section(run),
        _plots_section(plots),
        _pareto_section(run),
        render_sections(run.run_dir),  # analysis.json: task-written sections
        _config_section(run),
    ]
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f"<title>{_esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
        + "\n".join(part for part in body if part)
        + "\n</body>\n</html>\n"
    )


def _summary_section(run: RunData) -> str:
    s = run.summary
    cached = sum(1 for e in run.journal if e.get("cached"))
    rows = [
        ("objectives", ", ".join(run.objective_labels)),
        ("evaluations", fmt(s.get("evaluations", "?"))),
        ("generations", fmt(s.get("generations", len(run.generations)))),
        ("wall time", format_seconds(s.get("wall_seconds"))),
        ("stopped by", fmt(s.get("stopped_by", "?"))),
        ("seed", fmt(s.get("seed", "?"))),
        ("journal entries", f"{len(run.journal)} ({cached} cached)"),
    ]
    note = ""
    if run.skipped_journal_lines:
        note = (
            f'<p class="note">{run.skipped_journal_lines} unreadable journal line(s) '
            "skipped (a run killed while writing leaves a truncated last line).</p>"
        )
    return "<h2>Summary</h2>\n" + _table(("", "value"), rows) + note


def _best_section(run: RunData) -> str:
    best = run.summary.get("best")
    if not isinstance(best, dict):
        return "<h2>Best genome</h2>\n<p>No best genome recorded.</p>"
    values = _pad(floats(best.get("fitness")), len(run.objectives))
    rows = [(label, fmt(v)) for label, v in zip(run.objective_labels, values, strict=True)]
    parts = ["<h2>Best genome</h2>", _table(("objective", "fitness"), rows)]
    metrics = best.get("metrics") or {}
    if metrics:
        parts.append(_table(("metric", "value"), [(k, fmt(v)) for k, v in metrics.items()]))
    parts.append(f"<p>genome: <code>{_esc(format_genome(best.get('genome')))}</code></p>")
    if best.get("hash"):
        parts.append(f"<p>hash: <code>{_esc(str(best['hash']))}</code></p>")
    return "\n".join(parts)


def _baselines_section(run: RunData) -> str:
    baselines = run.summary.get("baselines") or {}
    if not baselines:
        return ""
    metric_keys = sorted({k for b in baselines.values() for k in (b or {}).get("metrics") or {}})
    headers = ("baseline", *run.objective_labels, *metric_keys)
    rows = []
    for name, baseline in sorted(baselines.items()):
        baseline = baseline or {}
        values = _pad(floats(baseline.get("fitness")), len(run.objectives))
        metrics = baseline.get("metrics") or {}
        rows.append((name, *map(fmt, values), *(fmt(metrics.get(k, "")) for k in metric_keys)))
    return "<h2>Baselines</h2>\n" + _table(headers, rows)


def _plots_section(plots: dict[str, Path]) -> str:
    figures = [
        f'<figure><img src="plots/{_esc(Path(p).name)}" alt="{_esc(name)} plot">'
        f"<figcaption>{_esc(PLOT_CAPTIONS.get(name, name))}</figcaption></figure>"
        for name, p in plots.items()
        if p is not None
    ]
    return "<h2>Plots</h2>\n" + "\n".join(figures) if figures else ""


def _pareto_section(run: RunData) -> str:
    front = [p for p in run.summary.get("pareto") or [] if isinstance(p, dict)]
    if len(run.objectives) < 2 or not front:
        return ""
    front = sort_by_first_objective(front, run.objectives[0]["direction"])
    shown = front[:PARETO_ROWS]
    headers = ("#", *run.objective_labels, "genome", "hash")
    rows = [
        (
            str(i),
            *map(fmt, _pad(floats(p.get("fitness")), len(run.objectives))),
            format_genome(p.get("genome")),
            str(p.get("hash", ""))[:12],
        )
        for i, p in enumerate(shown, start=1)
    ]
    caption = f"{len(front)} genomes, sorted by {run.objective_labels[0]}, best first"
    if len(front) > len(shown):
        caption += f"; showing the first {len(shown)} of {len(front)}"
    return f"<h2>Pareto front</h2>\n<p>{_esc(caption)}.</p>\n" + _table(headers, rows)


def _config_section(run: RunData) -> str:
    if not run.config:
        return ""
    text = yaml.safe_dump(run.config, sort_keys=False, default_flow_style=False)
    return (
        "<h2>Configuration</h2>\n<details><summary>config.yaml (resolved)</summary>"
        f"<pre>{_esc(text)}</pre></details>"
    )


def sort_by_first_objective(front: list[dict[str, Any]], direction: str) -> list[dict]:
    """Best first in the first objective; non-finite values go last either way."""

    def key(point: dict[str, Any]) -> tuple[bool, float]:
        value = (floats(point.get("fitness")) or [math.nan])[0]
        if not math.isfinite(value):
            return (True, 0.0)
        return (False, -value if direction == "max" else value)

    return sorted(front, key=key)


def format_genome(genome: Any) -> str:
    """A short, readable genome: bits shortened, mappings as k=v, long vectors summarised."""
    if isinstance(genome, str) and genome and set(genome) <= {"0", "1"}:
        return _format_bits(genome)
    if isinstance(genome, dict):
        return ", ".join(f"{k}={fmt(v, digits=4)}" for k, v in genome.items())
    if isinstance(genome, list) and all(_is_number(v) for v in genome):
        return _format_vector([float(v) for v in genome])
    text = json.dumps(genome, default=str)
    return text if len(text) <= 120 else text[:120] + "…"


def _format_bits(bits: str) -> str:
    shown = bits if len(bits) <= BITS_SHOWN else bits[:BITS_SHOWN] + "…"
    return f"{shown} ({bits.count('1')} ones of {len(bits)})"


def _format_vector(values: list[float]) -> str:
    if len(values) <= FLOATS_SHOWN:
        return "[" + ", ".join(fmt(v, digits=4) for v in values) + "]"
    finite = [v for v in values if math.isfinite(v)]
    text = f"{len(values)} floats"
    if finite:
        mean = math.fsum(finite) / len(finite)
        text += f": mean={fmt(mean, 4)} min={fmt(min(finite), 4)} max={fmt(max(finite), 4)}"
    if len(finite) < len(values):
        text += f" ({len(values) - len(finite)} non-finite)"
    return text


def format_seconds(seconds: Any) -> str:
    """'754.2 s (12m 34s)': raw seconds for tools, h/m/s for people."""
    if not _is_number(seconds) or not math.isfinite(seconds):
        return "?"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    hms = f"{hours}h {minutes:02d}m {secs:02d}s" if hours else f"{minutes}m {secs:02d}s"
    return f"{seconds:.1f} s ({hms})"


def fmt(value: Any, digits: int = 6) -> str:
    """Numbers to short text (nan/inf spelled out); anything else via str."""
    if _is_number(value) and not isinstance(value, int):
        return f"{value:.{digits}g}"
    return str(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _pad(values: list[float], n: int) -> list[float]:
    """Exactly n values: a short fitness row (malformed entry) shows NaN, not a shifted row."""
    return (values + [math.nan] * n)[:n]


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An escaped HTML table; cells that parse as numbers are right-aligned."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "\n".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table>\n<tr>{head}</tr>\n{body}\n</table>"


def _cell(text: str) -> str:
    try:
        float(text)
    except ValueError:
        return f"<td>{_esc(text)}</td>"
    return f'<td class="num">{_esc(text)}</td>'


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
