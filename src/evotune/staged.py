"""Staged runs: a task that is several searches (or trainings) in sequence.

Task `weights` trains an autoencoder layer by layer: one GA per layer, each layer
frozen before the next is searched. Every stage is a complete engine run in
`RUN_DIR/stages/NAME/` (journal.jsonl, generations.jsonl, state/checkpoint.npz,
genomes/, summary.json), so the engine's guarantees (journal, fitness cache, exact
resume) hold per stage, unchanged. A stage the task trains itself (a gradient
baseline) writes its generations.jsonl (one line per epoch), result.npy and summary.json.

The run directory itself gets what a reader of any run expects: `journal.jsonl` and
`generations.jsonl` (the stages' lines with a `stage` key, generations numbered across
stages) and `summary.json` (the task's result, with a `stages` entry per stage).

Resume runs the stages again in order: a finished stage stops at once with the same
best genome, the interrupted one resumes exactly, and a stage whose input changed (an
earlier stage was extended with `--set search.generations=N`) starts afresh. Stop
rules (`search.generations`, ...) apply to each stage.
"""

from __future__ import annotations

import io
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from evotune.engine.genome_store import is_reference, load_genome
from evotune.engine.journal import read_jsonl, rewrite_jsonl
from evotune.engine.loop import Callbacks, SearchLoop
from evotune.engine.spaces import Space
from evotune.engine.state import atomic_write_bytes, atomic_write_json
from evotune.errors import RunError, UserError

STAGES = "stages"
LoopFactory = Callable[[Path, Callbacks, str], SearchLoop]
Log = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class RunStage:
    """One stage of a staged run, as the task enters it (not a backbone's stage)."""

    key: str  # what the stage depends on (e.g. a hash of the frozen layers)
    search: bool  # True: an engine search over task.space; False: task.train_stage


class StagedTask(Protocol):
    space: Space

    def stage_names(self) -> list[str]: ...

    def enter_stage(self, name: str) -> RunStage:
        """Prepare the task for stage `name` (its space, its inputs)."""
        ...

    def train_stage(self, log: Log) -> np.ndarray:
        """A stage without search: train and return its result; `log(record)` per epoch."""
        ...

    def finish_stage(self, name: str, result: np.ndarray) -> None:
        """Take the stage's result (its best genome) before the next stage."""
        ...

    def final_summary(self, run_dir: Path) -> dict[str, Any]:
        """Keys of summary.json the task decides (`best`, `algorithm`, ...)."""
        ...


def is_staged(task: Any) -> bool:
    return all(hasattr(task, m) for m in ("stage_names", "enter_stage", "final_summary"))


def holds_stages(run_dir: Path) -> bool:
    return (Path(run_dir) / STAGES).exists()


def run_staged(
    task: StagedTask,
    run_dir: Path,
    make_loop: LoopFactory,
    config: dict[str, Any],
    callbacks: Callbacks | None = None,
) -> dict[str, Any]:
    """Run (or resume) every stage of `task` in `run_dir`; returns the summary.
    `config`: the comparable config, which a resumed stage must match."""
    callbacks = callbacks or Callbacks()
    offset = _Offset(callbacks)
    done: dict[str, dict[str, Any]] = {}
    names = task.stage_names()
    for i, name in enumerate(names):
        spec = task.enter_stage(name)
        if callbacks is not None:  # progress lines name the stage
            where = {"first_generation": offset.generations, "first_evaluation": offset.evaluations}
            unit = "gen" if spec.search else "epoch"
            callbacks.phase_started(f"stage {name}", i, len(names), unit=unit, **where)
        stage_dir = Path(run_dir) / STAGES / name
        _claim(stage_dir, spec.key, config)
        if spec.search:
            summary, result = _search(task, stage_dir, make_loop(stage_dir, offset, name))
        else:
            summary, result = _train(task, stage_dir, offset)
        task.finish_stage(name, result)
        done[name] = summary
        offset.advance(summary)
        merge_stage_files(run_dir, list(done))
    summary = _summary(task, run_dir, done)
    atomic_write_json(Path(run_dir) / "summary.json", summary)
    return summary


def _claim(stage_dir: Path, key: str, config: dict[str, Any]) -> None:
    """Start the stage afresh when its input changed; refuse a changed config."""
    marker = stage_dir / "input.json"
    if marker.is_file():
        saved = json.loads(marker.read_text(encoding="utf-8"))
        if saved.get("config") != config:
            raise UserError(
                f"{stage_dir}: the run's config no longer matches this stage's; "
                "restore config.yaml or start a new run"
            )
        if saved.get("key") == key:
            return
        shutil.rmtree(stage_dir)  # an earlier stage changed: this one's work is void
    atomic_write_json(marker, {"key": key, "config": config})


def _search(
    task: StagedTask, stage_dir: Path, loop: SearchLoop
) -> tuple[dict[str, Any], np.ndarray]:
    if (stage_dir / "journal.jsonl").exists():
        loop.resume()
    summary = loop.run()
    if summary["best"] is None:
        raise RunError(f"{stage_dir}: no evaluation succeeded; see its journal.jsonl")
    return summary, load_genome(task.space, summary["best"]["genome"], stage_dir)


def _train(
    task: StagedTask, stage_dir: Path, callbacks: Callbacks
) -> tuple[dict[str, Any], np.ndarray]:
    """A stage the task trains itself; a finished one is read back, an interrupted one
    trained again from the start (it is seeded: same result)."""
    summary_path, result_path = stage_dir / "summary.json", stage_dir / "result.npy"
    if summary_path.is_file() and result_path.is_file():
        return json.loads(summary_path.read_text()), np.load(result_path, allow_pickle=False)
    began = time.monotonic()
    records: list[dict[str, Any]] = []

    def log(record: dict[str, Any]) -> None:
        records.append(record)
        callbacks.generation_finished(record)

    result = task.train_stage(log)
    rewrite_jsonl(stage_dir / "generations.jsonl", records)
    buffer = io.BytesIO()
    np.save(buffer, result, allow_pickle=False)
    atomic_write_bytes(result_path, buffer.getvalue())
    last = records[-1] if records else {"best": None}
    summary = {
        "best": {"fitness": last["best"], "metrics": last.get("metrics", {})},
        "evaluations": 0,
        "generations": len(records),
        "wall_seconds": round(time.monotonic() - began, 3),
        "stopped_by": "epochs",
    }
    atomic_write_json(summary_path, summary)
    return summary, result


class _Offset(Callbacks):
    """Passes progress on with generations (and evaluations) counted across stages."""

    def __init__(self, inner: Callbacks) -> None:
        self.inner, self.generations, self.evaluations = inner, 0, 0

    def advance(self, summary: dict[str, Any]) -> None:
        self.generations += summary["generations"]
        self.evaluations += summary["evaluations"]

    def generation_started(self, generation: int, size: int) -> None:
        self.inner.generation_started(generation + self.generations, size)

    def evaluated(self, count: int) -> None:
        self.inner.evaluated(count)

    def generation_finished(self, record: dict[str, Any]) -> None:
        self.inner.generation_finished(self._shift(record))

    def _shift(self, record: dict[str, Any]) -> dict[str, Any]:
        return {
            **record,
            "generation": record["generation"] + self.generations,
            "evaluations": record.get("evaluations", 0) + self.evaluations,
        }


def merge_stage_files(run_dir: Path, names: list[str]) -> None:
    """Write RUN_DIR/journal.jsonl and generations.jsonl from the stages' own files."""
    journal, generations = [], []
    generation_offset = evaluation_offset = 0
    for name in names:
        stage_dir = Path(run_dir) / STAGES / name
        for entry in read_jsonl(stage_dir / "journal.jsonl"):
            genome = entry["genome"]
            if is_reference(genome):  # genome files stay in the stage's folder
                genome = {**genome, "file": f"{STAGES}/{name}/{genome['file']}"}
            journal.append(
                {
                    **entry,
                    "stage": name,
                    "generation": entry["generation"] + generation_offset,
                    "genome": genome,
                }
            )
        records = read_jsonl(stage_dir / "generations.jsonl")
        for record in records:
            generations.append(
                {
                    **record,
                    "stage": name,
                    "generation": record["generation"] + generation_offset,
                    "evaluations": record.get("evaluations", 0) + evaluation_offset,
                }
            )
        generation_offset += len(records)
        evaluation_offset = generations[-1]["evaluations"] if generations else 0
    rewrite_jsonl(Path(run_dir) / "journal.jsonl", journal)
    rewrite_jsonl(Path(run_dir) / "generations.jsonl", generations)


def _summary(task: StagedTask, run_dir: Path, done: dict[str, dict[str, Any]]) -> dict[str, Any]:
    stages = {
        name: {
            "best": {k: s["best"].get(k) for k in ("hash", "fitness", "metrics")},
            "generations": s["generations"],
            "evaluations": s["evaluations"],
            "wall_seconds": s["wall_seconds"],
            "stopped_by": s["stopped_by"],
        }
        for name, s in done.items()
    }
    last = list(done.values())[-1]
    summary = {
        "task": None,
        "algorithm": last.get("algorithm"),
        "seed": last.get("seed"),
        "objectives": last.get("objectives"),
        "best": None,
        "pareto": [],
        "evaluations": sum(s["evaluations"] for s in done.values()),
        "generations": sum(s["generations"] for s in done.values()),
        "wall_seconds": round(sum(s["wall_seconds"] for s in done.values()), 3),
        "stopped_by": last["stopped_by"],
        "baselines": {},
    }
    summary.update(task.final_summary(Path(run_dir)))
    summary["stages"] = stages
    return summary
