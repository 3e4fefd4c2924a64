"""Read a run directory (config.yaml, journal.jsonl, generations.jsonl, summary.json).

The report only reads what `engine/loop.py` writes; it never needs the search state.
`summary.json` and `generations.jsonl` are required (without them there is nothing to
report). The journal and config are optional extras: a run killed mid-write leaves a
truncated last journal line, which is skipped rather than failing the whole report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from evotune.errors import UserError

DIRECTIONS = ("max", "min")


@dataclass(frozen=True)
class RunData:
    """Everything the report needs from one run directory, parsed but not interpreted."""

    run_dir: Path
    summary: dict[str, Any]
    generations: list[dict[str, Any]]
    journal: list[dict[str, Any]]
    config: dict[str, Any] = field(default_factory=dict)
    skipped_journal_lines: int = 0

    @property
    def objectives(self) -> list[dict[str, str]]:
        return self.summary["objectives"]

    @property
    def objective_labels(self) -> list[str]:
        """'accuracy (max)' per objective: the name alone hides which way is better."""
        return [f"{o['name']} ({o['direction']})" for o in self.objectives]

    @property
    def baselines(self) -> dict[str, dict[str, Any]]:
        """summary.json's baselines that exist (a staged or toy run has none)."""
        found = self.summary.get("baselines") or {}
        return {k: v for k, v in found.items() if isinstance(v, dict)}

    def stage_spans(self) -> list[tuple[str, int, int]]:
        """(stage, first generation, last generation), in order, of a staged run (task
        `weights`: one search per layer, generations numbered across stages); [] when
        generations.jsonl has no `stage` key."""
        spans: list[tuple[str, int, int]] = []
        for row in self.generations:
            stage = row.get("stage")
            if stage is None:
                continue
            if spans and spans[-1][0] == stage:
                spans[-1] = (stage, spans[-1][1], row["generation"])
            else:
                spans.append((str(stage), row["generation"], row["generation"]))
        return spans

    def gene_names(self, n_genes: int) -> list[str] | None:
        """The genome's gene names (summary.json `genes`, written by tasks whose genes
        have names, e.g. the layers of task `layers`), when there is one per gene."""
        names = self.summary.get("genes")
        if isinstance(names, list) and len(names) == n_genes:
            return [str(n) for n in names]
        return None


def load_run(run_dir: Path | str) -> RunData:
    """Parse a run directory; `UserError` naming the file when a required one is bad."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory: expected an evotune run directory")
    summary = _read_summary(run_dir / "summary.json")
    journal, skipped = _read_journal(run_dir / "journal.jsonl")
    return RunData(
        run_dir=run_dir,
        summary=summary,
        generations=_read_generations(run_dir / "generations.jsonl"),
        journal=journal,
        config=_read_config(run_dir / "config.yaml"),
        skipped_journal_lines=skipped,
    )


def floats(values: Any) -> list[float]:
    """A fitness row as floats; null or non-numeric entries (failed evaluations) -> NaN."""
    if not isinstance(values, list | tuple):
        values = [values]
    return [_to_float(v) for v in values]


def _to_float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return math.nan
    return float(value)


def _missing(path: Path) -> UserError:
    return UserError(
        f"{path} not found: is this an evotune run directory? `evotune run` writes "
        f"{path.name} there (a run interrupted before it finished can be completed "
        "with `evotune resume RUN_DIR`)"
    )


def _read_summary(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise _missing(path)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    if not isinstance(summary, dict):
        raise UserError(f"{path}: expected a JSON object, got {type(summary).__name__}")
    _check_objectives(path, summary.get("objectives"))
    summary.setdefault("task", "?")
    return summary


def _check_objectives(path: Path, objectives: Any) -> None:
    if not isinstance(objectives, list) or not objectives:
        raise UserError(
            f"{path}: 'objectives' must be a non-empty list of "
            f"{{'name': str, 'direction': 'max'|'min'}}, got {objectives!r:.120}"
        )
    for i, obj in enumerate(objectives):
        ok = isinstance(obj, dict) and isinstance(obj.get("name"), str)
        if not ok or obj.get("direction") not in DIRECTIONS:
            raise UserError(
                f"{path}: objectives[{i}] must be {{'name': str, 'direction': 'max'|'min'}}, "
                f"got {obj!r:.120}"
            )


def _read_generations(path: Path) -> list[dict[str, Any]]:
    if not path.is_file():
        raise _missing(path)
    lines = _lines(path)
    rows = []
    for number, line in enumerate(lines, start=1):
        row = _parse_line(line)
        if row is None and number == len(lines):
            break  # the run was killed while writing this line: same as the journal
        if row is None or not isinstance(row.get("generation"), int):
            raise UserError(
                f"{path}, line {number}: expected a JSON object with an integer "
                f"'generation', got {line!r:.120}"
            )
        rows.append(row)
    return rows


def _read_journal(path: Path) -> tuple[list[dict[str, Any]], int]:
    """(parsed entries, number of lines skipped). Missing journal: no entries."""
    if not path.is_file():
        return [], 0
    rows = [_parse_line(line) for line in _lines(path)]
    good = [r for r in rows if r is not None and "fitness" in r]
    return good, len(rows) - len(good)


def _read_config(path: Path) -> dict[str, Any]:
    """The resolved config, shown in the report; a broken one is an error, not ignored."""
    if not path.is_file():
        return {}
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid YAML: {exc}") from None
    if config is None:
        return {}
    if not isinstance(config, dict):
        raise UserError(f"{path}: expected a YAML mapping, got {type(config).__name__}")
    return config


def _lines(path: Path) -> list[str]:
    # errors="replace": a half-written multi-byte character must not stop the read
    text = path.read_text(encoding="utf-8", errors="replace")
    return [line for line in text.splitlines() if line.strip()]


def _parse_line(line: str) -> dict[str, Any] | None:
    """One JSON object, or None when the line is not one (truncated or foreign)."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError:
        return None
    return row if isinstance(row, dict) else None
