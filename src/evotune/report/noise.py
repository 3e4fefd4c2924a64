"""Selection signal: per generation, the spread of fitness across the population beside
the seed-to-seed noise of one genome (`fitness.repeats` > 1 measures it: each journal
line's `fitness_std`; with `repeat: elites`, the values of each elite confirmed that
generation). When the noise is as large as the spread, selection mostly picks the
luckiest seeds."""

from __future__ import annotations

import html
import math
from typing import Any

import numpy as np

from evotune.engine.replay import seed_spread
from evotune.report.rundata import RunData


def noise_rows(run: RunData) -> list[dict[str, Any]]:
    """One row per generation with measured noise: `spread` (std of the first objective
    across the generation's finite values), `noise` (mean `fitness_std`), `genomes`."""
    by_generation: dict[int, list[dict[str, Any]]] = {}
    for entry in run.journal:
        by_generation.setdefault(int(entry.get("generation", 0)), []).append(entry)
    confirmed = _confirmation_stds(run.journal)
    rows = []
    for generation, entries in sorted(by_generation.items()):
        asked = [e for e in entries if not e.get("confirms")]
        values = [v for v in map(_first, asked) if math.isfinite(v)]
        stds = [(e.get("metrics") or {}).get("fitness_std") for e in asked]
        stds = [float(s) for s in stds if isinstance(s, int | float) and math.isfinite(s)]
        stds += confirmed.get(generation, [])
        if stds and values:
            spread = float(np.std(values))
            rows.append(
                {"generation": generation, "spread": spread, "noise": float(np.mean(stds)),
                 "genomes": len(values)}
            )  # fmt: skip
    return rows


def noise_section(run: RunData) -> str:
    rows = noise_rows(run)
    if not rows:
        return ""
    cells = "\n".join(
        f'<tr><td class="num">{r["generation"]}</td><td class="num">{r["genomes"]}</td>'
        f'<td class="num">{r["spread"]:.4g}</td><td class="num">{r["noise"]:.4g}</td></tr>'
        for r in rows
    )
    note = (
        "Spread: standard deviation of the first objective across the generation's "
        "genomes. Noise: mean, over those genomes (with repeat: elites, the elites "
        "confirmed that generation), of the standard deviation across their repeat "
        "seeds (fitness.repeats). Selection has signal where the spread "
        "is clearly larger than the noise."
    )
    head = "<tr><th>generation</th><th>genomes</th><th>spread</th><th>seed noise</th></tr>"
    return (
        f"<h2>Selection signal</h2>\n<p>{html.escape(note)}</p>\n"
        f'<div class="table-wrap"><table>\n{head}\n{cells}\n</table></div>'
    )


def _confirmation_stds(journal: list[dict[str, Any]]) -> dict[int, list[float]]:
    """generation -> the std, across its values, of each genome confirmed there (its
    first evaluation, where at the full budget, and its confirmations)."""
    first: dict[str, dict[str, Any]] = {}
    confirms: dict[tuple[int, str], list[float]] = {}
    for e in journal:
        if e.get("cached") or "error" in e:
            continue
        if e.get("confirms"):
            confirms.setdefault((int(e["generation"]), e["hash"]), []).append(_first(e))
        else:
            first.setdefault(e["hash"], e)
    out: dict[int, list[float]] = {}
    for (generation, key), values in confirms.items():
        entry = first.get(key)
        if entry is not None and (entry.get("metrics") or {}).get("fidelity", 1.0) == 1.0:
            values = [_first(entry), *values]
        finite = [v for v in values if math.isfinite(v)]
        if len(finite) > 1:
            out.setdefault(generation, []).append(seed_spread(finite))
    return out


def _first(entry: dict[str, Any]) -> float:
    fitness = entry.get("fitness") or []
    try:
        return float(fitness[0]) if fitness else math.nan
    except (TypeError, ValueError):
        return math.nan
