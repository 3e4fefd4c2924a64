"""Transfer-hyperparameter search, algorithms against each other at equal wall time:
GA (full-budget fitness), GA with successive halving (two schedules), random search,
simulated annealing and Optuna's TPE, on the same genome space and seeds. Population 8
(16 for the wide successive-halving GA), 6 epochs per full evaluation, patience 3.

Backbone: evotune's small ResNet pretrained on the MNIST test set (`evotune pretrain`),
transferred to spoken digits (FSDD, log-mel 32 x 16, official split: recordings 0-4 of
each speaker are the test set; 100 training recordings per digit). DenseNet-121, the
seed's backbone, takes minutes per genome on 2 shared CPU cores: too slow to compare
five algorithms over three seeds here.

Each run gets `--minutes` of search. Every evaluation is placed on the time axis when
it finished (`report/comparison.py: best_curve`), and only evaluations finished within
the budget count (a generation may run past it: the stop rule is checked between
generations). After the search the best genome is retrained with the full budget and
tested (not counted in the budget). Runs go one after another, methods interleaved
within each seed, so changes in the machine's load hit every method alike.

    python benchmarks/hparams_compare.py [--quick] [--seeds 3] [--minutes 4] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from common import fsdd_data, mnist_backbone  # noqa: E402

SH = "successive_halving"
METHODS = {  # label -> (algorithm, fitness schedule, other settings)
    "ga": ("ga", "full", {}),
    "ga+sh": ("ga", SH, {}),  # rungs 1, 3, 6 epochs, keep 1/3
    # wider and gentler: population 16, rungs 2, 4, 6 epochs, keep 1/2
    "ga+sh wide": ("ga", SH, {"population": 16, "min_epochs": 2, "eta": 2}),
    "random": ("random", "full", {}),
    "annealing": ("annealing", "full", {}),
    "tpe": ("tpe", "full", {}),
}
SH_METHODS = ("ga+sh", "ga+sh wide")
GENES = {
    "kept": [1, None],
    "frozen": [0, None],
    "lr": [1e-4, 1e-1],
    "dropout": [0.0, 0.7],
    "batch_size": [32, 64, 128],
    "se_blocks": [False, True],
}


def config(method: str, seed: int, minutes: float, backbone: Path, quick: bool) -> dict:
    algorithm, schedule, other = METHODS[method]
    data = fsdd_data(max_per_class=40 if quick else 100)
    data["audio"] = {**data["audio"], "n_mels": 32, "hop_length": 512}
    return {
        "task": {"name": "hparams", "genes": GENES, "baselines": []},
        "data": data,
        "model": {"backbone": f"file:{backbone}", "channels": "keep", "normalize": "none"},
        "search": {
            "preset": "tl-hparams",
            "algorithm": algorithm,
            "population": other.get("population", 8),
            "max_minutes": minutes,
            "seed": seed,
        },
        "fitness": {
            "epochs": 6,
            "patience": 3,
            "schedule": schedule,
            "min_epochs": other.get("min_epochs", 1),
            "eta": other.get("eta", 3),
            "device": "cpu",
        },
        "output": {"report": False},
    }


def run_one(method: str, seed: int, minutes: float, backbone: Path, quick: bool, out: Path) -> dict:
    """The run's result; a finished run in `out` is read back, an unfinished one (the
    process was killed) is started again from scratch."""
    from evotune.config import resolve
    from evotune.runner import start

    if finished(out) is None:
        shutil.rmtree(out, ignore_errors=True)
        start(resolve(config(method, seed, minutes, backbone, quick)), out)
    return finished(out)


def finished(out: Path) -> dict | None:
    from evotune.report.comparison import best_curve
    from evotune.report.rundata import load_run

    path = out / "summary.json"
    summary = json.loads(path.read_text()) if path.is_file() else {}
    if "test_accuracy" not in ((summary.get("best") or {}).get("metrics") or {}):
        return None
    return {
        "curve": best_curve(load_run(out)).tolist(),
        "test_accuracy": summary["best"]["metrics"]["test_accuracy"],
        "evaluations": summary["evaluations"],
        "wall": summary["wall_seconds"],
    }


def best_at(curve: np.ndarray, seconds: float) -> float:
    done = curve[curve[:, 0] <= seconds]
    return float(done[-1, 2]) if len(done) else float("inf")


def time_to(curve: np.ndarray, target: float) -> float:
    reached = curve[curve[:, 2] <= target + 1e-12]
    return float(reached[0, 0]) if len(reached) else float("inf")


def tables(results: dict, budget: float) -> list[str]:
    marks = (0.25, 0.5, 1.0)
    head = " | ".join(f"val loss at {int(m * 100)}%" for m in marks)
    lines = [
        f"| method | {head} | evaluations in budget | test accuracy |",
        "|---|" + "---|" * (len(marks) + 2),
    ]
    for method, runs in results.items():
        curves = [np.array(r["curve"]) for r in runs]
        cells = [_mean_std([best_at(c, m * budget) for c in curves]) for m in marks]
        counts = _mean_std([float(np.sum(c[:, 0] <= budget)) for c in curves], digits=1)
        test = _mean_std([r["test_accuracy"] for r in runs])
        lines.append(f"| {method} | {' | '.join(cells)} | {counts} | {test} |")
    return lines + [""] + goal(results, budget)


def goal(results: dict, budget: float) -> list[str]:
    """Per seed: TPE's final value, when TPE and each GA+SH variant first reached it
    (and whether that was within half the budget)."""
    head = " | ".join(f"{m} reached it at" for m in SH_METHODS)
    lines = [f"| seed | TPE best at budget | TPE reached it at | {head} |",
             "|---|---|---|" + "---|" * len(SH_METHODS)]  # fmt: skip
    for seed, tpe in enumerate(results["tpe"]):
        tpe_curve = np.array(tpe["curve"])
        target = best_at(tpe_curve, budget)
        cells = [_reached(np.array(results[m][seed]["curve"]), target, budget) for m in SH_METHODS]
        lines.append(
            f"| {seed} | {target:.4f} | {time_to(tpe_curve, target):.0f} s | {' | '.join(cells)} |"
        )
    return lines


def _reached(curve: np.ndarray, target: float, budget: float) -> str:
    seconds = time_to(curve, target)
    if seconds > budget:
        return "never"
    return f"{seconds:.0f} s ({'within' if seconds <= budget / 2 else 'over'} half)"


def _mean_std(values: list[float], digits: int = 4) -> str:
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return "-"
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    missing = f" ({len(values) - len(finite)} none)" if len(finite) < len(values) else ""
    return f"{statistics.mean(finite):.{digits}f} +- {std:.{digits}f}{missing}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 seed, 1 minute, 40 per digit")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (1: the shared 2-core machine oversubscribes at 2)",
    )
    parser.add_argument("--save", type=Path, help="also write the raw curves (JSON)")
    parser.add_argument(
        "--out", type=Path, help="keep the runs here; finished ones are reused on a rerun"
    )
    args = parser.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    seeds, minutes = (1, 1.0) if args.quick else (args.seeds, args.minutes)
    backbone = mnist_backbone()
    results: dict[str, list] = {m: [] for m in METHODS}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out or Path(scratch)
        for seed in range(seeds):  # methods interleaved: load changes hit all alike
            for method in METHODS:
                mode = "quick" if args.quick else "full"  # runs of other settings stay apart
                out = folder / f"{mode}-{minutes:g}min-{method}-{seed}"
                results[method].append(run_one(method, seed, minutes, backbone, args.quick, out))
                print(
                    f"{method} seed {seed}: {results[method][-1]['evaluations']} evaluations",
                    file=sys.stderr,
                )
    if args.save:
        args.save.write_text(json.dumps(results))
    command = "python benchmarks/hparams_compare.py" + (
        " --quick" if args.quick else f" --seeds {seeds} --minutes {minutes:g}"
    )
    print(f"`{command}` ({time.strftime('%Y-%m-%d')}, {args.threads} torch thread(s))\n")
    print("\n".join(tables(results, minutes * 60)))
    print(f"\nWall time: {(time.perf_counter() - began) / 60:.1f} min.")


if __name__ == "__main__":
    main()
