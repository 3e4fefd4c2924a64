"""Wires a validated config into a run: task + algorithm + executor + loop + report."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from evotune.baselines import BaselineRunner, has_baselines
from evotune.compare import compare
from evotune.config import (
    REGISTRIES,
    ExecutorConfig,
    RunConfig,
    SearchConfig,
    apply_overrides,
    load_yaml,
    resolve,
)
from evotune.engine import ALGORITHMS
from evotune.engine.algorithm import Algorithm, AlgorithmSetup, Refine, handles_many_objectives
from evotune.engine.loop import Callbacks, Executor, SearchLoop, StopRules
from evotune.engine.operators.base import mating_for
from evotune.engine.problem import is_whole_generation
from evotune.engine.spaces import Space
from evotune.engine.state import atomic_write_json, atomic_write_text
from evotune.errors import UserError
from evotune.executors import LocalExecutor
from evotune.rundir import check_out_dir, clear_run_dir, run_lock
from evotune.staged import is_staged, run_staged
from evotune.tasks import Task
from evotune.tasks.base import build_task

# Keys a resumed run may change: where to stop, and where evaluations run (results do not
# depend on the executor). Everything else must match the checkpoint.
STOP_KEYS = ("generations", "max_evaluations", "max_minutes", "target")


def build_algorithm(
    search: SearchConfig,
    space: Space,
    n_objectives: int,
    rng: np.random.Generator,
    refine: Refine | None = None,
) -> Algorithm:
    """The configured algorithm (found in `ALGORITHMS`), with its operators and mating
    bound (and, for the GA, the task's Lamarckian `refine` of the elites, if any)."""
    name = search.algorithm or ("ga" if n_objectives == 1 else "nsga2")
    entry = ALGORITHMS.get(name, "search.algorithm")
    if n_objectives > 1 and not handles_many_objectives(name):
        many = [n for n in ALGORITHMS.names() if handles_many_objectives(n)]
        raise UserError(
            f"search.algorithm: {name!r} optimises one objective but this task has "
            f"{n_objectives}; use one of {', '.join(many)}"
        )
    operators = search.operators  # resolved: each a mapping with its name
    setup = AlgorithmSetup(
        space,
        rng,
        search.population,
        **{
            family: registry.build(getattr(operators, family), f"search.operators.{family}")
            for family, registry in REGISTRIES.items()
        },
        mating=mating_for(operators.selection["name"], operators.crossover["name"]),
        elitism=search.elitism,
        temperature=search.temperature,
        cooling=search.cooling,
        refine=refine,
    )
    return entry.fn(setup)


def build_executor(config: ExecutorConfig, task: Task | None = None) -> Executor:
    """The configured executor; Ray is imported only for `kind: ray`."""
    if config.chunk_size and task is not None and is_whole_generation(task):
        raise UserError(
            "executor.chunk_size: this task ranks a generation's genomes together "
            "(successive halving), so it evaluates them in one call; remove "
            "executor.chunk_size (or use fitness.schedule: full)"
        )
    if config.kind == "ray":
        from evotune.executors.ray import RayExecutor

        return RayExecutor(
            address=config.address,
            num_cpus=config.num_cpus,
            num_gpus=config.num_gpus,
            max_in_flight=config.max_in_flight,
            max_retries=config.max_retries,
            chunk_size=config.chunk_size,
        )
    return LocalExecutor(config.chunk_size)


def stop_rules(search: SearchConfig) -> StopRules:
    seconds = None if search.max_minutes is None else search.max_minutes * 60.0
    return StopRules(search.generations, search.max_evaluations, seconds, search.target)


def default_run_dir(config: RunConfig) -> Path:
    return Path("runs") / f"{config.task_name}-{time.strftime('%Y%m%d-%H%M%S')}"


def prepare_run_dir(run_dir: Path, overwrite: bool = False) -> None:
    """Create the run directory; refuse one that holds a run (unless `overwrite`: the
    old run is removed once the new one is built) or anything else (rundir.py)."""
    check_out_dir(run_dir, overwrite)
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:  # under a file, /proc, a read-only or full file system
        raise UserError(f"--out {run_dir}: cannot create this folder ({err.strerror})") from None


def _make_loop(
    config: RunConfig,
    task: Task,
    run_dir: Path,
    callbacks: Callbacks | None,
    stage: str | None = None,
) -> SearchLoop:
    rng = np.random.default_rng(config.search.seed)
    refine = getattr(task, "refine", None)
    algorithm = build_algorithm(config.search, task.space, len(task.objectives), rng, refine)
    stage_meta = {} if stage is None else {"stage": stage}
    return SearchLoop(
        problem=task,
        algorithm=algorithm,
        rng=rng,
        run_dir=run_dir,
        seed=config.search.seed,
        stop=stop_rules(config.search),
        executor=build_executor(config.executor, task),
        callbacks=callbacks,
        extra_meta={
            "task": config.task_name,
            "config": _comparable(config.to_dict()),
            **stage_meta,
        },
        max_failures=config.executor.max_failures,
    )


def start(
    config: RunConfig,
    run_dir: Path,
    callbacks: Callbacks | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Start a new run in `run_dir`, locked for this process; returns the summary.
    `overwrite` replaces a run already there, once the new run's task and algorithm are
    built (so bad input leaves it untouched)."""
    prepare_run_dir(run_dir, overwrite)
    with run_lock(run_dir):
        return _start(config, run_dir, callbacks, overwrite)


def _start(
    config: RunConfig, run_dir: Path, callbacks: Callbacks | None, overwrite: bool
) -> dict[str, Any]:
    if config.search.compare:  # one run per algorithm, in RUN_DIR/<algorithm>/
        if overwrite:
            clear_run_dir(run_dir)
        return compare(config, run_dir, callbacks, resuming=False, start=start, resume=resume)
    task = _announce(build_task(config))
    loop = None if is_staged(task) else _make_loop(config, task, run_dir, callbacks)
    if overwrite:
        clear_run_dir(run_dir)
    config.output.dir = str(run_dir)
    atomic_write_text(run_dir / "config.yaml", config.to_yaml())
    if loop is None:
        return _run_stages(config, task, run_dir, callbacks)
    return _finish(config, loop, run_dir)


def load_resume_config(run_dir: Path, overrides: list[str] | None = None) -> RunConfig:
    """The config of the run in `run_dir`; overrides may only change stop rules."""
    config_path = run_dir / "config.yaml"
    if not config_path.is_file():
        raise UserError(f"{config_path} not found: is {run_dir} an evotune run directory?")
    for text in overrides or []:
        key = text.partition("=")[0].strip()
        if key not in {f"search.{k}" for k in STOP_KEYS} and not key.startswith("executor."):
            raise UserError(
                f"--set {key}: a resumed run can only change its stop rules "
                f"({', '.join('search.' + k for k in STOP_KEYS)}) and executor.*"
            )
    return resolve(apply_overrides(load_yaml(config_path), overrides or []))


def resume(run_dir: Path, config: RunConfig, callbacks: Callbacks | None = None) -> dict[str, Any]:
    """Continue the run in `run_dir` with `config` (from `load_resume_config`), locked
    for this process: a second process on the run is refused."""
    with run_lock(run_dir):
        return _resume(run_dir, config, callbacks)


def _resume(run_dir: Path, config: RunConfig, callbacks: Callbacks | None) -> dict[str, Any]:
    if config.search.compare:
        return compare(config, run_dir, callbacks, resuming=True, start=start, resume=resume)
    task = _announce(build_task(config))
    if is_staged(task):  # each stage checks its own config and resumes in turn
        config.output.dir = str(run_dir)
        atomic_write_text(run_dir / "config.yaml", config.to_yaml())
        return _run_stages(config, task, run_dir, callbacks)
    loop = _make_loop(config, task, run_dir, callbacks)
    meta = loop.resume()
    _check_same_config(meta.get("config"), loop.extra_meta["config"], run_dir)
    config.output.dir = str(run_dir)
    atomic_write_text(run_dir / "config.yaml", config.to_yaml())  # new stop rules, if any
    return _finish(config, loop, run_dir)


def _finish(config: RunConfig, loop: SearchLoop, run_dir: Path) -> dict[str, Any]:
    summary = loop.run()
    if has_baselines(loop.problem):
        summary = BaselineRunner(loop, loop.callbacks).run(summary)
    if hasattr(loop.problem, "after_search"):  # e.g. prune: test metrics, ensembles
        summary = loop.problem.after_search(run_dir, summary)
    summary = _with_data_notes(loop.problem, summary, run_dir)
    if config.output.report:
        from evotune.report import write_report  # matplotlib: only when reporting

        write_report(run_dir)
    return summary


def _run_stages(
    config: RunConfig, task: Task, run_dir: Path, callbacks: Callbacks | None
) -> dict[str, Any]:
    """A staged task (staged.py): one search per stage, in RUN_DIR/stages/NAME/."""
    summary = run_staged(
        task,
        run_dir,
        lambda folder, cb, stage: _make_loop(config, task, folder, cb, stage),
        _comparable(config.to_dict()),
        callbacks,
    )
    summary = _with_data_notes(task, summary, run_dir)
    if config.output.report:
        from evotune.report import write_report

        write_report(run_dir)
    return summary


def _announce(task: Task) -> Task:
    """Say on the console what the data loading noticed (skipped files, a missing test
    set) and what building the model decided (python: the weights' wrapper, the
    classifier removed): both are also kept in summary.json."""
    for note in task.data_notes() + task.model_notes():
        print(f"note: {note}", file=sys.stderr)
    return task


def _with_data_notes(task: Task, summary: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    notes = {"data_notes": task.data_notes(), "model_notes": task.model_notes()}
    if any(notes.values()):
        summary = {**summary, **{k: v for k, v in notes.items() if v}}
        atomic_write_json(run_dir / "summary.json", summary)
    return summary


def _comparable(config: dict[str, Any]) -> dict[str, Any]:
    """The parts of a config that must not change on resume, as JSON would store them."""
    search = {k: v for k, v in config["search"].items() if k not in STOP_KEYS}
    kept = {k: v for k, v in config.items() if k not in ("output", "executor")}
    return json.loads(json.dumps({**kept, "search": search}))


def _check_same_config(saved: dict[str, Any] | None, now: dict[str, Any], run_dir: Path) -> None:
    if saved is not None:  # checkpoints of earlier versions also stored the executor
        saved = {k: v for k, v in saved.items() if k != "executor"}
    if saved is None or saved == now:
        return
    differing = sorted(_differing_keys(saved, now))
    raise UserError(
        f"{run_dir}/config.yaml no longer matches the checkpoint "
        f"(changed: {', '.join(differing)}); restore it or start a new run"
    )


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        keys = sorted(set(a) | set(b))
        return [
            k for key in keys for k in _differing_keys(a.get(key), b.get(key), f"{prefix}{key}.")
        ]
    return [] if a == b else [prefix.rstrip(".")]
