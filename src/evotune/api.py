"""The Python API: start, resume and open runs; use what a search found.

    import evotune

    run = evotune.run({"task": {"name": "onemax", "length": 20}}, out="runs/onemax")
    run.best.genome, run.best.fitness  # the best bit string, (its number of ones,)
    run = evotune.resume(run.path, overrides=["search.generations=40"])

The command line is a thin layer over these functions: `evotune run`, `resume`,
`report` and `export` call them and print the result. Bad input raises `UserError` with
the message the command line prints (exit code 2 there); a run that cannot go on raises
`RunError`. An interrupted call (`KeyboardInterrupt`) leaves the run resumable with
`evotune.resume(path)`.

Importing this module is cheap: torch, the tasks and the report load on first use.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from evotune.errors import UserError

if TYPE_CHECKING:
    from torch import nn

    from evotune.config import RunConfig
    from evotune.engine.loop import Callbacks
    from evotune.predict import PredictionResult

PathLike = str | os.PathLike[str]
Config = PathLike | Mapping[str, Any]  # a YAML file or a dict shaped like it
DataSpec = PathLike | Mapping[str, Any]  # a DATA.yaml or a dict shaped like a data: section


@dataclass(frozen=True)
class Best:
    """The best evaluation of a run (summary.json's `best`).

    Attributes:
        genome: The genome as the journal stores it: a bit string (`layers`, `prune`),
            a mapping of gene names to values (`hparams`), a list of numbers, or
            `{"file": ..., "genes": n}` for a genome kept in the run's `genomes/`.
        fitness: One value per objective, in natural units, in the order of
            `run.summary["objectives"]`.
        metrics: What the evaluation measured besides fitness (validation loss,
            trainable parameters, test metrics after the search, ...).
    """

    genome: Any
    fitness: tuple[float, ...]
    metrics: dict[str, Any]


class Run:
    """A run directory: finished, interrupted or still going.

    Get one from `evotune.run`, `evotune.resume` or `evotune.open_run`. Properties read
    the directory when asked, so a `Run` always shows what is on disk now.
    """

    def __init__(self, path: PathLike) -> None:
        self.path: Path = Path(path)
        """The run directory."""

    def __repr__(self) -> str:
        state = "finished" if self.finished else "unfinished"
        return f"<evotune.Run {str(self.path)!r} ({state})>"

    @property
    def finished(self) -> bool:
        """Whether the run wrote its summary.json (it may since have been resumed)."""
        return (self.path / "summary.json").is_file()

    @property
    def summary(self) -> dict[str, Any]:
        """summary.json as a dict: task, objectives, best, pareto, evaluations,
        wall_seconds, baselines, ... For a run not finished (no summary.json yet), what
        its journal holds so far: `objectives`, `best` (None before the first successful
        evaluation) and `pareto`."""
        if self.finished:
            return dict(json.loads((self.path / "summary.json").read_text(encoding="utf-8")))
        from evotune.export import run_summary  # resolves the config: loads the task, torch

        return run_summary(self.path, self._resolved_config())

    @property
    def best(self) -> Best | None:
        """The best evaluation so far (`summary["best"]`); None when none succeeded."""
        best = self.summary.get("best")
        if best is None:
            return None
        return Best(best["genome"], tuple(best["fitness"]), dict(best.get("metrics") or {}))

    @property
    def config(self) -> dict[str, Any]:
        """The resolved config the run was started with (its config.yaml), as a dict."""
        import yaml

        return dict(yaml.safe_load((self.path / "config.yaml").read_text(encoding="utf-8")))

    def journal(self) -> list[dict[str, Any]]:
        """Every finished evaluation, in order: one dict per journal.jsonl line
        (`generation`, `index`, `genome`, `hash`, `fitness`, `metrics`, `seconds`,
        `cached`; a failed evaluation has `error` instead of fitness). Empty before the
        first evaluation and for a comparison's top directory (see its sub-runs)."""
        from evotune.engine.journal import read_jsonl

        return read_jsonl(self.path / "journal.jsonl")

    def export(
        self,
        path: PathLike,
        *,
        epochs: int | None = None,
        pick: str | None = None,
        overwrite: bool = False,
    ) -> Path:
        """Retrain the best genome (with the seed it had in the search) and save the
        model, as `evotune export`.

        Args:
            path: The model file to write (`.safetensors`).
            epochs: Training epochs; default: the run's `fitness.epochs`.
            pick: A member of the Pareto front instead of the best (runs with several
                objectives): `accuracy`, `smallest`, `knee` or `index N`.
            overwrite: Replace an existing file at `path` (refused otherwise).

        Returns:
            The path of the written model.

        Raises:
            UserError: `path` exists or is a directory, bad `epochs` or `pick`, or the
                run has no successful evaluation yet.
        """
        return Path(
            export_model(self.path, path, epochs=epochs, pick=pick, overwrite=overwrite)["path"]
        )

    def load_model(self) -> nn.Module:
        """The run's best model, in eval mode: retrained (into a temporary file) exactly
        as `export` does, the training data's input pipeline recorded with it."""
        from evotune.predict import load_model

        with _training_allowed():
            model = load_model(self.path)
        model.eval()
        return model

    def predict(
        self,
        data: DataSpec,
        *,
        overrides: Iterable[str] = (),
        out: PathLike | None = None,
        overwrite: bool = False,
    ) -> PredictionResult:
        """Apply the run's best model to new data, as `evotune predict RUN_DIR DATA`.

        The best is retrained for each call, exactly as `export` does; to predict
        often, `export` once and pass the file to `evotune.predict.predict`.

        Args:
            data: Where the new data is and how it is labelled: a path to a YAML file
                holding a `data:` section, or a dict shaped like one
                (`{"path": "new-speaker", "source": "audio"}`).
            overrides: `key.path=value` strings for the data section, as `--set`.
            out: Write the predictions CSV there (and, with labels, the metrics
                beside it as `<stem>.metrics.json`); default: write nothing.
            overwrite: Replace existing files at `out` (refused otherwise).

        Returns:
            The predictions: `rows` (item, predicted class, probability, label) and,
            when the data has labels, `metrics` (accuracy, per-class accuracy, the
            confusion matrix).

        Raises:
            UserError: Bad data (classes, channels or shapes that differ from the
                model's), or files at `out` without `overwrite`.
        """
        from evotune.predict import predict

        where = None if out is None else Path(out)
        with _training_allowed():
            return predict(
                self.path, data, overrides=_overrides(overrides), out=where, overwrite=overwrite
            )

    def report(self) -> Path:
        """Write (or refresh) the run's report.html and plots/; returns the report's
        path. Needs summary.json: finish an interrupted run with `evotune.resume`."""
        from evotune.report import write_report  # matplotlib

        return write_report(self.path)

    def _resolved_config(self) -> RunConfig:
        from evotune.runner import load_resume_config

        return load_resume_config(self.path)


def run(
    config: Config,
    *,
    out: PathLike | None = None,
    overrides: Iterable[str] = (),
    quiet: bool = True,
    overwrite: bool = False,
) -> Run:
    """Run a search, as `evotune run CONFIG`.

    Args:
        config: A path to a YAML config file, or a dict shaped like one
            (`{"task": ..., "data": ..., "model": ..., "search": ..., ...}`). Relative
            paths inside a dict are relative to the working directory.
        out: The run directory; default: the config's `output.dir`, else
            `runs/<task>-<date>-<time>`. It must be new or empty, or hold a run and
            `overwrite` be set.
        overrides: `key.path=value` strings applied to the config, as `--set`
            (`["search.population=50", "fitness.epochs=3"]`).
        quiet: Print nothing; `False` shows the progress lines of the command line.
        overwrite: Replace a run already in `out` (only once the new run is built).

    Returns:
        The finished run.

    Raises:
        UserError: Bad config, data or arguments (the message names the key or file).
        RunError: The run could not go on (e.g. too many failed evaluations); it
            stays resumable.
    """
    from evotune.runner import default_run_dir, start

    resolved = _load_config(config, _overrides(overrides))
    configured = Path(resolved.output.dir) if resolved.output.dir else None
    run_dir = Path(out) if out is not None else configured or default_run_dir(resolved)
    _search(lambda cb: start(resolved, run_dir, cb, overwrite=overwrite), resolved, quiet)
    return Run(run_dir)


def resume(path: PathLike, *, overrides: Iterable[str] = (), quiet: bool = True) -> Run:
    """Continue an interrupted (or extend a finished) run, as `evotune resume RUN_DIR`.

    The result equals that of a run never interrupted.

    Args:
        path: The run directory.
        overrides: `key.path=value` strings; only the stop rules (`search.generations`,
            `search.max_evaluations`, `search.max_minutes`, `search.target`) and
            `executor.*` may change.
        quiet: Print nothing; `False` shows progress lines.

    Returns:
        The finished run.

    Raises:
        UserError: `path` holds no run, its config no longer matches the checkpoint, or
            an override changes anything but the stop rules and the executor.
    """
    from evotune.runner import load_resume_config
    from evotune.runner import resume as resume_run

    run_dir = Path(path)
    config = load_resume_config(run_dir, _overrides(overrides))
    _search(lambda cb: resume_run(run_dir, config, cb), config, quiet)
    return Run(run_dir)


def open_run(path: PathLike) -> Run:
    """An existing run directory, finished or not (nothing is run or written).

    Raises:
        UserError: `path` is not a directory or holds no evotune run (no config.yaml).
    """
    run_dir = Path(path)
    if not run_dir.is_dir():
        raise UserError(f"{run_dir} is not a directory: expected an evotune run directory")
    if not (run_dir / "config.yaml").is_file():
        config_path = run_dir / "config.yaml"
        raise UserError(f"{config_path} not found: is {run_dir} an evotune run directory?")
    return Run(run_dir)


def export_model(
    run_dir: PathLike,
    out: PathLike,
    *,
    epochs: int | None = None,
    pick: str | None = None,
    overwrite: bool = False,
    device: str | None = None,
) -> dict[str, Any]:
    """`Run.export` with the retrained model's metrics: `{"path", "metrics"}` (what
    `evotune export` prints). `out` is checked before retraining; `device` retrains
    there instead of on the run's fitness.device."""
    from evotune.export import export
    from evotune.rundir import check_out_file

    check_out_file(Path(out), overwrite)
    with _training_allowed():
        return export(Path(run_dir), Path(out), epochs, pick, device)


# ---- helpers ----------------------------------------------------------------------


def _overrides(overrides: Iterable[str]) -> list[str]:
    if isinstance(overrides, str):  # a lone string would be read letter by letter
        raise UserError(
            f"overrides: expected a list of 'key.path=value' strings, got the string "
            f"{overrides!r}; write [{overrides!r}]"
        )
    return [str(text) for text in overrides]


@contextmanager
def _training_allowed() -> Iterator[None]:
    """Gradients on while the best genome is retrained: a notebook may call us inside
    `torch.no_grad()` or `torch.inference_mode()`, where backward() would fail."""
    import torch

    with torch.inference_mode(False), torch.enable_grad():
        yield


def _load_config(config: Config, overrides: list[str]) -> RunConfig:
    """A YAML file's or a mapping's config, overridden and validated."""
    from evotune.config import apply_overrides, load_config, resolve

    if isinstance(config, Mapping):
        return resolve(apply_overrides(dict(config), overrides))
    if isinstance(config, str | os.PathLike):
        return load_config(Path(config), overrides)
    raise UserError(
        f"config: expected a path to a YAML file or a dict shaped like one, "
        f"got {config!r:.80} ({type(config).__name__})"
    )


def _search(start: Callable[[Callbacks], Any], config: RunConfig, quiet: bool) -> None:
    """Run `start` with the command line's progress display (silent when `quiet`)."""
    from evotune.progress import ConsoleProgress

    names = [o.name for o in config.task_class.objectives_for(config)]
    search = config.search
    progress = ConsoleProgress(
        names,
        search.generations,
        quiet=quiet,
        max_evaluations=search.max_evaluations,
        max_minutes=search.max_minutes,
    )
    try:
        start(progress)
    finally:
        progress.close()
