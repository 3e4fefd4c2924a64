"""The journal: one JSON line per finished evaluation, appended, flushed and fsynced.

It is the run's memory: on resume, evaluations already in it are not recomputed, and
it rebuilds the fitness cache. A line cut short by a kill is dropped on resume.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from evotune.engine.state import atomic_write_text
from evotune.errors import UserError


class Journal:
    """Append-only JSON-lines file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._handle = None

    def append(self, entries: Iterable[dict[str, Any]]) -> None:
        """Write entries and make them durable before returning (one fsync per call)."""
        lines = "".join(json.dumps(entry, allow_nan=True) + "\n" for entry in entries)
        if not lines:
            return
        try:
            if self._handle is None:
                self._handle = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
            self._handle.write(lines)
            self._handle.flush()
            os.fsync(self._handle.fileno())
        except OSError as err:  # a torn last line is dropped on resume
            raise OSError(err.errno, err.strerror, str(self.path)) from err

    def close(self) -> None:
        if self._handle is not None:
            self._handle.close()
            self._handle = None


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """All complete lines; an unparseable last line (a kill mid-write) is skipped."""
    if not Path(path).exists():
        return []
    entries = []
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    for number, line in enumerate(lines, start=1):
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError:
            if number != len(lines):
                raise UserError(f"{path}: line {number} is not valid JSON") from None
    return entries


def rewrite_jsonl(path: Path, entries: Iterable[dict[str, Any]]) -> None:
    """Replace a JSON-lines file atomically (used on resume to drop partial lines)."""
    text = "".join(json.dumps(entry, allow_nan=True) + "\n" for entry in entries)
    atomic_write_text(path, text)
