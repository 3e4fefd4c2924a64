"""Task-written report sections: `analysis.json` in a run directory, if present.

A task that has more to say than the engine's files (the `prune` task's ensembles and
explanations, `evotune aggregate`'s runs) writes

    {"sections": [{"title": str, "text": str,
                   "table": {"headers": [str], "rows": [[value]]},
                   "images": [{"file": "plots/NAME.png", "caption": str}]}]}

and the report shows each section in order, every value escaped.
"""

from __future__ import annotations

import html
import json
from pathlib import Path
from typing import Any

from evotune.errors import UserError

FILE = "analysis.json"


def load_sections(run_dir: Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / FILE
    if not path.is_file():
        return []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise UserError(f"{path} is not valid JSON: {exc}") from None
    sections = data.get("sections") if isinstance(data, dict) else None
    if not isinstance(sections, list):
        raise UserError(f"{path}: expected {{'sections': [...]}}")
    return [s for s in sections if isinstance(s, dict)]


def render_sections(run_dir: Path) -> str:
    """The sections as HTML (empty when there is no analysis.json)."""
    return "\n".join(_section(s) for s in load_sections(run_dir))


def _section(section: dict[str, Any]) -> str:
    parts = [f"<h2>{_esc(section.get('title', ''))}</h2>"]
    if section.get("text"):
        parts.append(f"<p>{_esc(section['text'])}</p>")
    table = section.get("table") or {}
    if table.get("headers"):
        head = "".join(f"<th>{_esc(h)}</th>" for h in table["headers"])
        rows = "\n".join(
            "<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in table.get("rows", [])
        )
        parts.append(f'<div class="table-wrap"><table>\n<tr>{head}</tr>\n{rows}\n</table></div>')
    for image in section.get("images") or []:
        caption = image.get("caption", "")
        parts.append(
            f'<figure><img src="{_esc(image.get("file", ""))}" alt="{_esc(caption)}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def _cell(value: Any) -> str:
    """Numbers (and text that is one number) get the report's no-wrap numeric cell."""
    if isinstance(value, float):
        return f'<td class="num">{value:.4g}</td>'
    if isinstance(value, int) and not isinstance(value, bool):
        return f'<td class="num">{value}</td>'
    if isinstance(value, str) and _is_number(value):
        return f'<td class="num">{_esc(value)}</td>'
    return f"<td>{_esc(value)}</td>"


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)
