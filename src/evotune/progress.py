"""Progress display: a rich progress bar per generation and a live best/mean line on a
terminal; a plain line every few generations otherwise (CI logs stay readable).

Every line says where the run is: `gen 3/20` (of the generations the stop rules
allow), an ETA, and, in a run made of several searches, which one: the algorithm of a
`search.compare` run or the stage (layer) of a staged `weights` run. Those runs say
when each search starts through the hook `Callbacks.phase_started(label, index, count,
...)` (see `compare.py`, `staged.py`).
"""

from __future__ import annotations

import math
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from evotune.engine.loop import Callbacks

BAR = 24  # the progress bar's width on a terminal


def format_record(
    record: dict[str, Any], names: list[str], generation: bool = True, total: int | None = None
) -> str:
    """'gen   3/20  best ones=87  mean ones=80.2  hv 0.861  evals 240  1.2s'."""
    parts = [generation_label(record["generation"], total)] if generation else []
    if record["best"] is not None:
        parts.append("best " + " ".join(f"{n}={v:.4g}" for n, v in zip(names, record["best"])))
        parts.append("mean " + " ".join(f"{n}={v:.4g}" for n, v in zip(names, record["mean"])))
    if record.get("hypervolume") is not None:
        parts.append(f"hv {record['hypervolume']:.4g}")
    parts.append(f"evals {record['evaluations']}")
    parts.append(f"{record['seconds']:.2f}s")
    return "  ".join(parts)


def generation_label(
    generation: int, total: int | str | None = None, unit: str = "gen", width: int = 3
) -> str:
    """'gen   3/20' (generations counted from 0, as in generations.jsonl); `total` may
    be an estimate ('~5')."""
    if generation < 0:
        return "baselines"
    return f"{unit} {generation:>{width}}" + (f"/{total}" if total else "")


def format_eta(seconds: float | None) -> str:
    """'ETA 45s', 'ETA 12m05s', 'ETA 2h03m'; '' when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return ""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"ETA {seconds}s"
    minutes, secs = divmod(seconds, 60)
    if minutes < 60:
        return f"ETA {minutes}m{secs:02d}s"
    return f"ETA {minutes // 60}h{minutes % 60:02d}m"


@dataclass
class Phase:
    """One search of a run made of several (an algorithm of a comparison, a stage)."""

    label: str = ""  # "" for a run that is one search
    index: int = 0
    count: int = 1
    first_generation: int = 0  # callbacks number generations across stages
    first_evaluation: int = 0
    unit: str = "gen"  # "epoch": a stage trained by gradient, one record per epoch
    started: float = field(default_factory=time.monotonic)
    finished: int = 0  # generations finished in this process

    def prefix(self) -> str:
        return f"[{self.label} {self.index + 1}/{self.count}] " if self.label else ""


class ConsoleProgress(Callbacks):
    """Live progress on a terminal, sparse plain lines elsewhere, nothing when quiet."""

    def __init__(
        self,
        objective_names: list[str],
        generations: int | None,
        quiet: bool = False,
        stream: TextIO | None = None,
        max_evaluations: int | None = None,
        max_minutes: float | None = None,
    ) -> None:
        self.names = objective_names
        self.generations, self.max_evaluations = generations, max_evaluations
        self.max_seconds = None if max_minutes is None else 60.0 * max_minutes
        self.quiet = quiet
        self.stream = stream or sys.stderr
        self.interactive = self.stream.isatty() and not quiet
        # Off a terminal, about 20 lines per search.
        self.every = max(1, (generations or 20) // 20)
        self.console = Console(file=self.stream)
        self.progress: Progress | None = None
        self.bar = None
        self.last_line = self.last_eta = self.label = ""
        self.phase = Phase()
        self.size = 0  # genomes per generation, as last asked

    # ---- runs made of several searches ----------------------------------------------

    def phase_started(
        self,
        label: str,
        index: int,
        count: int,
        first_generation: int = 0,
        first_evaluation: int = 0,
        unit: str = "gen",
    ) -> None:
        """Search `index` of `count` begins (e.g. 'algorithm ga', 'stage layer1')."""
        self.phase = Phase(label, index, count, first_generation, first_evaluation, unit)
        self.last_line = self.last_eta = ""

    # ---- Callbacks ------------------------------------------------------------------

    def generation_started(self, generation: int, size: int) -> None:
        if generation >= 0:
            self.size = size
            if self.phase.finished == 0:  # the pace counts from here, not the setup
                self.phase.started = time.monotonic()
        if not self.interactive:
            return
        if self.progress is None:
            self.progress = Progress(
                *(TextColumn("[bold]{task.fields[generation]}"), BarColumn(bar_width=BAR)),
                *(MofNCompleteColumn(), TimeElapsedColumn(), TextColumn("{task.fields[eta]}")),
                TextColumn("{task.fields[line]}"),  # cut to fit: see _fit
                console=self.console,
                transient=False,
            )
            self.progress.start()
            self.bar = self.progress.add_task("search", total=size, generation="", eta="", line="")
        # reset() replaces all fields: pass the last generation's line and ETA on.
        self.label = self.phase.prefix() + self._where(generation, width=0)
        self.progress.reset(
            self.bar,
            total=size,
            generation=escape(self.label),
            eta=self.last_eta,
            line=escape(self._fit(self.last_line, size)),
        )

    def evaluated(self, count: int) -> None:
        if self.progress is not None:
            self.progress.advance(self.bar, count)

    def generation_finished(self, record: dict[str, Any]) -> None:
        self.phase.finished += 1
        local = record["generation"] - self.phase.first_generation
        eta = format_eta(self.eta(record))
        if self.progress is not None:
            self.last_line = format_record(record, self.names, generation=False)
            self.last_eta = eta
            line = self._fit(self.last_line, self.size)
            self.progress.update(self.bar, eta=eta, line=escape(line))
        elif not self.quiet and local % self.every == 0:
            line = format_record({**record, "generation": local}, self.names, generation=False)
            where = self.phase.prefix() + self._where(record["generation"])
            text = "  ".join(p for p in (where, line, eta) if p)
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def _fit(self, line: str, size: int) -> str:
        """The line cut to the terminal's width left by the other columns (a line
        that wrapped would squeeze the bar and the ETA instead)."""
        used = len(self.label) + BAR + 2 * len(str(size)) + 1 + 7 + len(self.last_eta) + 7
        room = max(10, self.console.width - used)
        return line if len(line) <= room else line[: room - 1] + "…"

    # ---- where the run is, and how long it has left --------------------------------

    def _where(self, generation: int, width: int = 3) -> str:
        local = generation - self.phase.first_generation if generation >= 0 else -1
        return generation_label(local, self._total(), self.phase.unit, width)

    def _total(self) -> int | str | None:
        """Generations of this search: as configured, or about as many as the
        evaluation budget allows (more when genomes repeat: repeats are free)."""
        if self.phase.unit != "gen":
            return None  # a gradient-trained stage's epochs: the task knows how many
        if self.generations is None and self.max_evaluations is not None and self.size:
            return f"~{math.ceil(self.max_evaluations / self.size)}"
        return self.generations

    def eta(self, record: dict[str, Any]) -> float | None:
        """Seconds left, from this search's pace so far: its own remaining generations
        (the first stop rule to hold: generations, evaluations or minutes), plus, in a
        run of several searches, as long again for each search still to come."""
        phase = self.phase
        if phase.unit != "gen" or phase.finished == 0 or record["generation"] < 0:
            return None
        elapsed = time.monotonic() - phase.started
        per_generation = elapsed / phase.finished
        left = self._generations_left(record)
        if left is None:
            return None
        remaining = left * per_generation
        if self.max_seconds is not None:
            remaining = min(remaining, max(0.0, self.max_seconds - elapsed))
        later = phase.count - phase.index - 1
        return remaining + later * (elapsed + remaining)

    def _generations_left(self, record: dict[str, Any]) -> float | None:
        local = record["generation"] - self.phase.first_generation
        options = []
        if self.generations is not None:
            options.append(self.generations - (local + 1))
        if self.max_evaluations is not None and self.size:
            done = record.get("evaluations", 0) - self.phase.first_evaluation
            options.append(math.ceil(max(0, self.max_evaluations - done) / self.size))
        if not options and self.max_seconds is not None:
            return math.inf  # only the clock stops it: min() above gives the time left
        return max(0, min(options)) if options else None
