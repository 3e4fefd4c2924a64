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

from evotune.engine.genome_store import is_reference
from evotune.engine.state import atomic_write_text
from evotune.report.noise import noise_section
from evotune.report.rundata import RunData, floats
from evotune.report.sections import render_sections

PARETO_ROWS = 50
BITS_SHOWN = 64
FLOATS_SHOWN = 8
PLOT_CAPTIONS = {
    "fitness": "Best and mean fitness per generation.",
    "hypervolume": "Hypervolume of the population's front per generation.",
    "pareto": "Every evaluated genome, coloured by generation; circled: the Pareto front.",
    "pareto_3d": "The three objectives in 3-D: grey, every evaluated genome; red, the front.",
    "layer_map": "Genes set to 1 (dark) in each generation's best genome.",
    "fitness_vs_params": "Each evaluated genome vs its trainable parameters.",
    "parallel": "Every evaluated genome across its genes, coloured by fitness (bright: better).",
    "gene_importance": "Share of the fitness-rank variance each gene explains on its own.",
}

# Numbers never break inside: a numeric cell does not wrap, and a table too wide for
# the page scrolls sideways in its wrapper instead of squeezing its columns (cells
# that may break anywhere, such as long bit strings, say so with class `wrap`).
CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 64em;
       padding: 0 1em; color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; } h2 { margin-top: 1.6em; }
.sub { color: #666; margin-top: 0; }
.table-wrap { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.6em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left;
         vertical-align: top; }
th { background: #f2f2f2; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.wrap { overflow-wrap: anywhere; min-width: 12em; }
code, pre { font-family: ui-monospace, monospace; font-size: 0.9em;
            overflow-wrap: break-word; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { color: #555; font-size: 0.9em; }
.note { color: #8a5a00; }
"""


def plot_caption(name: str, run: RunData) -> str:
    """The figure's caption, saying what this run's plot shows (by task, stages,
    baselines): a caption must not describe lines that are not drawn."""
    caption = PLOT_CAPTIONS.get(name, name)
    if name == "layer_map":
        from evotune.report.genome_plots import gene_meaning

        caption = f"{gene_meaning(run).capitalize()} (dark) of each generation's best genome."
    if name == "fitness":
        spans = run.stage_spans()
        if spans:
            names = ", ".join(stage for stage, _, _ in spans)
            caption += (
                f" One search per stage ({names}), each with its own fitness scale; "
                "vertical lines mark where a stage ends."
            )
        if run.baselines:
            caption += " Dotted lines: baselines."
    if name == "fitness_vs_params" and run.baselines:
        caption += " Stars: baselines."
    return caption


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
        _stages_section(run),
        _baselines_section(run),
        _plots_section(run, plots),
        noise_section(run),  # fitness spread vs seed-to-seed noise (fitness.repeats)
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
    notes = [f"warning: {text}" for text in s.get("warnings", [])]
    notes += [f"data: {text}" for text in s.get("data_notes", [])]
    if run.skipped_journal_lines:
        notes.append(
            f"{run.skipped_journal_lines} unreadable journal line(s) skipped (a run killed "
            "while writing leaves a truncated last line)."
        )
    shown = "".join(f'<p class="note">{_esc(text)}</p>' for text in notes)
    return "<h2>Summary</h2>\n" + _table(("", "value"), rows) + shown


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
    baselines = run.baselines
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


def _plots_section(run: RunData, plots: dict[str, Path]) -> str:
    figures = [
        f'<figure><img src="plots/{_esc(Path(p).name)}" alt="{_esc(name)} plot">'
        f"<figcaption>{_esc(plot_caption(name, run))}</figcaption></figure>"
        for name, p in plots.items()
        if p is not None
    ]
    return "<h2>Plots</h2>\n" + "\n".join(figures) if figures else ""


def _stages_section(run: RunData) -> str:
    """A staged run (task `weights`: one search per layer): each stage's result."""
    stages = run.summary.get("stages")
    if not isinstance(stages, dict) or not stages:
        return ""
    spans = {name: (first, last) for name, first, last in run.stage_spans()}
    metric_keys = sorted(
        {k for s in stages.values() for k in ((s or {}).get("best") or {}).get("metrics") or {}}
    )
    headers = ("stage", "generations", *run.objective_labels, *metric_keys)
    headers += ("evaluations", "stopped by", "wall time")
    rows = []
    for name, stage in stages.items():
        stage = stage or {}
        best = stage.get("best") or {}
        first, last = spans.get(name, (None, None))
        where = f"{first}–{last}" if first is not None else fmt(stage.get("generations", "?"))
        metrics = best.get("metrics") or {}
        rows.append(
            (
                name,
                where,
                *map(fmt, _pad(floats(best.get("fitness")), len(run.objectives))),
                *(fmt(metrics.get(k, "")) for k in metric_keys),
                fmt(stage.get("evaluations", "")),
                fmt(stage.get("stopped_by", "")),
                format_seconds(stage.get("wall_seconds")),
            )
        )
    note = (
        "<p>One search per stage, in order: a stage starts once the one before it is "
        "frozen, and its fitness is measured on its own layer.</p>"
    )
    return "<h2>Stages</h2>\n" + note + "\n" + _table(headers, rows)


def _pareto_section(run: RunData) -> str:
    front = [p for p in run.summary.get("pareto") or [] if isinstance(p, dict)]
    if len(run.objectives) < 2 or not front:
        return ""
    front = sort_by_first_objective(front, run.objectives[0]["direction"])
    shown = front[:PARETO_ROWS]
    # prune's other OOD scores (task.ood_scores): each member's AUROC by each, side by side
    scores = sorted({k for p in shown for k in p.get("metrics", {}) if k.startswith("auroc_")})
    headers = ("#", *run.objective_labels, *scores, "genome", "hash")
    rows = [
        (
            str(i),
            *map(fmt, _pad(floats(p.get("fitness")), len(run.objectives))),
            *(fmt(p.get("metrics", {}).get(k, "")) for k in scores),
            format_genome(p.get("genome")),
            str(p.get("hash", ""))[:12],
        )
        for i, p in enumerate(shown, start=1)
    ]
    caption = f"{len(front)} genomes, sorted by {run.objective_labels[0]}, best first"
    if len(front) > len(shown):
        caption += f"; showing the first {len(shown)} of {len(front)}"
    # a long bit string may break anywhere; a mapping's numbers (lr=0.0123) may not
    bits = all(_is_bits(p.get("genome")) for p in shown)
    table = _table(headers, rows, wrap=(1 + len(run.objectives) + len(scores),) if bits else ())
    return f"<h2>Pareto front</h2>\n<p>{_esc(caption)}.</p>\n" + table


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


def _is_bits(genome: Any) -> bool:
    return isinstance(genome, str) and bool(genome) and set(genome) <= {"0", "1"}


def format_genome(genome: Any) -> str:
    """A short, readable genome: bits shortened, mappings as k=v, long vectors summarised."""
    if _is_bits(genome):
        return _format_bits(genome)
    if is_reference(genome):  # a large genome, kept in a file (engine/genome_store.py)
        return f"{fmt(genome['genes'])} values, in {genome['file']}"
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


def _table(headers: Sequence[str], rows: Sequence[Sequence[str]], wrap: Sequence[int] = ()) -> str:
    """An escaped HTML table in a sideways-scrolling wrapper; cells that parse as
    numbers are right-aligned and never wrap; columns in `wrap` may break anywhere."""
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = "\n".join(
        "<tr>" + "".join(_cell(c, i in wrap) for i, c in enumerate(row)) + "</tr>" for row in rows
    )
    return f'<div class="table-wrap"><table>\n<tr>{head}</tr>\n{body}\n</table></div>'


def _cell(text: str, wrap: bool = False) -> str:
    if is_numeric(text):
        return f'<td class="num">{_esc(text)}</td>'
    return f'<td class="wrap">{_esc(text)}</td>' if wrap else f"<td>{_esc(text)}</td>"


def is_numeric(text: str) -> bool:
    """Whether a cell's text is one number ('0.883598', '1e-05', 'nan') or a range
    of two ('4–7')."""
    try:
        [float(part) for part in text.split("–", 1)]
    except ValueError:
        return False
    return True


def _esc(text: str) -> str:
    return html.escape(text, quote=True)
