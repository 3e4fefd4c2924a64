"""The `evotune` command line.

Exit codes: 0 success; 2 bad input (config, data, arguments), with one message naming
the key or file; 130 interrupted (the run can be resumed); 1 anything else.
"""

from __future__ import annotations

import argparse
import errno
import sys
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import Any

from evotune import __version__
from evotune.errors import RunError, UserError

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT, EXIT_INTERRUPTED = 0, 1, 2, 130


class _Parser(argparse.ArgumentParser):
    """argparse, but bad arguments raise UserError like every other bad input."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UserError(f"{self.prog}: {message}")


def _add_set(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY.PATH=VALUE",
        help="override a config value (repeatable), e.g. --set search.population=50",
    )


def _add_quiet(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="print only the result")


def _add_overwrite(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument(
        "--overwrite", action="store_true", help=f"replace {what} at --out (refused otherwise)"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="evotune", description=__doc__.split("\n")[0])
    parser.add_argument("--version", action="version", version=f"evotune {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = sub.add_parser("run", help="start a search from a YAML config")
    run.add_argument("config", type=Path)
    _add_set(run)
    run.add_argument("--out", type=Path, help="run directory (default: output.dir)")
    _add_overwrite(run, "a run")
    _add_quiet(run)

    resume = sub.add_parser("resume", help="continue an interrupted or finished run")
    resume.add_argument("run_dir", type=Path)
    _add_set(resume)
    _add_quiet(resume)

    validate = sub.add_parser("validate", help="print the resolved config, or its errors")
    validate.add_argument("config", type=Path)
    _add_set(validate)

    report = sub.add_parser("report", help="(re)write report.html and plots/ of a run")
    report.add_argument("run_dir", type=Path)

    demo = sub.add_parser("demo", help="run the built-in demo (no data, no download)")
    demo.add_argument("--out", type=Path, default=Path("runs/demo"))
    _add_overwrite(demo, "a run")
    _add_set(demo)
    _add_quiet(demo)

    pre = sub.add_parser(
        "pretrain", help="train a backbone on source data; save a file: checkpoint"
    )
    pre.add_argument("config", type=Path)
    _add_set(pre)
    pre.add_argument("--out", type=Path, help="checkpoint path (default: pretrain.out)")
    _add_overwrite(pre, "an existing checkpoint")

    models = sub.add_parser("models", help="list the backbones that can be built")
    models.add_argument("pattern", nargs="?", default="*", help="e.g. 'torchvision:res*'")
    models.add_argument("--genes", action="store_true", help="build each to count its genes")
    models.add_argument(
        "--granularity",
        choices=("leaf", "block", "stage"),
        default="block",
        help="with --genes and one python:/file: model: list its genes at this granularity",
    )

    export = sub.add_parser("export", help="retrain a run's best genome and save the model")
    export.add_argument("run_dir", type=Path)
    export.add_argument("--out", type=Path, required=True, help="model file (.safetensors)")
    _add_overwrite(export, "an existing model file")
    export.add_argument("--epochs", type=int, help="training epochs (default: the run's)")
    export.add_argument(
        "--pick",
        help="a Pareto front member instead of the best: accuracy, smallest, knee or 'index N'",
    )
    export.add_argument("--device", help="retrain there (default: the run's fitness.device)")

    pred = sub.add_parser("predict", help="apply an exported model (or a run's best) to new data")
    pred.add_argument("model", type=Path, help="a file written by `evotune export`, or a run dir")
    pred.add_argument("data", type=Path, help="YAML: a data: section (path, label, source)")
    _add_set(pred)
    pred.add_argument(
        "--out",
        type=Path,
        default=Path("predictions.csv"),
        help="predictions CSV (+ .metrics.json)",
    )
    _add_overwrite(pred, "existing predictions")
    pred.add_argument(
        "--device", help="auto (default), cpu, cuda or cuda:N; a run dir's best retrains there"
    )

    infer = sub.add_parser("infer", help="predict one image with a `weights` run's model")
    infer.add_argument("run_dir", type=Path)
    infer.add_argument("image", type=Path, help="PNG/JPEG/BMP, any size")
    infer.add_argument("--out", type=Path, help="comparison PNG (default RUN_DIR/infer/)")
    infer.add_argument("--invert", action="store_true", help="dark strokes on a light page")

    agg = sub.add_parser("aggregate", help="merge the Pareto fronts of several runs")
    agg.add_argument("run_dirs", type=Path, nargs="+")
    agg.add_argument("--out", type=Path, required=True, help="directory of the merged front")
    _add_overwrite(agg, "an earlier result")
    agg.add_argument("--no-analysis", action="store_true", help="skip retraining the front")

    listing = sub.add_parser("list", help="list tasks, algorithms, operators or presets")
    listing.add_argument(
        "what",
        choices=["tasks", "algorithms", "operators", "presets"],
        nargs="?",
        default="operators",
    )
    listing.add_argument("pattern", nargs="?", default="*", help="shell pattern, e.g. '*point'")
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        with _SigtermInterrupts():
            return COMMANDS[args.command](args)
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except RunError as err:  # e.g. too many failed evaluations: resumable, no traceback
        print(f"error: {err}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        print("\ninterrupted: `evotune resume RUN_DIR` continues the run", file=sys.stderr)
        return EXIT_INTERRUPTED
    except OSError as err:
        if err.errno not in UNWRITABLE:
            raise
        print(f"error: {unwritable_message(err)}", file=sys.stderr)
        return EXIT_BAD_INPUT


# The file system refused a write: no space, read-only, no permission, not a folder.
UNWRITABLE = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR}


def unwritable_message(err: OSError) -> str:
    """Which file could not be written, and that nothing written before is lost (files
    are replaced atomically, the journal is appended and fsynced line by line)."""
    where = err.filename or "a file"
    return (
        f"cannot write {where}: {err.strerror}. Everything written before is intact: "
        "fix the cause (free space, permissions, another --out), then `evotune resume "
        "RUN_DIR` continues a run from where it stopped"
    )


class _SigtermInterrupts:
    """SIGTERM stops a command like Ctrl-C: `finally` blocks run (the run directory's
    lock is released) and the run stays resumable."""

    def __enter__(self) -> None:
        import signal
        import threading

        self.previous: Any = None
        if threading.current_thread() is threading.main_thread():  # else not allowed
            self.previous = signal.signal(signal.SIGTERM, _interrupt)

    def __exit__(self, *exc_info: object) -> None:
        import signal

        if self.previous is not None:
            signal.signal(signal.SIGTERM, self.previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


# ---- commands ---------------------------------------------------------------------


def cmd_run(args: argparse.Namespace) -> int:
    from evotune.api import run

    result = run(
        args.config,
        out=args.out,
        overrides=args.overrides,
        quiet=args.quiet,
        overwrite=args.overwrite,
    )
    _print_result(result.summary, result.path)
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    from evotune.api import resume

    result = resume(args.run_dir, overrides=args.overrides, quiet=args.quiet)
    _print_result(result.summary, result.path)
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    from evotune.api import run
    from evotune.rundir import check_out_dir

    check_out_dir(args.out, args.overwrite)  # before pretraining the backbone
    backbone = demo_backbone(quiet=args.quiet)
    overrides = [f"model.backbone=file:{backbone}", *args.overrides]
    with resources.as_file(resources.files("evotune") / "configs" / "demo.yaml") as path:
        result = run(
            path, out=args.out, overrides=overrides, quiet=args.quiet, overwrite=args.overwrite
        )
    _print_result(result.summary, result.path)
    return EXIT_OK


DEMO_PRETRAIN_OVERRIDES: list[str] = []  # tests shorten the demo's pretraining


def demo_backbone(quiet: bool = False) -> Path:
    """The demo's pretrained backbone: made once (about a minute), then cached."""
    from evotune.paths import cache_dir
    from evotune.pretrain import load_pretrain_config, pretrain

    path = cache_dir("backbones") / "demo-small_resnet-digits0to4.safetensors"
    if not path.exists():
        if not quiet:
            print(f"pretraining the demo backbone (once) -> {path}", file=sys.stderr)
        with resources.as_file(
            resources.files("evotune") / "configs" / "demo-pretrain.yaml"
        ) as config:
            pretrain(load_pretrain_config(config, DEMO_PRETRAIN_OVERRIDES), path)
    return path


def _print_result(summary: dict[str, Any], run_dir: Path) -> None:
    best = summary["best"]
    names = [o["name"] for o in summary["objectives"]]
    fitness = ", ".join(f"{n}={v:.6g}" for n, v in zip(names, best["fitness"])) if best else "-"
    print(f"run directory: {run_dir}")
    print(
        f"best: {fitness}  (stopped by {summary['stopped_by']}, "
        f"{summary['evaluations']} evaluations, {summary['wall_seconds']:.1f}s)"
    )
    for line in best_lines(best):
        print(line)
    if len(names) > 1:
        print(f"pareto front: {len(summary['pareto'])} points")
    if summary.get("baselines") or summary.get("baseline_failures"):
        print(baseline_table(summary))
    if summary.get("comparison"):
        from evotune.compare import comparison_table

        print(comparison_table(summary))
    if (run_dir / "report.html").exists():
        print(f"report: {run_dir / 'report.html'}")


def best_lines(best: dict[str, Any] | None) -> list[str]:
    """The best genome in full when it is a mapping (hparams: the tables cut it), and
    the best's test metrics (e.g. weights: test_rmse, test_accuracy)."""
    lines = []
    genome = (best or {}).get("genome")
    if isinstance(genome, dict) and set(genome) != {"file", "genes"}:  # not a file reference
        where = f" ({best['algorithm']})" if best.get("algorithm") else ""
        lines.append(
            f"best genome{where}: " + ", ".join(f"{k}={_value(v)}" for k, v in genome.items())
        )
    metrics = (best or {}).get("metrics") or {}
    tests = [
        f"{k.removeprefix('test_')}={_value(v)}"
        for k, v in metrics.items()
        if k.startswith("test_")
    ]
    if tests:
        lines.append("test: " + ", ".join(tests))
    return lines


def _value(value: Any) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def baseline_table(summary: dict[str, Any]) -> str:
    """The search's best beside each baseline: fitness, test accuracy, trainable params."""
    name = summary["objectives"][0]["name"]
    rows = [("search", summary["best"])] + list(summary["baselines"].items())
    lines = [f"{'':<8} {name:>10} {'test acc':>9} {'trainable':>10} {'evaluated':>9}  genome"]
    for label, entry in rows:
        if entry is None:
            continue
        m = entry["metrics"]
        test = f"{m['test_accuracy']:.4f}" if "test_accuracy" in m else "-"
        evaluated = m.get("candidates", summary["evaluations"])
        genome = str(entry["genome"])
        genome = genome if len(genome) <= 40 else genome[:39] + "…"
        lines.append(
            f"{label:<8} {entry['fitness'][0]:>10.4f} {test:>9} "
            f"{m.get('trainable_params', '-'):>10} {evaluated:>9}  {genome}"
        )
    for label, error in (summary.get("baseline_failures") or {}).items():
        lines.append(f"{label:<8} every candidate failed: {error}")
    return "\n".join(lines)


def cmd_validate(args: argparse.Namespace) -> int:
    from evotune.config import load_config

    print(load_config(args.config, args.overrides).to_yaml(), end="")
    return EXIT_OK


def cmd_report(args: argparse.Namespace) -> int:
    from evotune.api import open_run

    print(open_run(args.run_dir).report())
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    import fnmatch

    from evotune.config import REGISTRIES
    from evotune.engine import ALGORITHMS
    from evotune.engine.presets import PRESETS
    from evotune.tasks import TASKS, get_task

    def matching(names: list[str]) -> list[str]:
        return [n for n in sorted(names) if fnmatch.fnmatch(n, args.pattern)]

    if args.what == "tasks":
        for name in matching(list(TASKS)):
            print(f"{name:<14} {get_task(name).description}")
    elif args.what == "algorithms":
        for name in ALGORITHMS.names(args.pattern):
            entry = ALGORITHMS.get(name)
            objectives = entry.traits.get("objectives", "one")
            print(f"{name:<13} [{objectives} objective{'s' * (objectives == 'many')}] {entry.doc}")
    elif args.what == "presets":
        print("\n".join(matching(list(PRESETS))))
    else:
        for family, registry in REGISTRIES.items():
            for name in registry.names(args.pattern):
                entry = registry.get(name)
                kinds = "/".join(entry.kinds) or "any"
                print(f"{family:<10} {name:<13} [{kinds}] {entry.doc}")
    return EXIT_OK


def cmd_pretrain(args: argparse.Namespace) -> int:
    from evotune.pretrain import load_pretrain_config, pretrain
    from evotune.rundir import check_out_file

    config = load_pretrain_config(args.config, args.overrides)
    check_out_file(Path(args.out or config.pretrain.out), args.overwrite)
    result = pretrain(config, args.out)
    accuracy = f"val accuracy {result['val_accuracy']:.4f}"
    if "test_accuracy" in result:
        accuracy += f", test accuracy {result['test_accuracy']:.4f}"
    print(f"pretrained {result['epochs']} epochs ({accuracy}) -> {result['path']}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from evotune.models import gene_counts, gene_listing, list_models, names_one_model

    if names_one_model(args.pattern):  # python:MODULE:FACTORY or file:PATH
        for line in gene_listing(args.pattern, args.granularity if args.genes else None):
            print(line)
        return EXIT_OK
    names = list_models(args.pattern)
    if not names:
        raise UserError(f"no backbone matches {args.pattern!r}; try `evotune models '*'`")
    for name in names:
        if args.genes:
            counts = gene_counts(name)
            print(f"{name:<44} " + "  ".join(f"{k} {v}" for k, v in counts.items()))
        else:
            print(name)
    return EXIT_OK


def cmd_predict(args: argparse.Namespace) -> int:
    from evotune.predict import predict, summary_lines

    result = predict(
        args.model,
        args.data,
        overrides=args.overrides,
        out=args.out,
        overwrite=args.overwrite,
        device=args.device,
    )
    print("\n".join(summary_lines(result)))
    return EXIT_OK


def cmd_infer(args: argparse.Namespace) -> int:
    from evotune.infer import infer

    result = infer(args.run_dir, args.image, args.out, invert=args.invert)
    print(f"predicted class: {result['class']}")
    if "image" in result:
        print(f"reconstruction (RMSE {result['rmse']:.4f}) -> {result['image']}")
    else:
        print("probabilities: " + ", ".join(f"{c} {p}" for c, p in result["probabilities"].items()))
    return EXIT_OK


def cmd_aggregate(args: argparse.Namespace) -> int:
    from evotune.prune.aggregate import aggregate

    merged = aggregate(
        args.run_dirs, args.out, analyse=not args.no_analysis, overwrite=args.overwrite
    )
    print(f"{len(args.run_dirs)} runs -> front of {len(merged['pareto'])} points in {args.out}")
    print(f"report: {args.out / 'report.html'}")
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from evotune.api import export_model

    result = export_model(
        args.run_dir,
        args.out,
        epochs=args.epochs,
        pick=args.pick,
        overwrite=args.overwrite,
        device=args.device,
    )
    numbers = {k: v for k, v in result["metrics"].items() if type(v) in (int, float)}
    line = ", ".join(f"{k} {v:.4g}" for k, v in numbers.items())
    print(f"exported -> {result['path']} ({line})")
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "pretrain": cmd_pretrain,
    "models": cmd_models,
    "export": cmd_export,
    "aggregate": cmd_aggregate,
    "run": cmd_run,
    "resume": cmd_resume,
    "validate": cmd_validate,
    "report": cmd_report,
    "demo": cmd_demo,
    "list": cmd_list,
    "infer": cmd_infer,
    "predict": cmd_predict,
}
