"""Progress display: a rich progress bar per generation and a live best/mean line on a
terminal; a plain line every few generations otherwise (CI logs stay readable)."""

from __future__ import annotations

import sys
from typing import Any, TextIO

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evotune.engine.loop import Callbacks


def format_record(record: dict[str, Any], names: list[str], generation: bool = True) -> str:
    """'gen   3  best ones=87  mean ones=80.2  hv 0.861  evals 240  1.2s'."""
    parts = [f"gen {record['generation']:>3}"] if generation else []
    if record["best"] is not None:
        parts.append("best " + " ".join(f"{n}={v:.4g}" for n, v in zip(names, record["best"])))
        parts.append("mean " + " ".join(f"{n}={v:.4g}" for n, v in zip(names, record["mean"])))
    if record.get("hypervolume") is not None:
        parts.append(f"hv {record['hypervolume']:.4g}")
    parts.append(f"evals {record['evaluations']}")
    parts.append(f"{record['seconds']:.2f}s")
    return "  ".join(parts)


class ConsoleProgress(Callbacks):
    """Live progress on a terminal, sparse plain lines elsewhere, nothing when quiet."""

    def __init__(
        self,
        objective_names: list[str],
        generations: int | None,
        quiet: bool = False,
        stream: TextIO | None = None,
    ) -> None:
        self.names = objective_names
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() and not quiet
        # Off a terminal, about 20 lines per run.
        self.every = max(1, (generations or 20) // 20)
        self.console = Console(file=self.stream)
        self.progress: Progress | None = None
        self.bar = None
        self.last_line = ""

    def generation_started(self, generation: int, size: int) -> None:
        if not self.interactive:
            return
        if self.progress is None:
            self.progress = Progress(
                TextColumn("[bold]{task.fields[generation]}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[line]}"),
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.bar = self.progress.add_task("search", total=size, generation="", line="")
        # reset() replaces all fields: pass the last generation's line on.
        label = f"gen {generation}" if generation >= 0 else "baselines"
        self.progress.reset(self.bar, total=size, generation=label, line=self.last_line)

    def evaluated(self, count: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.bar, count)

    def generation_finished(self, record: dict[str, Any]) -> None:
        if self.progress is not None:
            self.last_line = format_record(record, self.names, generation=False)
            self.progress.update(self.bar, line=self.last_line)
        elif not self.quiet and record["generation"] % self.every == 0:
            print(format_record(record, self.names), file=self.stream, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None
